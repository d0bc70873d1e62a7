"""Training throughput and epoch time, measured on the host without device syncs."""

from __future__ import annotations

import time

import lightning.pytorch as L

from litlab.callbacks.checkpoints import resumes_within_epoch
from litlab.callbacks.log_steps import log_epoch_scalars


class Throughput(L.Callback):
    """Logs ``perf/train_samples_per_s`` and ``perf/epoch_time_s`` each epoch.

    Time counts from the start of the epoch to the end of its last training batch, less any
    validation run in between (``trainer.val_check_interval`` < 1 validates mid-epoch); totals
    over the whole fit are kept in ``samples`` and ``seconds`` for the run report. An epoch resumed
    within (``ckpt_path=last`` after a cut) counts from the resume, over the batches trained since.
    """

    def __init__(self):
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = 0.0
        self._last = 0.0
        self._epoch_samples = 0
        self._validating_since: float | None = None
        self._paused = 0.0  # validation time between the epoch's start and its latest training batch
        self._pending = 0.0  # validation time after the latest training batch

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning skips on_train_epoch_start in an epoch resumed within: its timer stayed at 0,
        # and the epoch logged the seconds since the host's boot (~60,000 s, 0.01 samples/s)
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = self._last = time.perf_counter()
        self._epoch_samples = 0
        self._paused = self._pending = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_samples += len(batch[1])
        self._last = time.perf_counter()
        self._paused += self._pending
        self._pending = 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validating_since = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validating_since is not None:
            self._pending += time.perf_counter() - self._validating_since
            self._validating_since = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = self._last - self._epoch_start - self._paused
        # every rank sees its own shard: the global rate is the per-rank rate times the world size
        samples = self._epoch_samples * trainer.world_size
        self.samples += samples
        self.seconds += seconds
        if seconds <= 0:
            return
        values = {"perf/train_samples_per_s": samples / seconds, "perf/epoch_time_s": seconds}
        if resumes_within_epoch(trainer):
            # a cut epoch (trainer.max_steps, max_time): at the checkpoint's step with the task's
            # partial means, where a resume in this folder drops them; rank 0's time
            log_epoch_scalars(trainer, values, step=trainer.global_step)
        else:
            pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=True)

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None
