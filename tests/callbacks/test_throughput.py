"""perf/train_samples_per_s counts training batches only, validation excluded wherever it runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from litlab.callbacks import throughput
from litlab.callbacks.throughput import Throughput


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
