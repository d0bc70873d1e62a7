"""Finding the run's TensorBoard writer, for callbacks that write images, text and histograms."""

from __future__ import annotations

import lightning.pytorch as L
from lightning.pytorch.loggers import TensorBoardLogger


def tensorboard_writer(trainer: L.Trainer):
    """The ``SummaryWriter`` of the run's TensorBoard logger on rank 0, else None.

    Scalars go through ``pl_module.log`` (every logger gets them); only what the other loggers
    cannot show (images, text, histograms) is written here directly.
    """
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
