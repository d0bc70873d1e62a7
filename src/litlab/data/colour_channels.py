"""``data.channels=auto``: whether an image folder's training files are in colour (a few files
of each class opened, their pixels compared), and the channels a checkpoint's model was trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# modes whose pixels carry colour; P/PA (a palette) are colour when the palette is
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")


def colour_file(files: list[Path]) -> tuple[Path, str] | None:
    """The first of ``files`` whose pixels differ between colour channels, with its mode, or None:
    a colour mode (or a palette with colours) whose pixels, read at reduced size for JPEGs, are not
    all grey (RGB scans of grayscale pages are common and lose nothing as grayscale)."""
    for f in files:
        try:
            with Image.open(f) as im:
                mode = im.mode
                if mode in ("P", "PA"):
                    palette = np.asarray(im.getpalette() or [], dtype=np.int64)
                    palette = palette[: len(palette) // 3 * 3].reshape(-1, 3)
                    if not (palette != palette[:, :1]).any():
                        continue
                elif mode not in COLOUR_MODES:
                    continue
                if im.format == "JPEG":
                    im.draft("RGB", (64, 64))
                arr = np.asarray(im.convert("RGB"), dtype=np.int16)  # (H, W, 3)
        except Exception:  # unreadable files are named when the split is read
            continue
        if (arr != arr[..., :1]).any():
            return f, mode
    return None


# data.channels=auto opens at most COLOUR_PER_CLASS files of each of COLOUR_CLASSES classes (160 files)
COLOUR_PER_CLASS, COLOUR_CLASSES = 8, 20


def colour_sample(files: list[Path], labels: list[int]) -> list[Path]:
    """The training files ``data.channels=auto`` looks at for colour: up to ``COLOUR_PER_CLASS`` of each
    class, evenly spread over its sorted files (first and last included), in up to ``COLOUR_CLASSES``
    classes evenly spread over the sorted classes. The first file of each class alone missed a
    folder of colour photos whose first files were grey."""
    by_class: dict[int, list[Path]] = {}
    for f, k in zip(files, labels):
        by_class.setdefault(k, []).append(f)
    keys = sorted(by_class)
    if len(keys) > COLOUR_CLASSES:
        keys = [keys[round(i * (len(keys) - 1) / (COLOUR_CLASSES - 1))] for i in range(COLOUR_CLASSES)]
    picked = []
    for k in dict.fromkeys(keys):
        own = sorted(by_class[k])
        n = min(len(own), COLOUR_PER_CLASS)
        picked += [own[round(i * (len(own) - 1) / (n - 1))] if n > 1 else own[0] for i in range(n)]
    return picked


def recorded_channels(record: dict) -> int | str:
    """The channels a checkpoint's model was trained on (its data record): the number its
    preprocessing recorded, else its sample shape's first axis; ``auto`` when neither says."""
    channels = (record.get("preprocess") or {}).get("channels")
    if channels in (1, 3):
        return channels
    shape = record.get("input_shape") or []
    return shape[0] if len(shape) == 3 and shape[0] in (1, 3) else "auto"
