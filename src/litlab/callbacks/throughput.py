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

    The totals go into checkpoints (``state_dict``: the epoch in progress included), so that a
    resumed run reports the whole run's rate, not that of its last process; ``covers`` says which
    (``"run"``, or ``"since_resume"`` after a checkpoint of an older litlab, which holds none; it is
    checkpointed too, so that a later resume still says so), and ``facts`` gives metrics.json both.
    Holding state keeps it out of ``CallbackGroup`` (``group.groupable``): its checkpoint entry is
    ``Throughput`` whether or not the trainer groups its callbacks. Under DDP each rank counts all
    ranks' samples (its own times the world size) over its own clock; a checkpoint holds rank 0's
    totals, which every rank of a resume goes on from.
    """

    def __init__(self):
        self.samples = 0
        self.seconds = 0.0
        self.covers = "run"
        self._world_size = 1
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
        self._world_size = trainer.world_size
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
        samples, seconds = self._epoch_so_far()
        self.samples += samples
        self.seconds += seconds
        # closed: a checkpoint written after this (last.ckpt at the epoch's end) holds the epoch once
        self._epoch_samples, self._epoch_start, self._paused = 0, self._last, 0.0
        if seconds <= 0:
            return
        values = {"perf/train_samples_per_s": samples / seconds, "perf/epoch_time_s": seconds}
        if resumes_within_epoch(trainer):
            # a cut epoch (trainer.max_steps, max_time): at the checkpoint's step with the task's
            # partial means, where a resume in this folder drops them; rank 0's time
            log_epoch_scalars(trainer, values, step=trainer.global_step)
        else:
            pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=True)

    def _epoch_so_far(self) -> tuple[int, float]:
        """Samples (all ranks) and training seconds of the epoch in progress, up to its latest batch."""
        # every rank sees its own shard: the global rate is the per-rank rate times the world size
        return self._epoch_samples * self._world_size, self._last - self._epoch_start - self._paused

    def state_dict(self) -> dict[str, float | str]:
        # Lightning writes the checkpoint of an epoch's last validation before on_train_epoch_end,
        # and one within an epoch in the middle of it: both hold the batches trained so far, after
        # which a resume goes on
        samples, seconds = self._epoch_so_far()
        # totals counted since a resume from an older litlab's checkpoint stay so in the next resume
        partial = {} if self.covers == "run" else {"covers": self.covers}
        return {"samples": self.samples + samples, "seconds": self.seconds + seconds, **partial}

    def load_state_dict(self, state_dict: dict[str, float | str]) -> None:
        self.samples, self.seconds = int(state_dict["samples"]), float(state_dict["seconds"])
        self.covers = str(state_dict.get("covers", "run"))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # a checkpoint of an older litlab holds no totals: they count from the resume, as before
        self.covers = "run" if self.state_key in (checkpoint.get("callbacks") or {}) else "since_resume"

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    def facts(self) -> dict:
        """metrics.json's ``train_samples_per_s``, and ``train_samples_per_s_covers: since_resume``
        where it covers the run only since a resume from a checkpoint without totals (older litlab):
        the rate alone read as the whole run's."""
        covers = {} if self.covers == "run" else {"train_samples_per_s_covers": self.covers}
        return {"train_samples_per_s": self.samples_per_s, **covers}
