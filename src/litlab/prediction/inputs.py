"""What ``input=`` can be: one image file, a folder of images (recursively) or an ``.npz`` of arrays.

Each reader yields batches of ``(names, samples, errors)``: ``samples`` stacks the readable
inputs as raw tensors (``(N, *input_shape)``), ``errors`` pairs the other names with why.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from litlab.data.image_files import decode, visible_files
from litlab.errors import LitlabError

Batch = tuple[list[str], Tensor | None, list[tuple[str, str]]]
NPZ_KEYS = ("x", "x_test")


def list_files(path: Path) -> list[Path]:
    """``path`` itself, or every file below the folder ``path`` (hidden ones skipped), sorted."""
    return [path] if path.is_file() else visible_files(path)


def image_batches(files: list[Path], input_shape: tuple[int, ...], channels: int | None,
                  batch_size: int) -> Iterator[Batch]:
    """Decodes files as in training: ``channels`` (1 or 3) and resized to the model's ``(H, W)``.

    Files that are not images or fail to decode become errors; they do not stop the rest.
    """
    c, h, w = input_shape
    channels = channels or c
    for start in range(0, len(files), batch_size):
        names, tensors, errors = [], [], []
        for f in files[start:start + batch_size]:
            try:
                tensors.append(decode(f, channels, (h, w)))
                names.append(str(f))
            except Exception as e:  # PIL raises many types for files it cannot read
                first_line = str(e).splitlines()[0][:200] if str(e) else ""
                errors.append((str(f), f"not a readable image: {type(e).__name__}: {first_line}"))
        yield names, torch.stack(tensors) if tensors else None, errors


def read_npz(path: Path, input_shape: tuple[int, ...], kind: str) -> tuple[str, Tensor]:
    """The array under key ``x`` (or ``x_test``) of ``path``, checked against the model's input.

    Returns the key and the samples ``(N, *input_shape)`` (uint8 images stay uint8, so they are
    scaled to [0, 1] as in training; everything else becomes float32).
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            key = next((k for k in NPZ_KEYS if k in f.files), None)
            if key is None:
                raise LitlabError(f"input={path} has no array named {' or '.join(NPZ_KEYS)}; it has "
                                  f"{', '.join(sorted(f.files)) or 'none'}. Store the samples to classify under x.")
            x = f[key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise LitlabError(f"input={path} is not a readable .npz file ({str(e).splitlines()[0][:200]}).") from None
    expected = "(N, " + ", ".join(map(str, input_shape)) + ")"
    if kind == "sequence" and input_shape[-1] == 1 and x.ndim == 2:
        x = x[:, :, None]  # (N, L) -> (N, L, 1), as training reads such arrays
    if tuple(x.shape[1:]) != tuple(input_shape):
        what = "images (N, C, H, W)" if kind == "image" else "sequences (N, L, F)"
        raise LitlabError(f"input={path}: {key} has shape {tuple(x.shape)} but the model takes {what} of shape "
                          f"{expected}. Give arrays shaped like the training data of this checkpoint.")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise LitlabError(f"input={path}: {key} has dtype {x.dtype}; expected real numbers.")
    if x.dtype == np.uint8 and kind == "image":
        return key, torch.from_numpy(np.ascontiguousarray(x))
    return key, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def array_batches(path: Path, key: str, x: Tensor, batch_size: int) -> Iterator[Batch]:
    """Batches of an array's samples, named ``FILE[KEY][i]``."""
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        yield [f"{path}[{key}][{start + i}]" for i in range(len(chunk))], chunk, []
