"""litlab.eval on data other than the training run's: the model's own normalization, and errors
where the classes, the sample shape or the pixel scale differ from what it was trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.training import train
from tests.helpers import write_npz


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MLP trained for two epochs on a small npz of float images; (run folder, npz path)."""
    from tests.conftest import make_cfg

    root = tmp_path_factory.mktemp("eval")
    path = write_npz(root / "train.npz", n=200)
    cfg = make_cfg(["model=mlp", "data=npz", f"data.path={path}"], root / "run", root / "data")
    train(cfg)
    return root / "run", path


def _eval(cfg_factory, run_dir, *overrides):
    ckpt = json.loads((run_dir / "metrics.json").read_text())["best_ckpt"]
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev", config_name="eval", fast=False)
    with torch.no_grad():
        return evaluate(cfg, [f"data.path={p}" for p in overrides])


def test_eval_normalizes_with_the_trained_statistics(trained, cfg_factory, tmp_path):
    """Other training arrays beside the same test arrays: the same test metrics (the statistics of
    the new training arrays used to replace the model's own)."""
    run_dir, path = trained
    with np.load(path) as f:
        arrays = dict(f)
    same = _eval(cfg_factory, run_dir, path)
    moved = dict(arrays, x_train=arrays["x_train"] * 10 + 5, x_val=arrays["x_val"] * 10 + 5)
    np.savez(tmp_path / "moved.npz", **moved)
    other = _eval(cfg_factory, run_dir, tmp_path / "moved.npz")
    assert other["test/acc"] == pytest.approx(same["test/acc"], abs=1e-6)
    assert other["test/loss"] == pytest.approx(same["test/loss"], abs=1e-5)
    trained_loss = json.loads((run_dir / "metrics.json").read_text())["test/loss"]
    assert same["test/loss"] == pytest.approx(trained_loss, abs=1e-4)


@pytest.mark.parametrize("change,match", [
    (lambda a: dict(a, y_train=np.where(a["y_train"] == 0, 3, a["y_train"])),
     r"The data has the classes \(0, 1, 2, 3\) but the model of ckpt_path=.*\.ckpt was trained on \(0, 1, 2\)"),
    (lambda a: {k: v[:, :, :4, :4] if k.startswith("x") else v for k, v in a.items()},
     r"sample shape \(1, 4, 4\) but the model .* was trained on \(1, 6, 6\)"),
    (lambda a: {k: np.clip(v * 40, 0, 255).astype(np.uint8) if k.startswith("x") else v for k, v in a.items()},
     r"inputs are 8-bit pixels \(uint8, scaled to \[0, 1\]\) but the model .* was trained on values used as they are"),
])
def test_eval_refuses_data_the_model_was_not_trained_on(trained, cfg_factory, tmp_path, change, match):
    run_dir, path = trained
    with np.load(path) as f:
        np.savez(tmp_path / "other.npz", **change(dict(f)))
    with pytest.raises(LitlabError, match=match):
        _eval(cfg_factory, run_dir, tmp_path / "other.npz")


def test_eval_takes_an_npz_of_test_arrays_only(trained, cfg_factory, tmp_path):
    """New test data without training arrays was refused ("lacks the array(s) x_train, y_train"),
    though classes and normalization come from the checkpoint."""
    run_dir, path = trained
    with np.load(path) as f:
        arrays = dict(f)
    full = _eval(cfg_factory, run_dir, path)
    np.savez(tmp_path / "test_only.npz", x_test=arrays["x_test"], y_test=arrays["y_test"])
    only = _eval(cfg_factory, run_dir, tmp_path / "test_only.npz")
    assert only["test/acc"] == pytest.approx(full["test/acc"], abs=1e-6)
    assert only["test/loss"] == pytest.approx(full["test/loss"], abs=1e-5)
    # a few samples of one class: still the checkpoint's three classes
    ones = arrays["y_test"] == 1
    np.savez(tmp_path / "few.npz", x_test=arrays["x_test"][ones], y_test=arrays["y_test"][ones])
    assert 0 <= _eval(cfg_factory, run_dir, tmp_path / "few.npz")["test/acc"] <= 1
    np.savez(tmp_path / "label5.npz", x_test=arrays["x_test"], y_test=np.full_like(arrays["y_test"], 5))
    with pytest.raises(LitlabError, match=r"y_test \(the checkpoint's 3 classes\): labels must lie in \[0, 3\)"):
        _eval(cfg_factory, run_dir, tmp_path / "label5.npz")
    ckpt = json.loads((run_dir / "metrics.json").read_text())["best_ckpt"]
    cfg = cfg_factory([f"ckpt_path={ckpt}", "split=val"], name="ev_val", config_name="eval", fast=False)
    with pytest.raises(LitlabError, match=r"split=val: the data has no val samples to evaluate"):
        evaluate(cfg, [f"data.path={tmp_path / 'test_only.npz'}"])


