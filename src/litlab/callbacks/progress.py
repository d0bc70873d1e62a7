"""Progress reporting that costs little: a live bar in a terminal, one line per epoch in logs."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar


class EpochLines(ProgressBar):
    """Prints one line per epoch (for CI, log files and other non-terminals): no redraws, no
    carriage returns, nothing per step."""

    def __init__(self):
        super().__init__()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Read on every rank, printing or not: the first read computes the epoch's metrics, which
        # syncs torchmetrics objects across processes; read on rank 0 alone, DDP deadlocks.
        metrics = trainer.callback_metrics
        if not (self._enabled and trainer.is_global_zero):
            return
        shown = []
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            value = metrics.get(key)
            if value is not None:
                shown.append(f"{key} {float(value):.4f}")
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  " + "  ".join(shown), flush=True)


class LiveBar(RichProgressBar):
    """Rich's live bar, also showing the latest logged training loss (``train/loss_step`` goes
    straight to the loggers, not through Lightning's progress-bar metrics)."""

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_step_loss", None)
        if loss is not None:
            items["train/loss_step"] = f"{loss:.3f}"
        return items


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """Rich's live bar (redrawn every ``refresh_rate`` steps) when stdout is a terminal,
    else ``EpochLines``."""
    if sys.stdout.isatty():
        return LiveBar(refresh_rate=refresh_rate, leave=False)
    return EpochLines()
