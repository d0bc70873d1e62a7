"""Whether Lightning writes step-level scalars on the current training step."""

from __future__ import annotations

import lightning.pytorch as L


def is_logging_step(trainer: L.Trainer) -> bool:
    """True on the steps where Lightning writes ``on_step`` values (every
    ``trainer.log_every_n_steps``). Values logged on the other steps are computed and dropped,
    and each ``self.log`` costs about as much as a small model's whole step, so per-step
    scalars are computed only here."""
    connector = getattr(trainer, "_logger_connector", None)
    flag = getattr(connector, "should_update_logs", None)
    return True if flag is None else bool(flag)
