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

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.training import train
from tests.conftest import make_cfg, refused_before_torch

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
    assert record == {"path": str(best), "loaded": 6, "tensors": 6, "kept_fresh": [], "weights": "trained",
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
