"""``model.init_from``: a new run starts from the net weights of an earlier run's checkpoint
(fine-tuning), its output layer kept fresh where the class count differs; nets that do not fit,
a missing file and a resume given both are refused; a resume and eval never read the file again."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import lightning.pytorch as L
import pytest
import torch
from PIL import Image

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.training import train
from tests.conftest import make_cfg, refused_before_torch, run_cli

SHORT = ["model=mlp", "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2"]
CAPTURE = "+callbacks.capture._target_=tests.test_init_from.Capture"
# synthetic images of the digits' shape, so that the MLP's first layer fits; 4 classes, not 10
SYNTHETIC4 = ["data=synthetic", "data.shape=[1,8,8]", "data.num_classes=4", "data.num_train=128", "data.num_val=64",
              "data.num_test=64"]


class Capture(L.Callback):
    """Keeps a copy of the net's weights as training starts (before the first optimizer step)."""

    weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module):
        Capture.weights = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}


def _net_tensors(ckpt_path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    return {k.removeprefix("net."): v for k, v in ckpt[key].items() if k.startswith("net.")}


def _record(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_dir):
    """A run of one short epoch of the MLP on the digits (10 classes): the run the others start from."""
    run = tmp_path_factory.mktemp("init") / "a"
    train(make_cfg([*SHORT, "test=false"], run, data_dir))
    return run


def test_a_run_starts_from_the_source_weights_and_records_them(source, cfg_factory, tmp_path, caplog):
    """Same data and net: every tensor is the source best.ckpt's as training starts, one log line says
    so, and metrics.json records the file (absolute path, size, sha256) and that nothing was kept fresh."""
    best = source / "checkpoints" / "best.ckpt"
    with caplog.at_level(logging.INFO, logger="litlab.init_weights"):
        train(cfg_factory([*SHORT, "test=false", f"model.init_from={best}", CAPTURE], name="b"))
    theirs = _net_tensors(best)
    assert sorted(Capture.weights) == sorted(theirs)
    for name, tensor in theirs.items():
        assert torch.equal(Capture.weights[name], tensor), name
    assert f"model.init_from: loaded 6 of 6 tensors from {best} (kept fresh: none)" in caplog.messages
    record = _record(tmp_path / "b")["init_from"]
    assert record == {"path": str(best), "resolved": str(best.resolve()), "loaded": 6, "tensors": 6, "kept_fresh": [], "weights": "trained",
                      "ckpt_bytes": best.stat().st_size, "ckpt_sha256": hashlib.sha256(best.read_bytes()).hexdigest()}


def test_fine_tuning_on_other_classes_keeps_the_output_layer_fresh(source, cfg_factory, tmp_path, caplog):
    """Digits (10 classes) to synthetic images of 4 classes, given the run's folder (its best.ckpt):
    the hidden layers come from the source, the output layer (4 rows here, 10 there) is left as
    built, and the run trains and tests."""
    best = source / "checkpoints" / "best.ckpt"
    with caplog.at_level(logging.INFO, logger="litlab.init_weights"):
        train(cfg_factory([*SHORT, *SYNTHETIC4, f"model.init_from={source}", CAPTURE], name="ft"))
    theirs = _net_tensors(best)
    for name in ("layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.4.bias"):
        assert torch.equal(Capture.weights[name], theirs[name]), name
    assert tuple(Capture.weights["layers.7.weight"].shape) == (4, 128)
    assert tuple(theirs["layers.7.weight"].shape) == (10, 128)
    assert (f"model.init_from: loaded 4 of 6 tensors from {best} (kept fresh: layers.7.weight, layers.7.bias)"
            in caplog.messages)
    record = _record(tmp_path / "ft")
    assert record["status"] == "completed" and "test/acc" in record
    assert (record["init_from"]["loaded"], record["init_from"]["kept_fresh"]) == (4, ["layers.7.weight",
                                                                                       "layers.7.bias"])


@pytest.mark.parametrize("overrides, match", [
    (["model=cnn"], r"model\.init_from=.*best\.ckpt does not fit this run's net: it shares no tensor with this run's "
                    r"net \(its 6 net tensor\(s\), such as layers\.1\.bias, .*a litlab\.models\.mlp\.MLP net and "
                    r"samples of shape \(1, 8, 8\)"),
    (["model.net.hidden_sizes=[64,128]"],
     r"its tensors differ beyond the output layer's class count \(layers\.1\.weight: \(256, 64\) in the file, "
     r"\(64, 64\) in the net; layers\.1\.bias: \(256,\) in the file, \(64,\) in the net; layers\.4\.weight: "
     r"\(128, 256\) in the file, \(128, 64\) in the net\)"),
    (["model.net.hidden_sizes=[256]"], r"layers\.4\.weight: \(128, 256\) in the file, \(10, 256\) in the net; "
                                        r".*not in the net: layers\.7\.weight, layers\.7\.bias\)"),
    (["data=synthetic", "data.num_train=64", "data.num_val=32", "data.num_test=32"],
     r"layers\.1\.weight: \(256, 64\) in the file, \(256, 256\) in the net"),
])
def test_a_net_that_does_not_fit_is_refused_before_training(source, cfg_factory, tmp_path, overrides, match):
    """Another model kind, other widths, another depth, another sample shape: refused in one
    paragraph naming the file and the tensors with both shapes, before anything is trained."""
    best = source / "checkpoints" / "best.ckpt"
    with pytest.raises(LitlabError, match=match) as info:
        train(cfg_factory([*SHORT, *overrides, f"model.init_from={best}"], name="bad"))
    assert "leave model.init_from=null to start from fresh weights" in str(info.value)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_init_from_with_a_resume_of_another_run_is_refused(source, cfg_factory, tmp_path):
    """ckpt_path restores everything, init_from starts anew: given both (of a run that did not
    start from that file), which to do is asked, before the data or any checkpoint is written."""
    best, last = source / "checkpoints" / "best.ckpt", source / "checkpoints" / "last.ckpt"
    with pytest.raises(LitlabError, match=rf"model\.init_from={best} and ckpt_path={last} were both given: a resume "
                                          rf"restores .* \(here a run that began without it\).*Give one"):
        train(cfg_factory([*SHORT, "trainer.max_epochs=2", f"ckpt_path={last}", f"model.init_from={best}"],
                          name="both"))
    assert not (tmp_path / "both" / "checkpoints").exists()


def test_a_bad_init_from_is_refused_before_torch_and_writes_no_folder(tmp_path):
    """A missing file, a folder without best.ckpt, an exported model: one paragraph in about a
    second, before torch is imported and before Hydra makes the run's folder."""
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "net.onnx").write_bytes(b"onnx")
    cases = {"nope.ckpt": "model.init_from=nope.ckpt does not exist. Give the path of a litlab run's checkpoint",
             "empty_run": "model.init_from=empty_run is a folder without a checkpoints/best.ckpt. Give a litlab run's "
                          "folder",
             "net.onnx": "model.init_from=net.onnx is an exported model (export/)"}
    for value, message in cases.items():
        stderr = refused_before_torch("litlab.train", [f"model.init_from={value}", "hydra.run.dir=run"], tmp_path)
        assert message in " ".join(stderr.split()), stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_a_resume_does_not_read_init_from_again(source, cfg_factory, tmp_path, caplog):
    """A run started from a file resumes with its own command (model.init_from included) after the
    file is gone: the checkpoint holds the weights trained from it, which are not overwritten."""
    copy = tmp_path / "src" / "best.ckpt"
    copy.parent.mkdir()
    shutil.copy(source / "checkpoints" / "best.ckpt", copy)
    given = [*SHORT, *SYNTHETIC4, "test=false", f"model.init_from={copy}"]
    train(cfg_factory(given, name="r"))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    trained = _net_tensors(last)
    shutil.rmtree(copy.parent)
    resumed = [*given, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={tmp_path / 'r'}"]
    assert check_overrides(resumed) is not None  # the command line's check does not ask for the file either
    with caplog.at_level(logging.INFO, logger="litlab.init_weights"):
        train(cfg_factory([*resumed, CAPTURE], name="r"))
    assert any("not read again; the resumed checkpoint" in m for m in caplog.messages)
    for name, tensor in trained.items():  # the run's own weights after epoch 1, not the source's
        assert torch.equal(Capture.weights[name], tensor), name
    assert _record(tmp_path / "r")["epochs"] == 2


def test_eval_of_a_fine_tuned_run_does_not_need_its_source(cfg_factory, tmp_path, data_dir):
    """eval rebuilds the model from the checkpoint's config, which names model.init_from: it never
    reads that file, so eval works after the source run's folder is deleted."""
    a = tmp_path / "a"
    train(make_cfg([*SHORT, "test=false"], a, data_dir))
    train(cfg_factory([*SHORT, *SYNTHETIC4, f"model.init_from={a}"], name="b"))
    shutil.rmtree(a)
    best = tmp_path / "b" / "checkpoints" / "best.ckpt"
    assert str(a) == torch.load(best, weights_only=True)["litlab"]["config"]["model"]["init_from"]
    with torch.no_grad():
        metrics = evaluate(cfg_factory([f"ckpt_path={best}"], name="ev", config_name="eval", fast=False), [])
    assert metrics["test/acc"] == pytest.approx(_record(tmp_path / "b")["test/acc"])


def test_an_averaged_source_gives_its_averaged_weights(cfg_factory, tmp_path, data_dir, caplog):
    """A source trained with averaging=ema: the weights its best.ckpt was validated and tested with
    (the average, its state_dict) are loaded, not the live ones (current_model_state)."""
    a = tmp_path / "ema"
    train(make_cfg([*SHORT, "test=false", "averaging=ema"], a, data_dir))
    best = a / "checkpoints" / "best.ckpt"
    with caplog.at_level(logging.INFO, logger="litlab.init_weights"):
        train(cfg_factory([*SHORT, "test=false", f"model.init_from={best}", CAPTURE], name="b"))
    averaged, live = _net_tensors(best), _net_tensors(best, "current_model_state")
    assert not torch.equal(averaged["layers.1.weight"], live["layers.1.weight"])
    for name, tensor in averaged.items():
        assert torch.equal(Capture.weights[name], tensor), name
    assert _record(tmp_path / "b")["init_from"]["weights"] == "averaged"


# ---- the reviewer's findings -----------------------------------------------------------------------

def test_lr_find_starts_from_init_from_and_records_it(source, tmp_path, data_dir, monkeypatch, caplog):
    """A fine-tuning run wants its own rate: the range test's first step is taken from the source
    weights (not fresh ones), one log line says so, and its metrics.json records the file."""
    from litlab.tuning import lr_range

    best = source / "checkpoints" / "best.ckpt"
    at_start: dict[str, torch.Tensor] = {}
    run_test = lr_range.run_range_test

    def capturing(model, *args, **kwargs):
        at_start.update({k: v.detach().clone() for k, v in model.net.state_dict().items()})
        return run_test(model, *args, **kwargs)

    monkeypatch.setattr(lr_range, "run_range_test", capturing)
    cfg = make_cfg(["model=mlp", "logger=none", "lr_find.num_steps=20", f"model.init_from={source}"],
                   tmp_path / "lr", data_dir, config_name="lr_find")
    with caplog.at_level(logging.INFO, logger="litlab.init_weights"):
        lr_range.lr_find(cfg)
    theirs = _net_tensors(best)
    assert sorted(at_start) == sorted(theirs)
    for name, tensor in theirs.items():
        assert torch.equal(at_start[name], tensor), name
    assert f"model.init_from: loaded 6 of 6 tensors from {best} (kept fresh: none)" in caplog.messages
    record = _record(tmp_path / "lr")
    assert record["status"] == "completed" and record["init_from"]["path"] == str(best)
    assert record["init_from"]["ckpt_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()


def test_lr_find_refuses_a_missing_init_from_before_torch(tmp_path):
    """python -m litlab.lr_find model.init_from=nope.ckpt exited 0 after a whole range test from fresh
    weights: refused in one paragraph before torch, with no run folder."""
    stderr = refused_before_torch("litlab.lr_find", ["model=cnn", "data=synthetic", "model.init_from=nope.ckpt",
                                                     "hydra.run.dir=run"], tmp_path)
    assert "model.init_from=nope.ckpt does not exist. Give the path of a litlab run's checkpoint" in " ".join(
        stderr.split()), stderr
    assert not (tmp_path / "run").exists()


def _copy_run(best, folder):
    """A run folder at ``folder`` whose checkpoints/best.ckpt is a copy of ``best``."""
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(best, folder / "checkpoints" / "best.ckpt")
    return folder / "checkpoints" / "best.ckpt"


def test_a_resume_from_another_folder_compares_the_files_not_the_typed_paths(source, cfg_factory, tmp_path,
                                                                             monkeypatch, data_dir):
    """Started in folder A with the relative model.init_from=pre, resumed in folder B: the same file
    by its absolute path resumes; the same text naming another file in B (B/pre, another run's
    folder) is refused, naming the file the run began from; naming nothing there, it resumes."""
    a, b = tmp_path / "A", tmp_path / "B"
    first = _copy_run(source / "checkpoints" / "best.ckpt", a / "pre")
    monkeypatch.chdir(a)
    given = [*SHORT, "test=false"]
    train(cfg_factory([*given, "model.init_from=pre"], name="r"))
    other = tmp_path / "other"
    train(make_cfg([*given, "seed=7"], other, data_dir))  # another run: another file under the same name in B
    _copy_run(other / "checkpoints" / "best.ckpt", b / "pre")
    monkeypatch.chdir(b)
    resume = [*given, "trainer.max_epochs=2", "ckpt_path=last"]
    with pytest.raises(LitlabError, match=rf"model\.init_from=pre and ckpt_path=.*last\.ckpt were both given: .*"
                                          rf"\(here a run that began from model\.init_from={first}\)"):
        train(cfg_factory([*resume, "model.init_from=pre"], name="r"))
    # the run's own command, where the text names nothing (the file may be gone): resumes
    shutil.rmtree(b / "pre")
    train(cfg_factory([*resume, "model.init_from=pre"], name="r"))
    assert _record(tmp_path / "r")["epochs"] == 2
    train(cfg_factory([*given, "trainer.max_epochs=3", "ckpt_path=last", f"model.init_from={a / 'pre'}"], name="r"))
    assert _record(tmp_path / "r")["epochs"] == 3


def test_a_resume_given_a_link_compares_the_bytes_not_where_the_link_points_now(source, cfg_factory, tmp_path,
                                                                                 data_dir):
    """Started from pre.ckpt, a link to run one's best.ckpt, then the link repointed to another run's:
    the same pre.ckpt on the resume resumed (both sides resolved through the new target) and the
    real file the run began from was refused. The record keeps the file the link resolved to, and
    a given file is compared by the recorded sha256."""
    first = source / "checkpoints" / "best.ckpt"
    other = tmp_path / "other"
    train(make_cfg([*SHORT, "test=false", "seed=7"], other, data_dir))
    link = tmp_path / "pre.ckpt"
    link.symlink_to(first)
    given = [*SHORT, "test=false"]
    train(cfg_factory([*given, f"model.init_from={link}"], name="r"))
    record = _record(tmp_path / "r")["init_from"]
    link.unlink()
    link.symlink_to(other / "checkpoints" / "best.ckpt")  # now another run's weights under the same name
    resume = [*given, "trainer.max_epochs=2", "ckpt_path=last"]
    with pytest.raises(LitlabError, match=rf"model\.init_from={link} and ckpt_path=.*were both given: .*"
                                          rf"A model\.init_from that names another file than the run.s source is "
                                          rf"compared by its bytes"):
        train(cfg_factory([*resume, f"model.init_from={link}"], name="r"))
    train(cfg_factory([*resume, f"model.init_from={first}"], name="r"))  # the file the run began from
    assert _record(tmp_path / "r")["epochs"] == 2
    assert _record(tmp_path / "r")["init_from"] == record  # carried as recorded at the start
    assert (record["path"], record["resolved"]) == (str(link), str(first.resolve()))
    copy = _copy_run(first, tmp_path / "copy")  # a copy of the same bytes elsewhere is the same source
    train(cfg_factory([*given, "trainer.max_epochs=3", "ckpt_path=last", f"model.init_from={copy}"], name="r"))
    assert _record(tmp_path / "r")["epochs"] == 3


def test_a_source_whose_averaging_never_updated_gives_its_trained_weights(cfg_factory, tmp_path, data_dir):
    """averaging=swa stopped (trainer.max_steps) before its start epoch: best.ckpt has
    current_model_state but no average (n_averaged 0), so its state_dict is the trained weights and
    the record says "trained", not "averaged"."""
    a = tmp_path / "swa"
    train(make_cfg([*SHORT, "test=false", "averaging=swa", "averaging.start_epoch=1", "trainer.max_epochs=2",
                    "+trainer.max_steps=3"], a, data_dir))
    best = a / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, weights_only=True)
    assert "current_model_state" in ckpt and int(ckpt["averaging_state"]["n_averaged"]) == 0
    train(cfg_factory([*SHORT, "test=false", f"model.init_from={best}"], name="b"))
    assert _record(tmp_path / "b")["init_from"]["weights"] == "trained"


@pytest.mark.parametrize("command, args", [("eval", ["model.init_from=/no/such/file"]),
                                           ("predict", ["input=in.png", "+model.init_from=/no/such/file"])])
def test_eval_and_predict_refuse_init_from_before_torch(source, tmp_path, command, args):
    """eval and predict take the weights of ckpt_path: a model.init_from given to them (even one
    naming no file) was accepted and did nothing. One paragraph, before torch, no folder."""
    best = source / "checkpoints" / "best.ckpt"
    Image.new("L", (8, 8)).save(tmp_path / "in.png")  # one image predict would classify
    stderr = refused_before_torch(f"litlab.{command}", [f"ckpt_path={best}", *args, "hydra.run.dir=run"], tmp_path)
    assert (f"model.init_from=/no/such/file: {command} reads the weights of ckpt_path; model.init_from is read only "
            f"when a run trains" in " ".join(stderr.split())), stderr
    assert not (tmp_path / "run").exists()


def test_under_ddp_the_load_is_logged_once(source, tmp_path, data_dir):
    """Two DDP processes each load the weights; the line that says so is printed by rank 0 alone."""
    best = source / "checkpoints" / "best.ckpt"
    proc = run_cli("litlab.train", *SHORT, "test=false", "trainer=ddp_cpu", "trainer.devices=2", "logger=none",
                   f"model.init_from={best}", f"hydra.run.dir={tmp_path / 'ddp'}", f"paths.data_dir={data_dir}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("model.init_from: loaded 6 of 6 tensors") == 1, proc.stderr[-3000:]
    assert _record(tmp_path / "ddp")["init_from"]["path"] == str(best)


def test_a_resumed_run_records_where_its_first_weights_came_from(source, cfg_factory, tmp_path):
    """A resume (ckpt_path alone, model.init_from=null) carries the first start's init_from record
    from the checkpoint to the top of metrics.json, and to its own checkpoints for the next resume."""
    best = source / "checkpoints" / "best.ckpt"
    given = [*SHORT, "test=false"]
    train(cfg_factory([*given, f"model.init_from={best}"], name="r"))
    first = _record(tmp_path / "r")["init_from"]
    train(cfg_factory([*given, "trainer.max_epochs=2", "ckpt_path=last"], name="r"))
    record = _record(tmp_path / "r")
    assert record["epochs"] == 2 and record["init_from"] == first
    last = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["litlab"]["init_from"] == first


def test_a_resume_given_the_very_path_it_began_from_resumes_after_the_source_rewrote_it(tmp_path, monkeypatch):
    """The source run rewrote its best.ckpt after this run began from it: litlab's own resume
    command (which carries model.init_from=<that path>) was refused, since only the bytes were
    compared. The recorded path resolves to the same file: accepted without hashing it; a copy at
    another path still needs the recorded bytes, and a link repointed to other bytes is refused."""
    from types import SimpleNamespace

    import litlab.init_weights as init_weights

    source = tmp_path / "src" / "checkpoints" / "best.ckpt"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"weights at the start")
    link = tmp_path / "pre.ckpt"
    link.symlink_to(source)
    carried = {"path": str(link), "resolved": str(source.resolve()),
               "ckpt_sha256": hashlib.sha256(b"weights at the start").hexdigest()}
    resume = SimpleNamespace(path=tmp_path / "r" / "last.ckpt", ckpt={"litlab": {"init_from": carried}})
    source.write_bytes(b"weights trained on since")  # the source run wrote a better best.ckpt

    for value in (str(link), str(source), str(tmp_path / "src")):  # the link, its file, the run's folder
        assert init_weights._resumed(value, resume).carried == carried

    def no_hashing(path):
        raise AssertionError(f"hashed {path}, a path that resolves to the recorded file")

    monkeypatch.setattr(init_weights, "checkpoint_fingerprint", no_hashing)  # nor read on every DDP rank
    assert init_weights._resumed(str(link), resume).carried == carried
    monkeypatch.undo()
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(b"weights at the start")  # a copy of the bytes the run began from, elsewhere
    assert init_weights._resumed(str(copy), resume).carried == carried
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"another run's weights")
    link.unlink()
    link.symlink_to(other)  # the link repointed: another file, other bytes
    for value in (str(link), str(other)):
        with pytest.raises(LitlabError, match=rf"model\.init_from={value} and ckpt_path=.* were both given"):
            init_weights._resumed(value, resume)
