"""Lightning's TensorBoard logger: one event per step for all its scalars, no disk flush after
every logged step, and clean curves after a resume."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _add_prefix
from lightning.pytorch.loggers import TensorBoardLogger as _LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from litlab.tensorboard_events import SummaryWriter, drop_events_from

# the file holding a run's hparams session (settings and final metrics), replaced as a whole
HPARAMS_SUFFIX = ".hparams"


class TensorBoardLogger(_LightningTensorBoardLogger):
    """Lightning's TensorBoard logger with three costs of a small model's step removed.

    * Events go to litlab's :class:`~litlab.tensorboard_events.EventFile`: framed into a buffered
      file by the training thread and written out once ``flush_every_s`` seconds have passed since
      the last write, instead of a hand-off to TensorBoard's writer thread, which opened, appended
      to and closed the file for every event.
    * Lightning calls ``save()`` after every ``log_metrics``, a flush each time; here ``save()``
      flushes at most every ``flush_every_s`` seconds, and ``finalize`` (end of run, also after a
      failure) and ``log_hyperparams`` always do.
    * Scalars are written as one event per step holding all of that step's values (a training
      step logs its loss and its gradient norm in two calls; an epoch end ~10 values in one),
      built directly rather than through ``SummaryWriter.add_scalar``, which makes one event per
      value through several conversion layers. A step's values are held until a call for another
      step, ``save()`` or ``finalize``; TensorBoard shows the same tags, steps and values either way.

    Args:
        flush_every_s: the longest logged events wait in memory once newer ones arrive (and the
            least time between two disk writes).
        **kwargs: Lightning's ``TensorBoardLogger`` arguments.
    """

    def __init__(self, *args, flush_every_s: float = 5.0, **kwargs):
        kwargs.setdefault("flush_secs", flush_every_s)
        super().__init__(*args, **kwargs)
        self.flush_every_s = float(flush_every_s)
        self._last_flush = float("-inf")
        # (step, wall time of its first value, {tag: value}) not yet handed to the writer
        self._pending: tuple[int | None, float, dict[str, float]] | None = None
        self._finalized = False  # finalize() ran: later writes reopen the writer and close it again
        self._resume_step: int | None = None  # continue_from_step's, applied when the writer opens

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        """The run's ``SummaryWriter`` (torch's, over litlab's event file), made on first use."""
        if self._experiment is None:
            if self.root_dir:
                self._fs.makedirs(self.root_dir, exist_ok=True)
            if self._resume_step is not None and "://" not in str(self.log_dir) and Path(self.log_dir).is_dir():
                drop_events_from(self.log_dir, self._resume_step, skip_suffix=HPARAMS_SUFFIX)
                self._resume_step = None
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        scalars = {}
        for k, v in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(v, Tensor):
                v = v.item()
            if isinstance(v, dict):  # a group of curves in one chart: Lightning's way
                self.experiment.add_scalars(k, v, step)
                continue
            try:
                scalars[k] = float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"TensorBoard logger: {k}={v!r} is not a number, a one-element tensor or a dict "
                                 f"of numbers.") from e
        if not scalars:
            return
        if self._pending is not None and self._pending[0] != step:
            self._write_pending()
        if self._pending is None:
            self._pending = (step, time.time(), {})
        self._pending[2].update(scalars)

    def _write_pending(self) -> None:
        if self._pending is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        step, wall_time, values = self._pending
        self._pending = None
        summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        self.experiment._get_file_writer().add_summary(summary, step, wall_time)

    @rank_zero_only
    def log_hyperparams(self, params, metrics=None, step=None) -> None:
        """Lightning's, then straight to disk. Hyperparameters with final metrics (the hparams
        tab's session) go to a file of their own, which replaces the one an earlier run in this
        folder wrote: after a resume, TensorBoard showed both runs' ``hparams/*`` points and the
        first run's settings (it keeps the first session record it reads)."""
        if metrics:
            self._write_final_hparams(params, metrics, step)
            return
        super().log_hyperparams(params, metrics, step)
        self._write_pending()
        if self._finalized:  # after the run's end: the writer reopened a file for them; close it again
            self.experiment.close()
        else:
            self.experiment.flush()

    def _write_final_hparams(self, params, metrics, step) -> None:
        folder = Path(self.log_dir)
        earlier = sorted(folder.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"))
        self._write_pending()
        curves, self._experiment = self._experiment, SummaryWriter(log_dir=self.log_dir, filename_suffix=HPARAMS_SUFFIX)
        try:
            super().log_hyperparams(params, metrics, step)
            self._write_pending()
        finally:
            self._experiment.close()
            self._experiment = curves
        for path in earlier:  # written first, removed after: a crash in between leaves both, never neither
            path.unlink(missing_ok=True)

    @rank_zero_only
    def save(self) -> None:
        self._write_pending()
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self._last_flush = now
            super().save()

    def continue_from_step(self, step: int) -> None:
        """The run resumes at optimizer step ``step`` in this folder: the events that an earlier run
        wrote at that step or later (the unfinished epoch, which is trained again, and the earlier
        start's test and compression results) are removed from its files before the first write
        (``tensorboard_events.drop_events_from``), so each step shows once, from the run that
        finished it, as in the CSV logger's ``metrics.csv``."""
        if self._experiment is None:
            self._resume_step = int(step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._write_pending()
        self._last_flush = float("-inf")  # the final save() in super().finalize must flush
        super().finalize(status)
        self._finalized = True
