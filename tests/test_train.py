"""train(): a fit on every data choice, reproducibility, resume, reports and bad input."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.training import train
from tests.helpers import write_image_folder, write_npz


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("overrides,min_acc", [
    (["data=digits", "model=mlp"], 0.8),
    (["data=synthetic", "data.num_train=512", "data.noise=0.5", "model=cnn"], 0.6),
    (["data=synthetic_seq", "data.num_train=512", "data.noise=0.5", "model=gru", "trainer.max_epochs=3"], 0.6),
    (["data=imagefolder", "model=cnn", "trainer.max_epochs=4", "model.optimizer.lr=1e-2"], 0.6),
    (["data=npz", "model=lstm", "trainer.max_epochs=4", "model.optimizer.lr=1e-2"], 0.5),
], ids=["digits-mlp", "synthetic-cnn", "seq-gru", "imagefolder-cnn", "npz-lstm"])
def test_fit_on_every_data_choice(cfg_factory, tmp_path, overrides, min_acc):
    if "data=imagefolder" in overrides:
        overrides = overrides + [f"data.root={write_image_folder(tmp_path / 'imgs', per_class=20)}",
                                 "data.batch_size=16"]
    if "data=npz" in overrides:
        overrides = overrides + [f"data.path={write_npz(tmp_path / 'a.npz', 'sequence', n=200)}"]
    cfg = cfg_factory(overrides)
    train(cfg)
    m = _metrics(tmp_path / "run")
    assert m["status"] == "completed"
    assert m["test/acc"] >= min_acc, m
    for key in ("val/acc", "test/loss", "best_ckpt", "wall_time_s", "train_samples_per_s"):
        assert m[key] is not None, key


def test_same_seed_same_metrics_and_eval_reproduces_test(cfg_factory, tmp_path):
    a = cfg_factory(["model=mlp", "seed=7"], name="a")
    b = cfg_factory(["model=mlp", "seed=7"], name="b")
    c = cfg_factory(["model=mlp", "seed=8"], name="c")
    train(a), train(b), train(c)
    ma, mb, mc = (_metrics(tmp_path / n) for n in "abc")
    assert ma["test/loss"] == mb["test/loss"] and ma["val/acc"] == mb["val/acc"]
    assert ma["test/loss"] != mc["test/loss"]
    ev = cfg_factory([f"ckpt_path={ma['best_ckpt']}"], name="ev", config_name="eval", fast=False)
    with torch.no_grad():
        out = evaluate(ev)
    assert abs(out["test/acc"] - ma["test/acc"]) < 1e-4
    assert abs(out["test/loss"] - ma["test/loss"]) < 1e-4


def test_resume_from_last_continues_the_epoch_count(cfg_factory, tmp_path):
    first = cfg_factory(["model=mlp", "trainer.max_epochs=2"], name="r")
    train(first)
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    before = _csv_rows(tmp_path / "r")
    # refused before anything is written: settings a resume would record but never apply (the
    # optimizer and schedule come back from the checkpoint), and a resume with nothing to train
    record = (tmp_path / "r" / "metrics.json").read_bytes()
    for overrides, match in (
            (["trainer.max_epochs=4", "model.optimizer.lr=1e-4"],
             r"resumes the optimizer and learning-rate schedule saved with it, so the changed settings "
             r"\(model\.optimizer\.lr 0\.003 in the checkpoint, 0\.0001 here\) would be recorded but never applied"),
            (["trainer.max_epochs=4", "model.scheduler=null"],
             r"model\.scheduler\._target_ torch\.optim\.lr_scheduler\.CosineAnnealingLR in the checkpoint, absent here"),
            # another dataset of the same shape and classes: the record mixed the two (best val/acc of
            # one, test/acc on the other)
            (["trainer.max_epochs=4", "data=synthetic", "data.shape=[1,8,8]"],
             r"but the data differs \(data\._target_ litlab\.data\.digits\.DigitsDataModule in the checkpoint, "
             r"litlab\.data\.synthetic\.SyntheticDataModule here; .*the run's record would mix two datasets"),
            (["trainer.max_epochs=4", "data.split_seed=7"], r"data\.split_seed 1234 in the checkpoint, 7 here"),
            # the saved schedule counts epochs: refused before the data is prepared
            (["trainer.max_epochs=4", "model.scheduler_interval=step"],
             r"model\.scheduler_interval epoch in the checkpoint, step here"),
            # a period apart from the run's length is a change (the stretch follows the epochs only)
            (["trainer.max_epochs=4", "model.scheduler.T_max=7"], r"model\.scheduler\.T_max 2 in the checkpoint, 7 here"),
            (["trainer.max_epochs=2"], r"is completed and has trained 2 epoch\(s\), as many as trainer\.max_epochs=2, "
                                       r"so nothing is left to train")):
        with pytest.raises(LitlabError, match=match):
            train(cfg_factory(["model=mlp", "ckpt_path=last", *overrides], name="r"))
        assert (tmp_path / "r" / "metrics.json").read_bytes() == record
    # the same by path, into a new folder: it trained nothing and recorded a bare re-test there
    with pytest.raises(LitlabError, match=r"ckpt_path=.*last\.ckpt: the run in .*r is completed .* nothing is left"):
        train(cfg_factory(["model=mlp", f"ckpt_path={last}", "trainer.max_epochs=2"], name="elsewhere"))
    assert not (tmp_path / "elsewhere" / "metrics.json").exists()
    # T_max spelled out as the new length is the default stretch, not a change (it was refused)
    again = cfg_factory(["model=mlp", "trainer.max_epochs=4", "model.scheduler.T_max=4", "ckpt_path=last"], name="r")
    train(again)
    m = _metrics(tmp_path / "r")
    assert m["epochs"] == 4 and m["global_step"] == 4 * 19
    assert torch.load(last, weights_only=True)["epoch"] == 3
    # the CSV log continues: every epoch once, the first two as the first run wrote them
    after = _csv_rows(tmp_path / "r")
    for key in ("train/acc", "val/acc"):
        epochs = [int(r["epoch"]) for r in after if r.get(key)]
        assert epochs == [0, 1, 2, 3], (key, epochs)
        assert [r[key] for r in after if r.get(key)][:2] == [r[key] for r in before if r.get(key)][:2]
    # the learning rate of the two added epochs follows a cosine over all four (the stored two-epoch
    # schedule used to run on: 0 in the third epoch, rising again in the fourth)
    lrs = [float(r["lr-AdamW"]) for r in after if r.get("lr-AdamW")]
    assert lrs == pytest.approx([3e-3, 1.5e-3, 1.5e-3, 3e-3 * (1 + math.cos(3 * math.pi / 4)) / 2], rel=1e-6)


def _csv_rows(run_dir) -> list[dict]:
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_checkpoint_of_another_model_is_refused(cfg_factory, tmp_path):
    train(cfg_factory(["model=mlp", "trainer.max_epochs=1"], name="m"))
    ckpt = tmp_path / "m" / "checkpoints" / "last.ckpt"
    with pytest.raises(LitlabError, match=r"belongs to a different model.*model=\.\.\."):
        train(cfg_factory(["model=cnn", f"ckpt_path={ckpt}"], name="c"))
    with pytest.raises(LitlabError, match="does not exist"):
        train(cfg_factory(["ckpt_path=/no/such.ckpt"], name="n"))
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(LitlabError, match="truncated or corrupt"):
        train(cfg_factory([f"ckpt_path={corrupt}"], name="x"))


def test_tensorboard_has_scalars_and_hparams_with_final_metrics(cfg_factory, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(cfg_factory(["model=mlp", "logger=tensorboard"]))
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("train/loss_step", "train/acc", "val/loss", "val/acc", "test/acc", "test/loss",
                "lr-AdamW", "perf/train_samples_per_s", "hparams/test/acc"):
        assert tag in scalars, (tag, scalars)
    m = _metrics(tmp_path / "run")
    assert acc.Scalars("hparams/test/acc")[0].value == pytest.approx(m["test/acc"])
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins


@pytest.mark.parametrize("overrides", [["logger=none"], ["callbacks=none", "logger=none"],
                                       ["callbacks=early_stopping", "callbacks.early_stopping.patience=1"]])
def test_runs_with_fewer_or_other_callbacks_and_loggers(cfg_factory, tmp_path, overrides):
    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", *overrides]))
    m = _metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["test/acc"] > 0.5
    assert (m.get("best_ckpt") is None) == ("callbacks=none" in overrides)


def test_in_memory_fast_path_gives_the_same_metrics_as_streaming(cfg_factory, tmp_path):
    """Decoding once into memory (the default for small folders) is a speed feature only."""
    root = write_image_folder(tmp_path / "imgs", per_class=12)
    common = ["data=imagefolder", f"data.root={root}", "data.batch_size=8", "model=cnn", "trainer.max_epochs=2",
              "data.num_workers=0", "data.augment.shift=1"]
    train(cfg_factory([*common, "data.in_memory=true"], name="mem"))
    train(cfg_factory([*common, "data.in_memory=false"], name="disk"))
    a, b = _metrics(tmp_path / "mem"), _metrics(tmp_path / "disk")
    for key in ("val/acc", "test/acc", "test/loss"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_a_misspelt_optimized_metric_is_named(cfg_factory, caplog):
    # a sweep ranks jobs by it: a key the run never reports gives every job no value
    value = train(cfg_factory(["model=mlp", "optimized_metric=val/accuracy", "test=false"]))
    assert value is None
    (record,) = [r for r in caplog.records if "optimized_metric" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "optimized_metric=val/accuracy is not among this run's metrics (train/loss, train/acc, val/acc_top5, val/ece, val/loss, val/acc)" in record.getMessage()
    # the run's own metric is returned as before
    assert 0 < train(cfg_factory(["model=mlp", "test=false"], name="ok")) <= 1


def test_in_a_sweep_a_misspelt_optimized_metric_fails_the_job(cfg_factory, tmp_path, monkeypatch, capsys):
    """Optuna used to end the whole search in a traceback ("No trials are completed yet") when no
    job reported the metric; each job now fails with the keys it has and the sweep's worst value."""
    import litlab.entry
    import litlab.training

    monkeypatch.setattr(litlab.entry, "is_multirun", lambda: True)
    monkeypatch.setattr(litlab.training, "is_multirun", lambda: True)
    value = litlab.entry.run_entrypoint(train, cfg_factory(["model=mlp", "optimized_metric=val/accuracy", "test=false",
                                                           "trainer.max_epochs=1"]))
    assert math.isnan(value)  # the basic sweeper's worst value (no direction)
    m = _metrics(tmp_path / "run")
    assert m["status"] == "failed" and "optimized_metric=val/accuracy is not among this run's metrics (train/loss, train/acc, val/acc_top5, val/ece, val/loss, val/acc)" in m["error"]
    # the job's summary says so too (it used to print "litlab run completed" just before the error)
    out = capsys.readouterr().out
    assert "litlab run failed:" in out and "run completed" not in out
    assert 0 < m["val/acc"] <= 1


