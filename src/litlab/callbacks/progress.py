"""Progress reporting that costs little: a live bar in a terminal, one line per epoch in logs."""

from __future__ import annotations

import logging
import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from litlab.errors import LitlabError
from litlab.file_only_logs import FILE_ONLY

log = logging.getLogger(__name__)


def epoch_line(trainer, validated: bool) -> str:
    """``epoch 3/20  train/loss ...  val/acc ...``: the epoch's figures, validation ones only for an
    epoch that validated. Also written to the run's log file, whichever progress display runs."""
    metrics = trainer.callback_metrics
    keys = ("train/loss", "train/acc") + (("val/loss", "val/acc") if validated else ())
    shown = [f"{key} {float(metrics[key]):.4f}" for key in keys if metrics.get(key) is not None]
    return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  " + "  ".join(shown)


class EpochLines(ProgressBar):
    """Prints one line per epoch (for CI, log files and other non-terminals): no redraws, no
    carriage returns, nothing per step."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._validated_epoch: int | None = None  # the epoch of the latest validation (not sanity check)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Read on every rank, printing or not: the first read computes the epoch's logged values,
        # reducing those logged with sync_dist=True (the throughput) across the processes, a
        # collective; read on rank 0 alone, DDP deadlocks. So is finishing an epoch cut short.
        if hasattr(pl_module, "finish_train_epoch"):
            pl_module.finish_train_epoch()
        trainer.callback_metrics  # noqa: B018 (the read that reduces, on every rank)
        if not trainer.is_global_zero:
            return
        line = epoch_line(trainer, self._validated_epoch == trainer.current_epoch)
        if self._enabled:
            print(line, flush=True)
        log.info(line, extra=FILE_ONLY)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch


class LiveBar(RichProgressBar):
    """Rich's live bar, redrawn at most ``refresh_rate`` times a second, also showing the latest
    logged training loss (``train/loss_step`` goes straight to the loggers, not through
    Lightning's progress-bar metrics).

    Lightning updates the bar's task and reads its metrics after every batch (and, depending on
    its version, takes ``refresh_rate`` as batches between redraws or as redraws per second);
    here a batch between two redraws costs one clock reading, whatever the version, and the first
    and the last batch of every bar always update it, so counts end right. Drawing itself still
    costs a tiny model a few per cent in a terminal (the digits MLP trained at 0.88-0.97 of its
    speed with stdout in a file at 10 redraws a second, 0.94-1.03 at 2).
    """

    def __init__(self, refresh_rate: int = 10, **kwargs):
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._next_update = 0.0
        self._validated_epoch: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if hasattr(pl_module, "finish_train_epoch"):  # an epoch cut short records its own means (every rank)
            pl_module.finish_train_epoch()
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.is_global_zero:  # the bar leaves no line behind: the run's log file gets one
            log.info(epoch_line(trainer, self._validated_epoch == trainer.current_epoch), extra=FILE_ONLY)

    def _due(self, batch_idx: int, total: int | float) -> bool:
        now = time.monotonic()
        if now >= self._next_update or batch_idx == 0 or batch_idx + 1 >= total:
            self._next_update = now + 1.0 / self.refresh_rate
            return True
        return False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_step_loss", None)
        if loss is not None:
            items["train/loss_step"] = f"{loss:.3f}"
        return items


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """Rich's live bar (redrawn at most ``refresh_rate`` times a second) when stdout is a
    terminal, else ``EpochLines``; ``refresh_rate=0``: epoch lines in a terminal too."""
    if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
        raise LitlabError(f"callbacks.progress_bar.refresh_rate must be a whole number of redraws per second "
                          f"(0: no live bar, one line per epoch), got {refresh_rate!r}.")
    if refresh_rate > 0 and sys.stdout.isatty():
        return LiveBar(refresh_rate=refresh_rate, leave=False)
    return EpochLines()
