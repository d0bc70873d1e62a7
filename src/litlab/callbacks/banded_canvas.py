"""A figure kept as drawing operations and painted one horizontal band at a time.

A report figure is drawn inside the training process, at the end of a validation epoch. Drawn
whole, a 784x735 RGB confusion matrix holds 1.7 MB of pixels at once (5.9 MB at 350 classes),
which on small runs was the largest single addition to the run's peak memory. ``BandedCanvas``
records what to draw instead; ``png()`` paints ``band_rows`` rows at a time and streams each band
into the PNG's compressed data, so only one band of pixels exists at any moment. ``image()``
paints the whole figure (for tests and previews); both give the same pixels.

The operations take the same arguments as ``Image.paste`` and ``ImageDraw.line`` /
``rectangle``, so drawing helpers work on an ``Image`` and on a canvas alike.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_FILTER_UP = 2  # each row stored as its difference from the row above: flat areas become zeros


@dataclass(frozen=True)
class _Op:
    top: float  # first and last row the operation can touch (for skipping it in other bands)
    bottom: float
    paint: Callable[[Image.Image, int], None]  # paint(band, band_top)


class BandedCanvas:
    """An RGB figure of ``width`` x ``height`` pixels on a ``background`` colour."""

    def __init__(self, width: int, height: int, background: RGB = (255, 255, 255)):
        self.width, self.height, self.background = int(width), int(height), background
        self._ops: list[_Op] = []

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # --- drawing, recorded ----------------------------------------------------------------------
    def paste(self, source: RGB | Image.Image | Callable[[], Image.Image], xy: tuple[int, int],
              mask: Image.Image | None = None, size: tuple[int, int] | None = None) -> None:
        """Like ``Image.paste(source, xy, mask)``. ``source`` may also be a function that makes the
        image when a band needs it (then ``size`` gives its size), so large pieces need not be
        kept between bands."""
        x, y = int(xy[0]), int(xy[1])
        if size is None:
            if mask is not None:
                size = mask.size
            elif isinstance(source, Image.Image):
                size = source.size
            else:
                raise ValueError("BandedCanvas.paste needs size= for a colour without a mask or an image made later")

        def paint(band: Image.Image, top: int) -> None:
            piece = source() if callable(source) else source
            band.paste(piece, (x, y - top), mask)

        self._ops.append(_Op(y, y + size[1] - 1, paint))

    def line(self, xy: tuple[float, float, float, float], fill: RGB, width: int = 1) -> None:
        """Like ``ImageDraw.line`` for one segment."""
        x0, y0, x1, y1 = xy
        self._ops.append(_Op(min(y0, y1) - width, max(y0, y1) + width,
                             lambda band, top: ImageDraw.Draw(band).line((x0, y0 - top, x1, y1 - top), fill=fill,
                                                                         width=width)))

    def rectangle(self, xy: tuple[float, float, float, float], outline: RGB) -> None:
        """Like ``ImageDraw.rectangle`` with an outline only."""
        x0, y0, x1, y1 = xy
        self._ops.append(_Op(y0, y1, lambda band, top: ImageDraw.Draw(band).rectangle((x0, y0 - top, x1, y1 - top),
                                                                                      outline=outline)))

    # --- painting --------------------------------------------------------------------------------
    def render(self, top: int = 0, bottom: int | None = None) -> Image.Image:
        """Rows ``top`` to ``bottom`` (exclusive) as an RGB image."""
        bottom = self.height if bottom is None else bottom
        band = Image.new("RGB", (self.width, bottom - top), self.background)
        for op in self._ops:
            if op.bottom >= top and op.top < bottom:
                op.paint(band, top)
        return band

    def image(self) -> Image.Image:
        """The whole figure at once."""
        return self.render()

    def png(self, band_rows: int = 16, level: int = 6) -> bytes:
        """The figure as PNG bytes, painted and compressed ``band_rows`` rows at a time.

        Each band's rows go into one reused buffer with the PNG "up" filter (the byte difference
        to the row above, which uint8 arithmetic wraps modulo 256 as PNG wants), so a band costs
        one painted strip and no temporary arrays: temporaries of 100+ KiB would each take a
        fresh mmap, or grow the heap once glibc raises its mmap threshold, and that heap stays."""
        compressor = zlib.compressobj(level)
        data = []
        row_bytes = self.width * 3
        lines = np.empty((band_rows, 1 + row_bytes), dtype=np.uint8)
        lines[:, 0] = PNG_FILTER_UP
        above = np.zeros(row_bytes, dtype=np.uint8)  # the row above the first counts as zeros
        for top in range(0, self.height, band_rows):
            rows = np.asarray(self.render(top, min(top + band_rows, self.height))).reshape(-1, row_bytes)
            n = len(rows)
            np.subtract(rows[0], above, out=lines[0, 1:])
            np.subtract(rows[1:], rows[:-1], out=lines[1:n, 1:])
            data.append(compressor.compress(lines[:n]))
            above[:] = rows[-1]
        data.append(compressor.flush())
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
        return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(data)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