def test_a_resume_keeps_a_period_set_apart_from_the_epochs(cfg_factory, tmp_path):
    """T_max=10 over 3 epochs, resumed to 5 without the override, silently became a 5-epoch period
    (the rate fell from 0.0027 to 0.0010 in one epoch)."""
    train(cfg_factory(["model=mlp", "trainer.max_epochs=2", "model.scheduler.T_max=10", "logger=none",
                       "test=false"], name="t"))
    with pytest.raises(LitlabError, match=r"model\.scheduler\.T_max 10 in the checkpoint, 3 here"):
        train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "ckpt_path=last", "logger=none", "test=false"],
                          name="t"))
    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "model.scheduler.T_max=10", "ckpt_path=last",
                       "logger=none", "test=false"], name="t"))
    assert _metrics(tmp_path / "t")["epochs"] == 3


def test_an_early_stop_is_recorded(cfg_factory, tmp_path):
    # min_delta above any possible gain: the first validation sets the best, the second stops
    train(cfg_factory(["model=mlp", "trainer.max_epochs=10", "callbacks=early_stopping", "logger=none",
                       "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=2", "test=false"]))
    m = _metrics(tmp_path / "run")
    assert (m["stopped_early"], m["stopped_after_epoch"], m["epochs"]) == (True, 2, 2)
    # resuming it unchanged trained on until the next stop; refused now, and with more patience it trains on
    args = ["model=mlp", "trainer.max_epochs=10", "callbacks=early_stopping", "logger=none",
            "callbacks.early_stopping.min_delta=2", "test=false", "ckpt_path=last"]
    with pytest.raises(LitlabError, match=r"is completed: early stopping ended it in epoch 2, when val/acc had "
                                          r"not improved for callbacks\.early_stopping\.patience=1 validations"):
        train(cfg_factory([*args, "callbacks.early_stopping.patience=1"]))
    # Lightning's own EarlyStopping took patience 1 back from the checkpoint and stopped after epoch 3
    train(cfg_factory([*args, "callbacks.early_stopping.patience=3"]))
    m = _metrics(tmp_path / "run")
    assert (m["stopped_early"], m["stopped_after_epoch"], m["epochs"]) == (True, 4, 4)


