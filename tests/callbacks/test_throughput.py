"""perf/train_samples_per_s counts training batches only, validation excluded wherever it runs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from litlab.callbacks import throughput
from litlab.callbacks.throughput import Throughput
from litlab.training import train
from tests.helpers import write_npz


class Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_validation_in_the_middle_of_an_epoch_is_not_training_time(monkeypatch):
    """With trainer.val_check_interval=0.1 the rate fell 4x (19 validations counted as training)."""
    clock = Clock()
    monkeypatch.setattr(throughput, "time", clock)
    monkeypatch.setattr(throughput, "resumes_within_epoch", lambda trainer: False)
    logged = {}
    module = SimpleNamespace(log_dict=lambda d, **kw: logged.update(d))
    trainer = SimpleNamespace(world_size=2)
    batch = (torch.zeros(8, 3), torch.zeros(8))
    cb = Throughput()
    cb.on_validation_start(trainer, module)  # the sanity check, before training: not counted
    clock.now = 5.0
    cb.on_validation_end(trainer, module)
    cb.on_train_epoch_start(trainer, module)
    for step in range(4):
        clock.now += 1.0  # one second per training batch
        cb.on_train_batch_end(trainer, module, None, batch, step)
        if step in (1, 3):  # validation mid-epoch, and at the epoch's end
            cb.on_validation_start(trainer, module)
            clock.now += 10.0
            cb.on_validation_end(trainer, module)
    cb.on_train_epoch_end(trainer, module)
    assert logged == {"perf/train_samples_per_s": 4 * 8 * 2 / 4.0, "perf/epoch_time_s": 4.0}
    assert cb.samples_per_s == 16.0


class Logger:
    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step):
        self.rows.append((step, metrics))


def test_an_epoch_resumed_within_counts_from_the_resume(monkeypatch):
    """Lightning skips on_train_epoch_start in an epoch resumed within (ckpt_path=last after a
    max_steps cut): the timer stayed at 0 and the epoch logged the seconds since the host's boot."""
    clock = Clock()
    clock.now = 60_000.0
    monkeypatch.setattr(throughput, "time", clock)
    monkeypatch.setattr(throughput, "resumes_within_epoch", lambda trainer: False)
    logged = {}
    module = SimpleNamespace(log_dict=lambda d, **kw: logged.update(d))
    trainer = SimpleNamespace(world_size=1)
    cb = Throughput()
    cb.on_train_start(trainer, module)  # no on_train_epoch_start: the epoch goes on at its 13th batch
    for step in range(12, 19):
        clock.now += 0.5
        cb.on_train_batch_end(trainer, module, None, (torch.zeros(4, 3), torch.zeros(4)), step)
    cb.on_train_epoch_end(trainer, module)
    assert logged == {"perf/train_samples_per_s": 7 * 4 / 3.5, "perf/epoch_time_s": 3.5}
    assert cb.samples_per_s == 8.0


def test_a_cut_epoch_is_logged_at_the_checkpoints_step(monkeypatch):
    """An epoch cut by trainer.max_steps, which a resume continues: its rate goes where the task's
    partial means go (the checkpoint's step, dropped by a resume in the folder, with an integer
    epoch), not through self.log at the step before, which a resume kept beside the whole epoch's."""
    clock = Clock()
    monkeypatch.setattr(throughput, "time", clock)
    monkeypatch.setattr(throughput, "resumes_within_epoch", lambda trainer: True)
    logger = Logger()
    module = SimpleNamespace(log_dict=lambda d, **kw: pytest.fail("logged through self.log"))
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, loggers=[logger], current_epoch=0, global_step=12)
    cb = Throughput()
    cb.on_train_start(trainer, module)
    cb.on_train_epoch_start(trainer, module)
    for step in range(12):
        clock.now += 0.25
        cb.on_train_batch_end(trainer, module, None, (torch.zeros(8, 3), torch.zeros(8)), step)
    cb.on_train_epoch_end(trainer, module)
    assert logger.rows == [(12, {"perf/train_samples_per_s": 32.0, "perf/epoch_time_s": 3.0, "epoch": 0})]
    assert type(logger.rows[0][1]["epoch"]) is int


