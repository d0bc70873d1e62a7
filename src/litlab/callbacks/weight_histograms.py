"""Weight histograms in TensorBoard (``logger.histograms=true``)."""

from __future__ import annotations

import lightning.pytorch as L

from litlab.callbacks.log_steps import epoch_step
from litlab.callbacks.tensorboard_writer import tensorboard_writer
from litlab.errors import LitlabError


class WeightHistograms(L.Callback):
    """Writes a histogram of every parameter as ``weights/<name>`` at the end of training epochs.

    Off unless ``enabled`` (the default config reads ``logger.histograms``): copying every
    weight to the host and binning it costs time on large models.

    Args:
        enabled: write histograms at all.
        every_n_epochs: every N training epochs (``callbacks.weight_histograms.every_n_epochs``).
    """

    def __init__(self, enabled: bool = False, every_n_epochs: int = 1):
        if not isinstance(enabled, bool):
            raise LitlabError(f"logger.histograms must be true or false, got {enabled!r}.")
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise LitlabError(f"callbacks.weight_histograms.every_n_epochs must be a positive integer, "
                              f"got {every_n_epochs!r}.")
        self.enabled = enabled
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        for name, param in pl_module.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), epoch_step(trainer))