def test_eval_takes_an_image_folder_of_test_images_only(cfg_factory, tmp_path):
    """data.root without train/ was refused ("has no train/ folder") for an evaluation too."""
    import shutil

    from tests.conftest import make_cfg
    from tests.helpers import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class=8)
    run = tmp_path / "run"
    train(make_cfg(["model=mlp", "data=imagefolder", f"data.root={root}"], run, tmp_path / "data"))
    full = _eval(cfg_factory, run)
    new = tmp_path / "new"
    shutil.copytree(root / "test", new / "test")
    ckpt = json.loads((run / "metrics.json").read_text())["best_ckpt"]
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev_folder", config_name="eval", fast=False)
    with torch.no_grad():
        only = evaluate(cfg, [f"data.root={new}"])
    assert only["test/acc"] == pytest.approx(full["test/acc"], abs=1e-6)
    assert only["test/loss"] == pytest.approx(full["test/loss"], abs=1e-5)
    (new / "test" / "zebra").mkdir()
    (new / "test" / "zebra" / "z.png").write_bytes((root / "test" / "a").iterdir().__next__().read_bytes())
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev_zebra", config_name="eval", fast=False)
    with pytest.raises(LitlabError, match=r"test has class folder\(s\) zebra not among the classes of the checkpoint \(a, b, c\)"):
        evaluate(cfg, [f"data.root={new}"])


def test_eval_of_a_digits_checkpoint_reads_a_folder_of_new_images(cfg_factory, tmp_path):
    """data.root=new_images/ on a checkpoint of the default digits data was refused as a digits
    tree that writing the digits would overwrite; it is read as an image folder now."""
    import shutil

    from tests.conftest import make_cfg

    run, data = tmp_path / "run", tmp_path / "data"
    train(make_cfg(["model=mlp", "trainer.max_epochs=2"], run, data))
    full = _eval(cfg_factory, run)
    new = tmp_path / "new"
    for digit in ("3", "7"):  # two of the ten classes: read in the checkpoint's ten
        shutil.copytree(data / "digits" / "test" / digit, new / "test" / digit)
    ckpt = json.loads((run / "metrics.json").read_text())["best_ckpt"]
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev_digits", config_name="eval", fast=False)
    with torch.no_grad():
        only = evaluate(cfg, [f"data.root={new}"])
    n = sum(len(list((new / "test" / d).iterdir())) for d in ("3", "7"))
    hits = only["test/acc"] * n  # a share of the 81 new images, not of the 359 of the digits test split
    assert 0 < only["test/acc"] <= 1 and abs(hits - round(hits)) < 1e-4 and n == 81
    assert full["test/acc"] > 0.5
    assert not (new / "split.json").exists()  # nothing written into the user's folder


def test_eval_with_a_data_root_that_does_not_exist_is_refused(cfg_factory, tmp_path):
    """On a digits checkpoint a misspelt data.root got a fresh digits set written there, scored,
    and reported with exit 0 as if it were the folder meant."""
    from tests.conftest import make_cfg

    run = tmp_path / "run"
    train(make_cfg(["model=mlp", "trainer.max_epochs=1"], run, tmp_path / "data"))
    ckpt = json.loads((run / "metrics.json").read_text())["best_ckpt"]
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev_missing", config_name="eval", fast=False)
    with pytest.raises(LitlabError, match=r"data\.root=.*new_imagez is not a folder"):
        evaluate(cfg, [f"data.root={tmp_path / 'new_imagez'}"])
    assert not (tmp_path / "new_imagez").exists()