def test_a_stop_at_the_last_epochs_end_is_not_early_and_the_run_trains_on(cfg_factory, tmp_path):
    """Early stopping that fires at the end of the last epoch ended nothing early: it recorded
    stopped_early true, and a resume with more epochs was then refused as an early-stopped run."""
    args = ["model=mlp", "callbacks=early_stopping", "logger=none", "callbacks.early_stopping.patience=1",
            "callbacks.early_stopping.min_delta=2", "test=false"]
    train(cfg_factory([*args, "trainer.max_epochs=2"]))  # the stop falls on the second (last) epoch
    m = _metrics(tmp_path / "run")
    assert (m["stopped_early"], m["epochs"]) == (False, 2) and "stopped_after_epoch" not in m
    train(cfg_factory([*args, "trainer.max_epochs=4", "ckpt_path=last"]))  # the resume trains on
    m = _metrics(tmp_path / "run")
    assert (m["stopped_early"], m["stopped_after_epoch"], m["epochs"]) == (True, 3, 3)


def test_an_epoch_that_early_stopping_cuts_short_keeps_its_training_figures(cfg_factory, tmp_path):
    """A stop after a mid-epoch validation in the first epoch recorded stopped_early false (Lightning's
    stopped_epoch is 0 then) and no train/loss or train/acc of the cut epoch anywhere."""
    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "+trainer.val_check_interval=0.5", "test=false",
                       "callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                       "callbacks.early_stopping.min_delta=2"]))
    m = _metrics(tmp_path / "run")
    assert (m["stopped_early"], m["stopped_after_epoch"], m["epochs"]) == (True, 1, 0) and m["cut_epoch_batches"] > 0
    assert m["global_step"] < 19 and 0 < m["train/loss"] < 5 and 0 <= m["train/acc"] <= 1
    rows = [r for r in _csv_rows(tmp_path / "run") if r.get("train/loss")]
    assert len(rows) == 1 and float(rows[0]["train/loss"]) == pytest.approx(m["train/loss"], rel=1e-6)


