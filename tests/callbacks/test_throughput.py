"""perf/train_samples_per_s counts training batches only, validation excluded wherever it runs."""

from __future__ import annotations

from types import SimpleNamespace

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