@pytest.fixture(scope="module")
def trained_bf16(tmp_path_factory):
    """An MLP trained for two epochs in trainer.precision=bf16-mixed on the CPU; its run folder."""
    from tests.conftest import make_cfg

    root = tmp_path_factory.mktemp("eval_bf16")
    path = write_npz(root / "train.npz", n=200)
    train(make_cfg(["model=mlp", "data=npz", f"data.path={path}", "trainer.precision=bf16-mixed"], root / "run",
                   root / "data"))
    return root / "run"


def _eval_record(cfg_factory, tmp_path, ckpt, name, *given):
    """evaluate() on the CPU with ``given`` as the command line; (metrics, metrics.json)."""
    cfg = cfg_factory([f"ckpt_path={ckpt}", "trainer.accelerator=cpu", *given], name=name, config_name="eval",
                      fast=False)
    with torch.no_grad():
        metrics = evaluate(cfg, list(given))
    return metrics, json.loads((tmp_path / name / "metrics.json").read_text())


def test_eval_uses_the_precision_the_run_trained_in(trained_bf16, cfg_factory, tmp_path):
    """A bf16-mixed run was evaluated in eval.yaml's 32-bit, so its figures differed from those
    training reported; now the run's precision is used unless the command line gives one."""
    trained = json.loads((trained_bf16 / "metrics.json").read_text())
    same, record = _eval_record(cfg_factory, tmp_path, trained["best_ckpt"], "ev_bf16")
    assert record["precision"] == "bf16-mixed"
    assert same["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-6)
    assert same["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    forced, record = _eval_record(cfg_factory, tmp_path, trained["best_ckpt"], "ev_32", "trainer.precision=32-true")
    assert record["precision"] == "32-true"
    assert forced["test/loss"] != same["test/loss"]  # float32 scores this model differently


def test_eval_falls_back_to_32_bit_where_the_run_precision_cannot_run(trained_bf16, cfg_factory, tmp_path,
                                                                        caplog):
    """A checkpoint of a 16-mixed GPU run evaluated on the CPU: 32-true with a warning naming both,
    not a refusal."""
    ckpt = torch.load(json.loads((trained_bf16 / "metrics.json").read_text())["best_ckpt"], weights_only=False)
    ckpt["litlab"]["config"]["trainer"]["precision"] = "16-mixed"
    torch.save(ckpt, tmp_path / "gpu_run.ckpt")
    with caplog.at_level("WARNING", logger="litlab.evaluation"):
        metrics, record = _eval_record(cfg_factory, tmp_path, tmp_path / "gpu_run.ckpt", "ev_fallback")
    assert record["precision"] == "32-true" and 0 <= metrics["test/acc"] <= 1
    assert "trainer.precision=16-mixed, which this machine's cpu cannot run; evaluating in " \
           "trainer.precision=32-true" in caplog.text


def test_eval_records_and_prints_on_rank_zero_only(trained, cfg_factory, tmp_path, monkeypatch, capsys):
    """Under DDP (trainer=ddp_cpu trainer.devices=2) every rank printed the result block and wrote
    metrics.json; a rank other than 0 now returns the figures and leaves both to rank 0."""
    import lightning.pytorch as L

    run_dir, path = trained
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    metrics = _eval(cfg_factory, run_dir, path)
    assert 0 <= metrics["test/acc"] <= 1
    assert not (tmp_path / "ev" / "metrics.json").exists()
    assert "litlab eval of" not in capsys.readouterr().out


def test_a_relative_data_path_is_recorded_absolute_and_eval_elsewhere_reads_it(cfg_factory, tmp_path, monkeypatch):
    """The record kept data.path as typed: eval run in another folder read (or failed on) a file of
    the same relative name there, and a digits run wrote a fresh copy of the digits where eval ran."""
    work = tmp_path / "work"
    work.mkdir()
    write_npz(work / "arrays.npz", n=120)
    monkeypatch.chdir(work)
    train(cfg_factory(["model=mlp", "data=npz", "data.path=arrays.npz", "trainer.max_epochs=1"], name="rel"))
    ckpt = json.loads((tmp_path / "rel" / "metrics.json").read_text())["best_ckpt"]
    assert torch.load(ckpt, weights_only=False)["litlab"]["config"]["data"]["path"] == str(work / "arrays.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no arrays.npz here
    result = evaluate(cfg_factory([f"ckpt_path={ckpt}"], name="ev_rel", config_name="eval", fast=False), [])
    trained_acc = json.loads((tmp_path / "rel" / "metrics.json").read_text())["test/acc"]
    assert result["test/acc"] == pytest.approx(trained_acc, abs=1e-6)


def _eval_scored(cfg_factory, tmp_path, ckpt, name, given=(), data=()):
    """evaluate() with ``given`` for eval's config and ``data`` (``data.KEY=VALUE``) for the stored
    run; (metrics, metrics.json)."""
    cfg = cfg_factory([f"ckpt_path={ckpt}", *given], name=name, config_name="eval", fast=False)
    with torch.no_grad():
        metrics = evaluate(cfg, list(data))
    return metrics, json.loads((tmp_path / name / "metrics.json").read_text())


def test_eval_records_which_data_it_scored(trained, cfg_factory, tmp_path, monkeypatch, capsys):
    """metrics.json held the figures and ckpt_path only: an evaluation of data.path=other.npz or of
    split=val read like one of the run's own test split (the choice was in .hydra/overrides.yaml)."""
    run_dir, path = trained
    ckpt = json.loads((run_dir / "metrics.json").read_text())["best_ckpt"]
    _, record = _eval_scored(cfg_factory, tmp_path, ckpt, "ev_own")
    assert {k: record[k] for k in ("test_split", "data", "data_path", "samples")} == {
        "test_split": "test", "data": "litlab.data.npz.NpzDataModule", "data_path": str(path), "samples": 50}
    assert "data_root" not in record and "partial_data" not in record
    with np.load(path) as f:
        arrays = dict(f)
    np.savez(tmp_path / "other.npz", x_test=arrays["x_test"][:7], y_test=arrays["y_test"][:7],
             x_val=arrays["x_val"][:9], y_val=arrays["y_val"][:9])
    monkeypatch.chdir(tmp_path)  # data.path as typed, relative to where eval runs
    capsys.readouterr()
    _, record = _eval_scored(cfg_factory, tmp_path, ckpt, "ev_other", ["split=val"], ["data.path=other.npz"])
    assert record["test_split"] == "val" and record["samples"] == 9 and "val/acc" in record
    assert record["data_path"] == str(tmp_path / "other.npz")
    out = capsys.readouterr().out
    assert "  split        val\n" in out and "  samples      9\n" in out
    assert f"  data         litlab.data.npz.NpzDataModule at {tmp_path / 'other.npz'}\n" in out
    _, record = _eval_scored(cfg_factory, tmp_path, ckpt, "ev_part", ["+trainer.limit_test_batches=1"],
                             ["data.path=other.npz", "data.batch_size=4"])
    assert record["partial_data"] == {"limit_test_batches": 1} and record["samples"] == 7


def test_eval_of_a_folder_without_test_says_it_scored_the_validation_split(cfg_factory, tmp_path, capsys):
    """Training recorded test_split: val for an image folder without test/ (and eval logged that it
    would), but eval's metrics.json and printed figures did not say so."""
    from tests.conftest import make_cfg
    from tests.helpers import write_image_folder

    root = write_image_folder(tmp_path / "imgs", splits=("train", "val"), per_class=4)
    run = tmp_path / "run"
    train(make_cfg(["model=mlp", "data=imagefolder", f"data.root={root}", "trainer.max_epochs=1"], run,
                   tmp_path / "data"))
    trained_record = json.loads((run / "metrics.json").read_text())
    assert trained_record["test_split"] == "val"
    capsys.readouterr()
    metrics, record = _eval_scored(cfg_factory, tmp_path, trained_record["best_ckpt"], "ev_noTest")
    assert record["test_split"] == "val" and record["samples"] == 12
    assert record["data"] == "litlab.data.image_folder.ImageFolderDataModule" and record["data_root"] == str(root)
    assert metrics["test/acc"] == pytest.approx(trained_record["test/acc"], abs=1e-6)
    out = capsys.readouterr().out
    assert "  split        val (the data has no test/ folder: test/* are the validation split's figures)\n" in out


def test_a_stored_augmentation_refused_since_does_not_stop_an_evaluation(trained, cfg_factory, tmp_path):
    """data.augment values are checked when a run trains (shift=-1 is refused now, and did nothing
    before); evaluation never augments, so an older checkpoint holding one is still scored."""
    run_dir, path = trained
    ckpt_file = json.loads((run_dir / "metrics.json").read_text())["best_ckpt"]
    ckpt = torch.load(ckpt_file, weights_only=False)
    ckpt["litlab"]["config"]["data"]["augment"] = {"hflip": False, "shift": -1}
    torch.save(ckpt, tmp_path / "old.ckpt")
    cfg = cfg_factory([f"ckpt_path={tmp_path / 'old.ckpt'}"], name="ev_old", config_name="eval", fast=False)
    with torch.no_grad():
        scored = evaluate(cfg, [f"data.path={path}"])
    assert scored["test/acc"] == pytest.approx(_eval(cfg_factory, run_dir, path)["test/acc"], abs=1e-6)


def test_eval_of_a_folder_with_val_and_test_reads_no_training_image(cfg_factory, tmp_path, monkeypatch):
    """eval listed train/ and decoded all of it (in memory) or 512 of its images (streamed) for
    normalization statistics that the checkpoint's then replaced."""
    from litlab.data import image_folder
    from tests.conftest import make_cfg
    from tests.helpers import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class=6)
    run = tmp_path / "run"
    train(make_cfg(["model=mlp", "data=imagefolder", f"data.root={root}", "trainer.max_epochs=1"], run,
                   tmp_path / "data"))
    trained = json.loads((run / "metrics.json").read_text())
    listed, list_split = [], image_folder.list_split
    monkeypatch.setattr(image_folder, "list_split", lambda d, *a, **k: listed.append(d.name) or list_split(d, *a, **k))
    for split in ("test", "val"):
        metrics, record = _eval_scored(cfg_factory, tmp_path, trained["best_ckpt"], f"ev_{split}", [f"split={split}"])
        assert metrics[f"{split}/acc"] == pytest.approx(trained[f"{split}/acc"], abs=1e-6)
        assert record["test_split"] == split and record["samples"] == 18
    assert sorted(set(listed)) == ["test", "val"]


def test_eval_names_a_checkpoint_it_cannot_open(cfg_factory, tmp_path, monkeypatch):
    """A checkpoint this process may not read (another user's, a mount) was said to be "truncated or
    corrupt, or not a checkpoint", after torch and Lightning were imported; now it is named as
    unreadable by the checks the command line runs before those imports."""
    import builtins
    import errno
    import os

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"x")
    real_open = builtins.open

    def refusing(file, *args, **kwargs):  # as root, chmod 000 does not stop a read
        if str(file) == str(ckpt):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    cfg = cfg_factory([f"ckpt_path={ckpt}"], name="ev_unreadable", config_name="eval", fast=False)
    with pytest.raises(LitlabError) as e:
        evaluate(cfg, [])
    assert str(e.value) == (
        f"ckpt_path={ckpt} cannot be opened for reading (Permission denied). Give the path of a litlab run's "
        f"checkpoint (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt) or compressed model "
        f"(outputs/runs/<run>/compressed/<method>.pt) that this process can read.")
