"""Step and epoch scalars: when Lightning writes them, and writing them without ``self.log``."""

from __future__ import annotations

import lightning.pytorch as L
from torch import Tensor


def is_logging_step(trainer: L.Trainer | None) -> bool:
    """True on the steps where Lightning writes ``on_step`` values (every
    ``trainer.log_every_n_steps``). Step scalars are computed only there."""
    connector = getattr(trainer, "_logger_connector", None)
    flag = getattr(connector, "should_update_logs", None)
    return True if flag is None else bool(flag)


def log_step_scalars(trainer: L.Trainer, scalars: dict[str, Tensor | float]) -> dict[str, float]:
    """Writes ``scalars`` to every logger of the run at the step Lightning would use for
    ``self.log(..., on_step=True)`` in this batch, and returns them as floats (on rank 0; other
    ranks write nothing and get an empty dict).

    ``self.log`` of a step-only value moves its result holder to the value's device on every call,
    a deep walk of Lightning's bookkeeping that costs more than a small model's whole training
    step; writing straight to the loggers costs the float conversion and the logger's own write.
    """
    if not trainer.is_global_zero:
        return {}  # only rank 0 writes; the other ranks skip the host sync of the float conversion
    values = {k: float(v) for k, v in scalars.items()}
    loop = trainer.fit_loop.epoch_loop
    step = getattr(loop, "_batches_that_stepped", max(trainer.global_step - 1, 0))
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)
    return values


def publish_epoch_means(trainer: L.Trainer, means: dict[str, Tensor]) -> None:
    """Makes an epoch's already-reduced ``means`` visible to callbacks at once, as
    ``self.log(..., on_epoch=True)`` would: in ``trainer.callback_metrics`` (checkpointing, early
    stopping and LR schedulers may monitor them when validation ends, before the epoch does) and
    ``trainer.logged_metrics``. Call it on every rank; ``log_epoch_scalars`` writes them later.

    ``self.log`` costs ~0.3 ms per value inside a run (see ``log_step_scalars``), two values at
    every epoch's last batch ~3 % of a digits MLP epoch, for values that need no reduction.
    """
    trainer.callback_metrics.update(means)
    trainer.logged_metrics.update(means)


def epoch_step(trainer: L.Trainer) -> int:
    """The step at which Lightning logs a validation's and an epoch's values: the last optimizer
    step before them (Lightning's logging counter has not counted it yet at validation time, and
    has at the epoch's end; ``global_step`` has at both). Figures and histograms go there too: one
    step per epoch on every TensorBoard tab, and a resume, which drops the events at the
    checkpoint's step (one past it) and later, leaves the finished epoch's alone."""
    return max(trainer.global_step - 1, 0)


def log_epoch_scalars(trainer: L.Trainer, scalars: dict[str, Tensor | float], step: int | None = None) -> None:
    """Writes a training epoch's ``scalars`` with the epoch number to every logger; rank 0 only.

    Args:
        step: where; None: where Lightning writes epoch values at the training epoch's end (its
            last step). An epoch that a resume continues (``checkpoints.resumes_within_epoch``)
            goes at the checkpoint's step, ``trainer.global_step``, which a resume in the same
            folder drops with the rest of the cut epoch. ``log_step_scalars`` with an ``epoch``
            key wrote the epoch there as a float (``0.0`` in metrics.csv, ``0`` in every other row).
    """
    if not trainer.is_global_zero:
        return
    if step is None:
        step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step) - 1
    values = {k: float(v) for k, v in scalars.items()}
    values["epoch"] = trainer.current_epoch
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)
