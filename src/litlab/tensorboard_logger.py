"""Lightning's TensorBoard logger, without a disk flush after every logged step and with clean
curves after a resume."""

from __future__ import annotations

import time

from lightning.pytorch.loggers import TensorBoardLogger as _LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class TensorBoardLogger(_LightningTensorBoardLogger):
    """Lightning calls ``save()`` after every ``log_metrics``: a flush that waits until the writer
    thread has put every pending event on disk, on the training thread, every
    ``trainer.log_every_n_steps`` steps. Here ``save()`` flushes at most every ``flush_every_s``
    seconds; the writer's own thread still writes events as they come, and ``finalize`` (end of
    run, also after a failure) flushes everything.

    Args:
        flush_every_s: the longest a logged scalar waits before it is forced to disk.
        **kwargs: Lightning's ``TensorBoardLogger`` arguments.
    """

    def __init__(self, *args, flush_every_s: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.flush_every_s = float(flush_every_s)
        self._last_flush = float("-inf")

    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self._last_flush = now
            super().save()

    def continue_from_step(self, step: int) -> None:
        """The run resumes at optimizer step ``step`` in this folder: the events that an earlier run
        wrote at that step or later (the unfinished epoch, which is trained again) are hidden from
        TensorBoard (``SummaryWriter``'s ``purge_step``), so each step's curve point is shown once."""
        if self._experiment is None:
            self._kwargs["purge_step"] = int(step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._last_flush = float("-inf")  # the final save() in super().finalize must flush
        super().finalize(status)
