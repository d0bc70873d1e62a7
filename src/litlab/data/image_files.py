"""Finding and decoding image files, with clear errors for folders that cannot be used."""

from __future__ import annotations

import logging
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from litlab.data.image_folder_settings import class_folders, empty_class_error  # noqa: F401 (class_folders: imported from here)
from litlab.errors import LitlabError
from litlab.listing import first_of

log = logging.getLogger(__name__)

# refuse images above this many pixels (decompression bombs); PIL's own limit warns only
MAX_PIXELS = 64_000_000


def unicode_twins(names: list[str], classes: list[str]) -> list[tuple[str, str]]:
    """``(name, class)`` for each of ``names`` that differs from one of ``classes`` only in its
    Unicode normalization: ``café`` as one code point (NFC) or as ``e`` plus a combining accent
    (NFD, as zips made on macOS often store it). They print alike, so an error that calls them
    different classes looks absurd unless it says why."""
    by_nfc = {unicodedata.normalize("NFC", c): c for c in classes}
    pairs = [(n, by_nfc.get(unicodedata.normalize("NFC", n))) for n in names]
    return [(n, c) for n, c in pairs if c is not None and c != n]


def unicode_form(name: str) -> str:
    """``NFC``, ``NFD`` or ``mixed``: how the accented letters of ``name`` are encoded."""
    if unicodedata.is_normalized("NFC", name):
        return "NFC"
    return "NFD" if unicodedata.is_normalized("NFD", name) else "mixed"


def visible_files(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted, leaving out hidden files and everything inside hidden
    folders (``.ipynb_checkpoints/``, ``.git/``, ...)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_split(split_dir: Path, classes: list[str], every_class: bool = True) -> tuple[list[Path], list[int]]:
    """All files under each class folder (recursively, hidden files and folders skipped) with labels.

    With ``every_class`` (the training split) an empty class folder is an error; otherwise (val,
    test) a class may be absent or empty."""
    files, labels = [], []
    for label, name in enumerate(classes):
        found = visible_files(split_dir / name) if (split_dir / name).is_dir() else []
        if not found and not every_class:
            continue
        if not found:
            raise empty_class_error(split_dir / name)
        files += found
        labels += [label] * len(found)
    return files, labels


# one-channel modes of more than 8 bits: Pillow's convert("L") clips them at 255 instead of scaling
HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def header_problem(im: Image.Image) -> str | None:
    """Why an opened image (its header read, pixels not yet decoded) cannot be used, or None: too
    many pixels, or float pixels. The streaming path checks this up front, as decoding does."""
    if im.width * im.height > MAX_PIXELS:
        return f"{im.width}x{im.height} pixels is over the {MAX_PIXELS} pixel limit"
    if im.mode == "F":
        return "32-bit float pixels have no fixed range; save the images with 8 or 16 bits per channel"
    return None


def _to_8_bit(im: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (mode ``I;16*``, or ``I`` holding values in 0..65535) scaled to
    8 bits, 65535 -> 255; wider integer pixels have no fixed range and are refused (float ones
    already by ``header_problem``)."""
    arr = np.asarray(im).astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ValueError(f"32-bit integer pixels from {arr.min()} to {arr.max()} are outside 16 bits (0..65535); "
                         f"save the images with 8 or 16 bits per channel")
    return Image.fromarray(((arr + 128) // 257).astype(np.uint8), mode="L")


def decode(path: Path, channels: int, size: tuple[int, int] | None) -> Tensor:
    """One image file as a uint8 tensor ``(C, H, W)``; raises ``OSError``/``ValueError`` if unusable."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            problem = header_problem(im)
            if problem:
                raise ValueError(problem)
            if size is not None and im.format == "JPEG" and im.width >= 2 * size[1] and im.height >= 2 * size[0]:
                # decode at reduced resolution where the codec allows: much faster for big JPEGs. Only
                # to shrink: a draft also reads a grayscale image off the luma plane instead of
                # converting RGB pixels, so at the file's own size predict (which always passes the
                # model's size) read ~1% of pixels up to 20/255 off what training (size None) read
                im.draft("L" if channels == 1 else "RGB", (size[1], size[0]))
            if im.mode in HIGH_BIT_DEPTH:
                im = _to_8_bit(im)
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    # (H, W) -> (1, H, W); (H, W, C) -> (C, H, W)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def check_readable(files: list[Path], labels: list[int], channels: int, size, on_bad_file: str
                   ) -> tuple[list[Path], list[int], list[Tensor]]:
    """Decodes every file once; bad files are skipped with a warning or fail the run.

    Returns the kept files, their labels, and the decoded tensors (which may differ in size
    when ``size`` is None: see ``check_one_size``).
    """
    keep_f, keep_l, tensors, bad = [], [], [], []
    for f, lab in zip(files, labels):
        try:
            t = decode(f, channels, size)
        except Exception as e:  # PIL raises many types for corrupt files
            bad.append(bad_file(f, e))
            continue
        keep_f.append(f)
        keep_l.append(lab)
        tensors.append(t)
    report_bad_files(bad, on_bad_file, "readable images")
    return keep_f, keep_l, tensors


def bad_file(path: Path, error: Exception) -> str:
    """``path`` and why it cannot be used, as the lists of skipped files show it: the error's type
    and its first line (a type alone, as ``OSError``, does not say what is wrong with the file)."""
    lines = str(error).splitlines()
    return f"{path} ({type(error).__name__}{': ' + lines[0] if lines else ''})"


def report_bad_files(bad: list[str], on_bad_file: str, what: str) -> None:
    """Fails the run on ``bad`` files (``data.on_bad_file=fail``) or warns that they are left out."""
    if not bad:
        return
    listing = first_of(bad, 10, sep="; ", before_more="; ")
    if on_bad_file == "fail":
        raise LitlabError(
            f"{len(bad)} file(s) under data.root are not {what}: {listing}. Remove them, "
            f"or set data.on_bad_file=skip to leave them out with a warning."
        )
    log.warning("Skipping %d file(s) that are not %s: %s", len(bad), what, listing)


def check_one_size(sizes: dict[tuple[int, int], list[Path]]) -> None:
    """Without ``data.image_size`` every image of every split must have one size (``(H, W)`` ->
    the files of that size); otherwise one error that counts each size and names examples."""
    if len(sizes) <= 1:
        return
    ranked = sorted(sizes.items(), key=lambda kv: -len(kv[1]))
    listing = "; ".join(f"{h}x{w} pixels: {len(fs)} file(s), e.g. {fs[0]}" for (h, w), fs in ranked[:5])
    more = f"; and {len(ranked) - 5} more sizes" if len(ranked) > 5 else ""
    h, w = ranked[0][0]
    raise LitlabError(
        f"The images under data.root differ in size ({listing}{more}) and data.image_size is null, which "
        f"keeps the files' own size. Set data.image_size to resize them all to one size, e.g. "
        f"data.image_size={h} or data.image_size=[{h},{w}]."
    )
