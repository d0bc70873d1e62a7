"""Arrays in one .npz file: x_train, y_train, x_test, y_test, optionally x_val, y_val."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from litlab.data.base import ClassificationData, Splits, check_labels, stats_or_given
from litlab.data.datasets import TensorSplit, split_off
from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError, check_fraction

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def _as_inputs(x: np.ndarray, key: str, path: Path) -> tuple[torch.Tensor, str]:
    """``(N, L)`` -> sequence ``(N, L, 1)``; ``(N, L, F)`` sequence; ``(N, C, H, W)`` image."""
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim not in (3, 4):
        raise LitlabError(
            f"data.path={path}: {key} has shape {x.shape}; expected (N, L) or (N, L, F) for sequences "
            f"or (N, C, H, W) for images."
        )
    kind = "image" if x.ndim == 4 else "sequence"
    if x.dtype == np.uint8 and kind == "image":
        return torch.from_numpy(np.ascontiguousarray(x)), kind
    if not np.issubdtype(x.dtype, np.number):
        raise LitlabError(f"data.path={path}: {key} has dtype {x.dtype}; expected numbers.")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), kind


def _as_labels(y: np.ndarray, key: str, path: Path, n: int) -> torch.Tensor:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise LitlabError(f"data.path={path}: {key} must be a 1-D array of integer class indices, "
                          f"got shape {y.shape} and dtype {y.dtype}.")
    if len(y) != n:
        raise LitlabError(f"data.path={path}: {key} has {len(y)} labels but x_{key[2:]} has {n} samples.")
    return torch.from_numpy(y.astype(np.int64))


class NpzDataModule(ClassificationData):
    """Arrays from an ``.npz`` file (``data.path``).

    Args:
        path: the ``.npz`` file.
        val_fraction: share of the training arrays held out when there is no ``x_val``.
        split_seed: seed of that split.
        mean, std: normalization; None computes it on the training split.
    """

    def __init__(self, path: str | None = None, batch_size: int = 64, val_fraction: float = 0.1,
                 split_seed: int = 0, mean=None, std=None, num_workers: int | None = None,
                 augment: dict | None = None):
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        if path is None or path == "":
            raise LitlabError("data.path is not set. Pass data.path=FILE.npz with arrays x_train, y_train, "
                              "x_test, y_test (and optionally x_val, y_val).")
        self.path = Path(path)
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.split_seed = split_seed
        self.mean, self.std = mean, std

    def _read(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            raise LitlabError(f"data.path={self.path} does not exist or is not a file.")
        try:
            with np.load(self.path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise LitlabError(f"data.path={self.path} is not a readable .npz file ({e}).") from None
        missing = [k for k in REQUIRED if k not in arrays]
        if ("x_val" in arrays) != ("y_val" in arrays):
            missing.append("y_val" if "x_val" in arrays else "x_val")
        if missing:
            raise LitlabError(
                f"data.path={self.path} lacks the array(s) {', '.join(missing)}; it has "
                f"{', '.join(sorted(arrays)) or 'none'}. Needed: x_train, y_train, x_test, y_test "
                f"(x_val and y_val optional, together)."
            )
        return arrays

    def load(self) -> Splits:
        arrays = self._read()
        splits, kinds, shapes = {}, set(), set()
        for s in ("train", "val", "test"):
            if f"x_{s}" not in arrays:
                continue
            x, kind = _as_inputs(arrays[f"x_{s}"], f"x_{s}", self.path)
            y = _as_labels(arrays[f"y_{s}"], f"y_{s}", self.path, len(x))
            splits[s] = TensorSplit(x, y)
            kinds.add(kind)
            shapes.add(tuple(x.shape[1:]))
        if len(shapes) > 1:
            raise LitlabError(f"data.path={self.path}: the splits' samples differ in shape: {sorted(shapes)}.")
        kind = kinds.pop()
        num_classes = int(max(int(s.y.max()) for s in splits.values() if len(s)) + 1)
        for s, ds in splits.items():
            check_labels(ds.y, num_classes, f"data.path={self.path} y_{s}")
        if "val" not in splits:
            keep, out = split_off(len(splits["train"]), self.val_fraction, self.split_seed)
            tr = splits["train"]
            if len(out) == 0:
                raise LitlabError(f"data.path={self.path} has no x_val and data.val_fraction={self.val_fraction} "
                                  f"holds out nothing; raise data.val_fraction or add x_val/y_val.")
            splits["train"], splits["val"] = TensorSplit(tr.x[keep], tr.y[keep]), TensorSplit(tr.x[out], tr.y[out])
        mean, std = stats_or_given(splits["train"].x, kind, self.mean, self.std, "data")
        names = [str(i) for i in range(num_classes)]
        shape = tuple(splits["train"].x.shape[1:])
        return Splits(splits["train"], splits["val"], splits["test"], names, shape, Preprocess(kind, mean, std))