def test_the_runs_totals_go_into_checkpoints_and_a_resume_goes_on_from_them(monkeypatch):
    """A checkpoint holds the samples and training seconds so far, the epoch in progress included
    (Lightning writes an epoch's last validation's checkpoint before on_train_epoch_end), and once
    only after the epoch's end; a resume (within the epoch here) counts on from them, so the run's
    rate is the whole run's. It covered the resumed process only: 2 batches of 6."""
    clock = Clock()
    monkeypatch.setattr(throughput, "time", clock)
    monkeypatch.setattr(throughput, "resumes_within_epoch", lambda trainer: False)
    module = SimpleNamespace(log_dict=lambda d, **kw: None)
    trainer = SimpleNamespace(world_size=2)
    batch = (torch.zeros(8, 3), torch.zeros(8))
    first = Throughput()
    first.on_train_start(trainer, module)
    for step in range(4):  # epoch 0: 4 batches of 8 samples per rank, 1 s each
        clock.now += 1.0
        first.on_train_batch_end(trainer, module, None, batch, step)
    first.on_validation_start(trainer, module)
    clock.now += 10.0
    first.on_validation_end(trainer, module)
    assert first.state_dict() == {"samples": 64, "seconds": 4.0}  # the epoch's validation: best.ckpt, last.ckpt
    first.on_train_epoch_end(trainer, module)
    assert first.state_dict() == {"samples": 64, "seconds": 4.0}  # last.ckpt at the epoch's end: counted once
    first.on_train_epoch_start(trainer, module)
    for step in range(2):  # epoch 1: 2 batches of 3 s, then a validation within it writes last.ckpt
        clock.now += 3.0
        first.on_train_batch_end(trainer, module, None, batch, step)
    state = first.state_dict()
    assert state == {"samples": 96, "seconds": 10.0}

    resumed = Throughput()  # ckpt_path=last: the epoch goes on at its 3rd batch, without on_train_epoch_start
    resumed.on_load_checkpoint(trainer, module, {"callbacks": {"Throughput": state}})
    resumed.load_state_dict(state)
    clock.now = 50_000.0
    resumed.on_train_start(trainer, module)
    for step in range(2, 4):
        clock.now += 1.0
        resumed.on_train_batch_end(trainer, module, None, batch, step)
    resumed.on_train_epoch_end(trainer, module)
    assert (resumed.samples, resumed.seconds) == (128, 12.0)
    assert resumed.samples_per_s == 128 / 12.0 and resumed.covers == "run"


def test_a_checkpoint_without_totals_counts_from_the_resume_and_says_so(cfg_factory, tmp_path):
    """A checkpoint of an older litlab holds no totals: the run's rate is that of the resumed
    process, as before, and metrics.json says so (``train_samples_per_s_covers: since_resume``);
    it read as the whole run's, as ``covers`` was set and never recorded. The checkpoints of that
    start carry it, so that a later resume still says so; a run without such a resume has no key."""
    run = ["model=mlp", "data=npz", "data.batch_size=16", "logger=none", "test=false",
           f"data.path={write_npz(tmp_path / 'a.npz', n=64)}"]  # 4 batches of 16 an epoch
    train(cfg_factory([*run, "+trainer.max_steps=2"], name="run"))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["train_samples_per_s"] > 0 and "train_samples_per_s_covers" not in record
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    older = torch.load(last, weights_only=True)
    del older["callbacks"]["Throughput"]  # as an older litlab wrote it
    torch.save(older, last)

    train(cfg_factory([*run, "ckpt_path=last"], name="run"))  # the cut epoch's 2 batches, then epoch 2's 4
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (record["global_step"], record.get("train_samples_per_s_covers")) == (8, "since_resume")
    totals = torch.load(last, weights_only=True)["callbacks"]["Throughput"]
    assert (totals["samples"], totals.get("covers")) == (6 * 16, "since_resume")
    assert record["train_samples_per_s"] == pytest.approx(totals["samples"] / totals["seconds"], rel=1e-9)

    train(cfg_factory([*run, "ckpt_path=last", "trainer.max_epochs=3"], name="run"))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (record["global_step"], record["train_samples_per_s_covers"]) == (12, "since_resume")
    assert torch.load(last, weights_only=True)["callbacks"]["Throughput"]["samples"] == 10 * 16


def test_covers_goes_into_checkpoints_only_where_it_is_not_the_whole_run():
    """Checkpoints of a run whose totals cover the whole run keep their two numbers alone."""
    cb = Throughput()
    assert cb.covers == "run" and cb.facts() == {"train_samples_per_s": None}
    cb.on_load_checkpoint(None, None, {"callbacks": {"EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}": {}}})
    assert cb.covers == "since_resume" and (cb.samples, cb.seconds) == (0, 0.0)
    cb.samples, cb.seconds = 64, 2.0
    assert cb.facts() == {"train_samples_per_s": 32.0, "train_samples_per_s_covers": "since_resume"}
    state = cb.state_dict()
    assert state == {"samples": 64, "seconds": 2.0, "covers": "since_resume"}
    resumed = Throughput()
    resumed.on_load_checkpoint(None, None, {"callbacks": {"Throughput": state}})
    resumed.load_state_dict(state)
    assert resumed.covers == "since_resume"