def test_a_validation_interval_longer_than_the_epoch_is_named(cfg_factory):
    with pytest.raises(LitlabError, match=r"trainer\.val_check_interval: `val_check_interval` \(100\) must be less than"):
        train(cfg_factory(["model=mlp", "+trainer.val_check_interval=100", "callbacks=none", "logger=none"]))


def test_the_last_epochs_figures_are_recorded_and_can_be_optimized(cfg_factory, tmp_path):
    """optimized_metric=val/loss (a loss to minimize) failed every sweep job: metrics.json had only
    val/acc of the validation figures."""
    value = train(cfg_factory(["model=mlp", "optimized_metric=val/loss", "test=false"]))
    m = _metrics(tmp_path / "run")
    assert value == pytest.approx(m["val/loss"]) and 0 < value < 3
    for key in ("train/loss", "train/acc", "val/acc_top5"):
        assert key in m, key
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as f:  # the last epoch's, as logged
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    assert m["val/loss"] == pytest.approx(float(rows[-1]["val/loss"]))


def test_a_run_killed_while_writing_its_first_last_ckpt_resumes_from_best(cfg_factory, tmp_path):
    """kill -9 during the first last.ckpt write left best.ckpt and a temporary file: the resume
    failed ("last.ckpt does not exist") and the 100 MB temporary file stayed for good."""
    train(cfg_factory(["model=mlp", "trainer.max_epochs=2"], name="k"))
    ckpts = tmp_path / "k" / "checkpoints"
    (ckpts / "last.ckpt").unlink()
    (ckpts / ".last.ckpt.x1y2z3.tmp").write_bytes(b"cut short")
    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "ckpt_path=last"], name="k"))
    assert _metrics(tmp_path / "k")["epochs"] == 3
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_trainer_switches_are_recorded_as_they_ran(cfg_factory, tmp_path):
    """Knobs the record used to misstate: an accumulation longer than the epoch (one step of every
    batch, recorded as 32 batches), checkpointing switched off (written anyway), max_epochs=0
    (last_ckpt named a file that was never written), early stopping without validation (a
    Lightning traceback after the first epoch)."""
    small = ["model=mlp", "data=synthetic", "data.shape=[1,4,4]", "data.num_train=256", "data.num_val=64",
             "data.num_test=64", "logger=none"]
    train(cfg_factory([*small, "+trainer.accumulate_grad_batches=32"], name="acc"))
    m = _metrics(tmp_path / "acc")
    assert (m["global_step"], m["effective_batch_size"]) == (2, 256)  # 4 batches of 64 per epoch, one step
    train(cfg_factory([*small, "+trainer.enable_checkpointing=false"], name="nockpt"))
    assert not (tmp_path / "nockpt" / "checkpoints").exists() and _metrics(tmp_path / "nockpt").get("best_ckpt") is None
    train(cfg_factory([*small, "trainer.max_epochs=0", "optimized_metric=null"], name="zero"))
    assert _metrics(tmp_path / "zero")["last_ckpt"] is None
    with pytest.raises(LitlabError, match=r"callbacks\.early_stopping watches val/acc, but trainer\.limit_val_batches=0 "
                                          r"runs no validation"):
        train(cfg_factory([*small, "+trainer.limit_val_batches=0", "callbacks=early_stopping"], name="noval"))


