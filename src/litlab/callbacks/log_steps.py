"""Step-level scalars: when Lightning writes them, and writing them without ``self.log``."""

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
