"""What ``input=`` can be: one image file, a folder of images (recursively) or an ``.npz`` of arrays.

Each reader yields batches of ``(names, samples, errors, order)``: ``samples`` stacks the
readable inputs as raw tensors (``(N, *input_shape)``), ``errors`` pairs the other names with why,
``order`` lists every name of the batch in input order (the CSV's row order)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from litlab.data.image_files import decode
from litlab.data.npz import finite_samples, read_arrays
from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError

# (names of the readable inputs, their samples, (name, why) of the others, every name in input order)
Batch = tuple[list[str], Tensor | None, list[tuple[str, str]], list[str]]
NPZ_KEYS = ("x", "x_test")


# aspect ratios (width / height) closer than this, relative, count as the same: 1000x751 -> 32x24
# is a resize, not a stretch
ASPECT_TOLERANCE = 0.01


@dataclass
class Resized:
    """The image files decoded at another size than the model's ``(H, W)`` (``image_batches``):
    predict resizes them, as training with ``data.image_size`` did; a model trained on files of
    its own size never saw a resized one, and a changed aspect ratio stretches the picture."""

    count: int = 0
    """Files resized."""
    stretched: int = 0
    """Of those, files whose aspect ratio changed by more than ``ASPECT_TOLERANCE``."""
    first: tuple[str, int, int] | None = None
    """``(name, width, height)`` of the first file resized, for the log line."""
    first_stretched: tuple[str, int, int] | None = None

    def add(self, name: str, width: int, height: int, size: tuple[int, int]) -> None:
        """One file of ``width x height`` decoded to ``size`` ``(H, W)``."""
        if (height, width) == tuple(size):
            return
        self.count += 1
        self.first = self.first or (name, width, height)
        if is_stretch(width, height, size):
            self.stretched += 1
            self.first_stretched = self.first_stretched or (name, width, height)


# what a model decodes an image file to: (channels, H, W)
Spec = tuple[int, int, int]


def is_stretch(width: int, height: int, size: tuple[int, int]) -> bool:
    """Whether a file of ``width x height`` resized to ``size`` ``(H, W)`` changes its aspect ratio
    by more than ``ASPECT_TOLERANCE``."""
    h, w = size
    return abs((width / height) / (w / h) - 1) > ASPECT_TOLERANCE


def image_batches(files: list[Path], input_shape: tuple[int, ...], channels: int | None,
                  batch_size: int, resized: Resized | None = None) -> Iterator[Batch]:
    """Decodes files as in training: ``channels`` (1 or 3) and resized to the model's ``(H, W)``.

    Files that are not images or fail to decode become errors; they do not stop the rest.
    ``resized`` counts the files decoded from another size.
    """
    c, h, w = input_shape
    for names, decoded, errors, order in decoded_batches(files, [(channels or c, h, w)], batch_size, [resized]):
        yield names, decoded[0] if decoded else None, errors, order


def decoded_batches(files: list[Path], specs: list[Spec], batch_size: int,
                    resized: list[Resized | None] | None = None, any_resized: Resized | None = None
                    ) -> Iterator[tuple[list[str], list[Tensor] | None, list[tuple[str, str]], list[str]]]:
    """Batches of ``files``, each decoded once per spec of ``specs`` (an ensemble's members that
    decode to different channels or sizes): ``(names, [samples (N, C, H, W) per spec], errors, order)``.

    Each file is opened once: its header gives its own size, then the same open file is decoded
    (``image_files.decode`` reads it from the start) for each spec. A file that fails any decode is
    an error row. ``resized``: per spec, the files decoded from another size; ``any_resized``: the
    files decoded from another size for at least one spec (stretched where one of them stretches)."""
    sizes = [spec[1:] for spec in specs]  # (H, W) each
    for start in range(0, len(files), batch_size):
        names, errors = [], []
        samples: list[list[Tensor]] = [[] for _ in specs]
        chunk = files[start:start + batch_size]
        for f in chunk:
            try:
                width, height, decoded = _decode_once(f, specs)
            except Exception as e:  # PIL raises many types for files it cannot read
                first_line = str(e).splitlines()[0][:200] if str(e) else ""
                errors.append((str(f), f"not a readable image: {type(e).__name__}: {first_line}"))
                continue
            names.append(str(f))
            for kept, tensor in zip(samples, decoded):
                kept.append(tensor)
            for count, size in zip(resized or [], sizes):
                if count is not None:
                    count.add(str(f), width, height, size)
            other = [s for s in sizes if s != (height, width)]
            if any_resized is not None and other:
                stretching = [s for s in other if is_stretch(width, height, s)]
                any_resized.add(str(f), width, height, (stretching or other)[0])
        yield names, [torch.stack(t) for t in samples] if names else None, errors, [str(f) for f in chunk]


def _decode_once(path: Path, specs: list[Spec]) -> tuple[int, int, list[Tensor]]:
    """``(width, height, [uint8 (C, H, W) per spec])`` of one image file, opened once."""
    with open(path, "rb") as fp:
        with warnings.catch_warnings():  # a huge image fails as decode fails it, with no warning
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(fp) as im:  # the header only: the file's own size, before decode resizes it
                    width, height = im.size
            except UnidentifiedImageError:
                # as Image.open(path) words it, naming the file (given an open file, PIL names the object)
                raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}") from None
        decoded = []
        for channels, h, w in specs:
            fp.seek(0)
            decoded.append(decode(fp, channels, (h, w)))  # decode opens what Image.open takes: a path or a file
    return width, height, decoded


def read_npz(path: Path, input_shape: tuple[int, ...], pre: Preprocess) -> tuple[str, Tensor]:
    """The array under key ``x`` (or ``x_test``) of ``path``, checked against the model's input.

    Returns the key and the samples ``(N, *input_shape)`` on the scale the model was trained on
    (see ``model_inputs``).
    """
    arrays = read_arrays(path, "input")
    key = next((k for k in NPZ_KEYS if k in arrays), None)
    if key is None:
        raise LitlabError(f"input={path} has no array named {' or '.join(NPZ_KEYS)}; it has "
                          f"{', '.join(sorted(arrays)) or 'none'}. Store the samples to classify under x.")
    x = arrays[key]
    stored = tuple(x.shape)  # the errors quote it, not the reshape below
    if pre.kind == "sequence" and x.ndim == 2:
        if input_shape[0] == 1:
            x = x[:, None, :]  # (N, F) -> (N, 1, F), as training reads such arrays
        elif input_shape[-1] == 1:
            x = x[:, :, None]  # (N, L) -> (N, L, 1): a checkpoint of the time when training read 2-D arrays so
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise LitlabError(shape_mismatch(f"input={path}", key, stored, input_shape, pre.kind))
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise LitlabError(f"input={path}: {key} has dtype {x.dtype}; expected real numbers.")
    return key, model_inputs(x, f"input={path}: {key}", pre)


def sample_shape(input_shape: tuple[int, ...], kind: str) -> tuple[str, tuple[int, ...]]:
    """What the model's samples are called and the shape of one as the user stores it: a
    sequence model of ``(1, F)`` was trained on feature vectors ``(N, F)`` (read as ``(N, 1, F)``),
    and takes them so; ``(N, 1, F)`` sequences of one step were no word the user knew."""
    if kind == "image":
        return "images (N, C, H, W)", tuple(input_shape)
    if len(input_shape) == 2 and input_shape[0] == 1:
        return "feature vectors (N, F)", tuple(input_shape[1:])
    return "sequences (N, L, F)", tuple(input_shape)


def shape_mismatch(where: str, key: str, stored: tuple[int, ...], input_shape: tuple[int, ...], kind: str) -> str:
    """Why an array of shape ``stored`` cannot be the model's samples; one sample stored without
    its batch axis is named as such."""
    what, one = sample_shape(input_shape, kind)
    expected = "(N, " + ", ".join(map(str, one)) + ")"
    msg = f"{where}: {key} has shape {stored} but the model takes {what} of shape {expected}."
    if stored == one:
        batch_of_one = "(1, " + ", ".join(map(str, one)) + ")"
        return (f"{msg} That is one sample without the batch axis: store {key}[None] (a batch of one, shape "
                f"{batch_of_one}).")
    return f"{msg} Give arrays shaped like the training data of this checkpoint."


def model_inputs(x: np.ndarray, where: str, pre: Preprocess) -> Tensor:
    """``x`` as the raw inputs the model was trained on.

    A model trained on 8-bit pixels (``pre.pixels``) takes uint8 arrays, other integers within
    0..255 (as uint8) and floats in [0, 1] (pixels already scaled); anything else is an error
    naming the range found. An image model trained on other values (``pre.pixels`` False)
    refuses uint8 images, as eval does: they are most likely 0..255 pixels for a model that saw
    another scale, and would give confident nonsense. Other arrays (sequences included) reach
    the model as float32, used as they are. Checkpoints without the record keep litlab's old
    rule (uint8 images scaled, everything else as it is).
    """
    if pre.kind == "image" and pre.pixels is False and x.dtype == np.uint8:
        raise LitlabError(f"{where} holds uint8 images, read as 8-bit pixels, but this checkpoint was trained on "
                          f"images of another dtype, whose values reach it as they are; pixels 0..255 would be "
                          f"on another scale. Give arrays of the training data's dtype, on the scale of the "
                          f"training arrays.")
    if pre.kind == "image" and pre.pixels:
        if np.issubdtype(x.dtype, np.integer):
            lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
            if lo < 0 or hi > 255:
                raise LitlabError(f"{where} holds integers from {lo} to {hi}, but this checkpoint was trained on "
                                  f"8-bit pixels (0..255). Give pixels as uint8, or as floats scaled to [0, 1].")
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8))
        finite = x[np.isfinite(x)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise LitlabError(f"{where} holds floats from {float(finite.min()):g} to {float(finite.max()):g}, but "
                              f"this checkpoint was trained on 8-bit pixels, which reach it scaled to [0, 1]. Give "
                              f"them as uint8 (0..255), or as floats in [0, 1] (divide 0..255 values by 255).")
    elif x.dtype == np.uint8 and pre.kind == "image" and pre.pixels is None:
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def array_batches(path: Path, key: str, x: Tensor, batch_size: int) -> Iterator[Batch]:
    """Batches of an array's samples, named ``FILE[KEY][i]``; samples holding NaN or infinite
    values become errors (a model's output for them means nothing)."""
    finite = finite_samples(x) if x.is_floating_point() else None
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        names = [f"{path}[{key}][{start + i}]" for i in range(len(chunk))]
        ok = finite[start:start + batch_size] if finite is not None else None
        if ok is None or bool(ok.all()):
            yield names, chunk, [], names
            continue
        keep = ok.tolist()
        errors = [(n, "holds NaN or infinite values") for n, good in zip(names, keep) if not good]
        kept = [n for n, good in zip(names, keep) if good]
        yield kept, chunk[ok] if kept else None, errors, names