def test_training_results_are_on_record_when_the_test_fails(cfg_factory, tmp_path, monkeypatch):
    """An image that failed to decode in the test split left metrics.json with status and error only:
    the finished training's val/acc, epochs and best checkpoint were lost (a sweep saw no value)."""
    from litlab import training

    def broken_test(*args, **kwargs):
        raise LitlabError("data.root: x.png could not be read")

    monkeypatch.setattr(training, "test", broken_test)
    with pytest.raises(LitlabError):
        train(cfg_factory(["model=mlp", "logger=none"]))
    m = _metrics(tmp_path / "run")
    assert m["epochs"] == 2 and 0 < m["val/acc"] <= 1 and m["best_ckpt"].endswith("best.ckpt")


def test_a_run_on_part_of_the_data_says_so(cfg_factory, tmp_path, capsys):
    """debug=limit and trainer.limit_* runs recorded their partial-split figures as any completed
    run's. limit_* takes a fraction (float, 1.0 is all) or a number of batches (int, 1 is one)."""
    from omegaconf import OmegaConf

    from litlab.training import partial_data

    train(cfg_factory(["model=mlp", "logger=none", "debug=limit"], name="limited"))
    assert _metrics(tmp_path / "limited")["partial_data"] == {"limit_train_batches": 5, "limit_val_batches": 2,
                                                              "limit_test_batches": 2}
    assert "on part of the data:   trainer.limit_train_batches=5" in capsys.readouterr().out
    train(cfg_factory(["model=mlp", "logger=none", "trainer.max_epochs=1"], name="whole"))
    assert "partial_data" not in _metrics(tmp_path / "whole")
    assert partial_data(OmegaConf.create({"limit_val_batches": 1.0, "fast_dev_run": False})) == {}
    assert partial_data(OmegaConf.create({"limit_val_batches": 1})) == {"partial_data": {"limit_val_batches": 1}}
