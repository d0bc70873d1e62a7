"""The run's TensorBoard writer, for callbacks that write images, text and histograms."""

from __future__ import annotations

import io

import lightning.pytorch as L
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from litlab.callbacks.banded_canvas import BandedCanvas


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


def add_rgb_image(writer, tag: str, image: Image.Image | BandedCanvas, step: int) -> None:
    """Writes an RGB Pillow image or a banded canvas as one PNG image event, like
    ``writer.add_image(tag, array, step, dataformats="HWC")`` but encoded straight from its
    pixels: ``add_image`` first makes float32 copies of the whole image (~20 MiB of peak memory
    for an 800x700 figure)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    if isinstance(image, BandedCanvas):
        encoded = image.png()
    elif image.mode != "RGB":
        raise ValueError(f"add_rgb_image takes an RGB image, got mode {image.mode}")
    else:
        png = io.BytesIO()
        image.save(png, format="PNG")
        encoded = png.getvalue()
    value = Summary.Value(tag=tag, image=Summary.Image(height=image.height, width=image.width, colorspace=3,
                                                       encoded_image_string=encoded))
    writer._get_file_writer().add_summary(Summary(value=[value]), step)
