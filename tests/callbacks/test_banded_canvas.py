"""BandedCanvas: a figure painted a band of rows at a time gives the same pixels as painted whole,
and its PNG never holds the whole figure's pixels at once."""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from litlab.callbacks.banded_canvas import BandedCanvas


def _scene(canvas) -> None:
    """Pieces that cross band edges: a lazily made image, text masks, lines, a frame."""
    font = ImageFont.load_default()
    mask = Image.new("L", (60, 14))
    ImageDraw.Draw(mask).text((0, 0), "band 12", font=font, fill=255)
    gradient = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8)[:, None, None], (1, 40, 3)))
    if isinstance(canvas, BandedCanvas):
        canvas.paste(lambda: gradient, (3, 5), size=gradient.size)
    else:
        canvas.paste(gradient, (3, 5))
    for y in (0, 9, 30, 61):
        canvas.paste((200, 30, 30), (50, y), mask)
    draw = canvas if isinstance(canvas, BandedCanvas) else ImageDraw.Draw(canvas)
    draw.line((0, 0, 99, 70), fill=(0, 90, 0))
    draw.line((10, 40, 90, 40), fill=(0, 0, 200), width=3)
    draw.rectangle((1, 1, 98, 69), outline=(90, 90, 90))


@pytest.mark.parametrize("band_rows", [1, 7, 32, 200])
def test_banded_png_has_the_pixels_of_the_whole_painting(band_rows):
    canvas = BandedCanvas(100, 71, (255, 255, 255))
    _scene(canvas)
    expected = Image.new("RGB", (100, 71), (255, 255, 255))
    _scene(expected)
    assert np.array_equal(np.asarray(canvas.image()), np.asarray(expected))
    decoded = Image.open(io.BytesIO(canvas.png(band_rows=band_rows)))
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (100, 71)
    assert np.array_equal(np.asarray(decoded), np.asarray(expected))


def test_lazy_pieces_are_made_only_for_the_bands_they_cross():
    made = []
    canvas = BandedCanvas(20, 100)
    canvas.paste(lambda: made.append(1) or Image.new("RGB", (20, 10), (0, 0, 0)), (0, 45), size=(20, 10))
    canvas.png(band_rows=10)  # rows 45-54 lie in the bands starting at 40 and 50
    assert len(made) == 2


def test_a_piece_of_unknown_size_is_refused_when_recorded():
    canvas = BandedCanvas(10, 10)
    with pytest.raises(ValueError, match="size="):
        canvas.paste(lambda: Image.new("RGB", (2, 2)), (0, 0))
    with pytest.raises(ValueError, match="size="):
        canvas.paste((1, 2, 3), (0, 0))


PROBE = """
import json, sys
from pathlib import Path
import torch
from litlab.callbacks.figures import confusion_figure

def kib(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))

n = 350
cm = torch.randint(0, 5, (n, n))
names = [str(i) for i in range(n)]
confusion_figure(cm[:20, :20], names[:20], "warm-up").png()  # code paths and text masks once
canvas = confusion_figure(cm, names, "350 classes")
Path("/proc/self/clear_refs").write_text("5")
before = kib("VmRSS")
png = canvas.png()
print(json.dumps({"peak_mib": (kib("VmHWM") - before) / 1024, "pixels_mib": canvas.width * canvas.height * 3 / 2**20}))
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/status")
def test_encoding_a_large_confusion_matrix_holds_a_fraction_of_its_pixels():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["pixels_mib"] > 5  # a 1400x1400-ish figure
    assert res["peak_mib"] < res["pixels_mib"] / 3
