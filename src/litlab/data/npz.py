"""Arrays in one .npz file: x_train, y_train, x_test, y_test, optionally x_val, y_val."""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from litlab.data.base import ClassificationData, Splits, check_labels, given_stats, stats_or_given
from litlab.data.datasets import TensorSplit, fold_of_pool, joined, note_val_fraction_unused, split_off
from litlab.data.fold_settings import check_folds
from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError, check_fraction
from litlab.listing import first_of

log = logging.getLogger(__name__)

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
READ = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _as_inputs(x: np.ndarray, key: str, path: Path) -> tuple[torch.Tensor, str]:
    """``(N, F)`` features -> ``(N, 1, F)``, a sequence of one step whose every feature is
    normalized on its own; ``(N, L, F)`` sequence; ``(N, C, H, W)`` image."""
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim not in (3, 4):
        raise LitlabError(
            f"data.path={path}: {key} has shape {x.shape}; expected (N, F) for feature vectors, (N, L, F) for "
            f"sequences or (N, C, H, W) for images."
        )
    kind = "image" if x.ndim == 4 else "sequence"
    if kind == "image" and x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:
        n, h, w, c = x.shape
        raise LitlabError(
            f"data.path={path}: {key} has shape {x.shape}, images stored channels-last (N, H, W, C) by the look of "
            f"it; litlab reads (N, C, H, W) and would take {h} channels of {w}x{c} pixels. Store "
            f"{key}.transpose(0, 3, 1, 2), shaped ({n}, {c}, {h}, {w})."
        )
    if not np.issubdtype(x.dtype, np.number):
        raise LitlabError(f"data.path={path}: {key} has dtype {x.dtype}; expected numbers.")
    if np.issubdtype(x.dtype, np.complexfloating):  # the float32 cast would keep the real part only
        raise LitlabError(
            f"data.path={path}: {key} has dtype {x.dtype}; expected real numbers. Store the features you mean as "
            f"real arrays: {key}.real and {key}.imag as separate features, or numpy.abs({key})."
        )
    _check_values(x, key, path)
    if x.dtype == np.uint8 and kind == "image":
        return torch.from_numpy(np.ascontiguousarray(x)), kind
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), kind


def _as_labels(y: np.ndarray, key: str, path: Path, n: int) -> torch.Tensor:
    if y.ndim == 1 and y.dtype.kind in "USf":  # class names, or class indices stored as floats
        _refuse_label_dtype(y, key, path)
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
        split_seed: seed of that split, and of the folds.
        mean, std: normalization; None computes it on the training split.
        folds: cut the training and validation arrays together into this many stratified folds
            (cross-validation); None holds out a validation split as above.
        fold: the fold (``0..folds-1``) that validates, the others train.
    """

    def __init__(self, path: str | None = None, batch_size: int = 64, val_fraction: float = 0.1,
                 split_seed: int = 0, mean=None, std=None, num_workers: int | None = None,
                 augment: dict | None = None, folds: int | None = None, fold: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        self.folds, self.fold = check_folds(folds, fold)
        if path is None or path == "":
            raise LitlabError("data.path is not set. Pass data.path=FILE.npz with arrays x_train, y_train, "
                              "x_test, y_test (and optionally x_val, y_val).")
        self.path = Path(path)
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.split_seed = split_seed
        # checked before the file is read (the count per feature or channel once it is)
        given_stats("data.mean", mean, None, "channel or feature")
        given_stats("data.std", std, None, "channel or feature", positive=True)
        self.mean, self.std = mean, std

    def _read(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            raise LitlabError(f"data.path={self.path} does not exist or is not a file.")
        arrays = read_arrays(self.path, "data.path")
        required = REQUIRED if not self._evaluation_only(arrays) else ("x_test", "y_test")
        missing = [k for k in required if k not in arrays]
        if ("x_val" in arrays) != ("y_val" in arrays):
            missing.append("y_val" if "x_val" in arrays else "x_val")
        if missing:
            raise LitlabError(
                f"data.path={self.path} lacks the array(s) {', '.join(missing)}; it has "
                f"{', '.join(sorted(arrays)) or 'none'}. Needed: x_train, y_train, x_test, y_test "
                f"(x_val and y_val optional, together)."
            )
        self._warn_unused(arrays)
        return arrays

    def _warn_unused(self, arrays: Mapping) -> None:
        """Arrays under other names are never read: a validation split saved as x_valid would
        otherwise be ignored in silence while training holds out part of x_train instead."""
        unused = sorted(k for k in arrays if k not in READ)
        if not unused:
            return
        held_out = "" if "x_val" in arrays or self.folds or self._evaluation_only(arrays) else (
            f"; without x_val and y_val, data.val_fraction={self.val_fraction} of the training arrays is held out "
            f"for validation")
        log.warning("data.path=%s: the array(s) %s are not used; litlab reads x_train, y_train, x_test, y_test and "
                    "optionally x_val, y_val%s. Rename any that hold one of these splits.",
                    self.path, ", ".join(unused), held_out)

    def _evaluation_only(self, arrays: dict) -> bool:
        """Arrays without a training split, read for a checkpoint's evaluation."""
        return self.evaluating() and not ("x_train" in arrays or "y_train" in arrays)

    def _load_evaluation(self, arrays: dict) -> Splits:
        """The val and test arrays only, in the checkpoint's classes and normalization (eval)."""
        names = [str(c) for c in self.trained["class_names"]]
        splits, dtypes = {}, {}
        for s in ("val", "test"):
            # new data, even for a cross-validated run: its folds were cut from the run's own file (with
            # x_train, which ``load`` cuts again), so this x_val holds none of its training samples
            if f"x_{s}" not in arrays:
                continue
            x, kind = _as_inputs(arrays[f"x_{s}"], f"x_{s}", self.path)
            y = _as_labels(arrays[f"y_{s}"], f"y_{s}", self.path, len(x))
            check_labels(y, len(names), f"data.path={self.path} y_{s} (the checkpoint's {len(names)} classes)")
            splits[s], dtypes[s] = TensorSplit(x, y), arrays[f"x_{s}"].dtype
        test = splits["test"]
        if "val" in splits and splits["val"].x.shape[1:] != test.x.shape[1:]:
            raise LitlabError(f"data.path={self.path}: the splits' samples differ in shape: "
                              f"{sorted({tuple(s.x.shape[1:]) for s in splits.values()})}.")
        own = Preprocess.from_dict(self.trained["preprocess"])
        pre = Preprocess(kind, list(own.mean), list(own.std), pixels=kind == "image" and dtypes["test"] == np.uint8)
        log.info("data.path=%s has no training split: evaluating with the checkpoint's classes and normalization",
                 self.path)
        empty = TensorSplit(test.x[:0], test.y[:0])
        return Splits(empty, splits.get("val", empty), test, names, tuple(test.x.shape[1:]), pre)

    def load(self) -> Splits:
        arrays = self._read()
        if self._evaluation_only(arrays):
            return self._load_evaluation(arrays)
        splits, kinds, shapes, dtypes = {}, set(), set(), {}
        for s in ("train", "val", "test"):
            if f"x_{s}" not in arrays:
                continue
            raw = arrays[f"x_{s}"]
            x, kind = _as_inputs(raw, f"x_{s}", self.path)
            y = _as_labels(arrays[f"y_{s}"], f"y_{s}", self.path, len(x))
            splits[s] = TensorSplit(x, y)
            kinds.add(kind)
            shapes.add(tuple(x.shape[1:]))
            dtypes[f"x_{s}"] = raw.dtype
        if len(shapes) > 1:
            raise LitlabError(f"data.path={self.path}: the splits' samples differ in shape: {sorted(shapes)}.")
        kind = kinds.pop()
        pixels = kind == "image" and dtypes["x_train"] == np.uint8
        if kind == "image" and len({d == np.uint8 for d in dtypes.values()}) > 1:
            listing = ", ".join(f"{k} is {d}" for k, d in dtypes.items())
            raise LitlabError(
                f"data.path={self.path}: {listing}. uint8 images are 8-bit pixels, scaled to [0, 1]; "
                f"other dtypes are used as they are, so the splits would reach the model on different "
                f"scales. Store every x_ array with one dtype."
            )
        if self.folds:
            splits["train"], splits["val"] = self._fold(splits["train"], splits.get("val"))
        elif "val" not in splits:
            splits["train"], splits["val"] = self._hold_out(splits["train"])
        # checked on the training split as trained on, after any hold-out
        num_classes = int(max(int(s.y.max()) for s in splits.values()) + 1)
        trained = sorted({int(v) for v in splits["train"].y.unique()})
        if len(trained) < 2:
            raise LitlabError(f"data.path={self.path}: every label of y_train is {trained[0]}, one class; a classifier "
                              f"needs training samples of at least two.")
        for s, ds in splits.items():
            check_labels(ds.y, num_classes, f"data.path={self.path} y_{s}")
        _warn_unseen_classes(splits["train"].y, num_classes, self.path)
        mean, std = stats_or_given(splits["train"].x, kind, self.mean, self.std, "data")
        names = [str(i) for i in range(num_classes)]
        shape = tuple(splits["train"].x.shape[1:])
        pre = Preprocess(kind, mean, std, pixels=pixels)
        return Splits(splits["train"], splits["val"], splits["test"], names, shape, pre)

    def _fold(self, train: TensorSplit, val: TensorSplit | None) -> tuple[TensorSplit, TensorSplit]:
        """(train, val) of fold ``data.fold``, cut from x_train and x_val together (``fold_of_pool``)."""
        if val is None:
            note_val_fraction_unused(self.val_fraction)
        pool = train if val is None else joined(train, val)  # the file's order: x_train's rows, then x_val's
        where = f"data.path={self.path} ({'x_train and x_val' if val is not None else 'x_train'})"
        keep, out = fold_of_pool(pool.y, self.folds, self.fold, self.split_seed, where)
        return TensorSplit(pool.x[keep], pool.y[keep]), TensorSplit(pool.x[out], pool.y[out])

    def _hold_out(self, train: TensorSplit) -> tuple[TensorSplit, TensorSplit]:
        """(train, val) from the training arrays when the file has no x_val; every class of
        y_train keeps a training sample (see ``split_off``)."""
        keep, out = split_off(train.y, self.val_fraction, self.split_seed)
        if len(out) == 0:
            raise LitlabError(f"data.path={self.path} has no x_val and data.val_fraction={self.val_fraction} "
                              f"holds out nothing; raise data.val_fraction or add x_val/y_val.")
        return TensorSplit(train.x[keep], train.y[keep]), TensorSplit(train.x[out], train.y[out])


NPZ_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive, as numpy.load tells them


def read_arrays(path: Path, key: str) -> Mapping[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``path`` (named by the config ``key``) by name, or a clear error.

    Each array is read when first asked for (see ``NpzArrays``). Files that do not start like a
    zip archive are refused before numpy.load, which would try them as pickles and suggest
    loading them unsafely."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(np.lib.format.MAGIC_PREFIX))
        if head.startswith(NPZ_PREFIXES):
            with np.load(path, allow_pickle=False) as f:
                return NpzArrays(path, key, list(f.files))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise LitlabError(f"{key}={path} is not a readable .npz file ({_first_line(e)}).") from None
    if head == np.lib.format.MAGIC_PREFIX:
        raise LitlabError(
            f"{key}={path} holds one bare array (a .npy file), not an .npz archive of named arrays. "
            f"Save the arrays with numpy.savez(FILE, x_train=..., y_train=..., ...) instead."
        )
    raise LitlabError(
        f"{key}={path} is not a readable .npz file: it is not an .npz archive (the zip format that numpy.savez "
        f"and numpy.savez_compressed write). Save the arrays with numpy.savez(FILE, name=array, ...)."
    )


class NpzArrays(Mapping):
    """The arrays of an ``.npz`` file by name, each read on first access and kept: arrays litlab
    does not use (feature names stored as objects, say) are never read, so they cannot make the
    file unreadable."""

    def __init__(self, path: Path, key: str, names: list[str]):
        self.path, self.key, self.names = path, key, names
        self._read: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        if name not in self._read:
            self._read[name] = _read_member(self.path, self.key, name)
        return self._read[name]

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the array
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _read_member(path: Path, key: str, name: str) -> np.ndarray:
    """One array of the archive; object arrays are refused, since unpickling can run any code."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return f[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, ValueError) and "Object arrays cannot be loaded" in str(e):
            raise LitlabError(
                f"{key}={path}: {name} is an object (pickled) array, such as labels saved from a pandas column of "
                f"strings; litlab will not unpickle it, since unpickling can run any code. {_labels_fix(name)}"
            ) from None
        raise LitlabError(f"{key}={path}: the array {name} is not readable ({_first_line(e)}).") from None


def _labels_fix(name: str, whole_numbers: bool = False) -> str:
    """The one sentence of every refusal of labels ``name`` that are not integers, on how to save
    them as class indices: ``whole_numbers`` (floats that are) need only the cast; class names
    (strings, objects) a mapping to integers first."""
    if whole_numbers:
        return f"Save it as integers: {name}.astype(numpy.int64)."
    # one list of classes from every split: searchsorted on a list lacking a name gives it a wrong index, silently
    return (f"Save it as a numeric array, e.g. numpy.asarray({name}, dtype=numpy.int64), or map class names to "
            f"integers first, with one list of classes that every split shares and that holds every name: "
            f"classes = numpy.unique(numpy.concatenate([y_train, y_val, y_test])) (y_val where the file has one), "
            f"then each split saved as numpy.searchsorted(classes, {name}).astype(numpy.int64), {name} and the "
            f"others alike.")


def _refuse_label_dtype(y: np.ndarray, key: str, path: Path) -> None:
    """Labels saved as class names (``<U5``: 'cat') or as whole-number floats (``float64``: 3.0):
    the refusal names what they hold and the fix. Fractional floats fall through to the plain
    "integer class indices" refusal."""
    if y.dtype.kind in "US":
        example = f", such as {y[0].item()!r}" if len(y) else ""
        raise LitlabError(f"data.path={path}: {key} holds strings (dtype {y.dtype}{example}), and labels must be "
                          f"integer class indices counted from 0. {_labels_fix(key)}")
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        raise LitlabError(f"data.path={path}: {key} holds whole numbers of dtype {y.dtype}, and labels must be of an "
                          f"integer dtype (class indices counted from 0). {_labels_fix(key, whole_numbers=True)}")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _check_values(x: np.ndarray, key: str, path: Path) -> None:
    """No empty split, no NaN or infinite input and no value beyond float32, which the model
    computes in: any of these would give numbers that mean nothing. Checked before the float32
    cast, which would turn too large values into infinities."""
    if len(x) == 0:
        raise LitlabError(f"data.path={path}: {key} holds no samples. Every split in the file needs at least one.")
    if not np.issubdtype(x.dtype, np.floating):
        return
    flat = x.reshape(len(x), -1)
    bad = len(x) - int(np.isfinite(flat).all(axis=1).sum())
    if bad:
        raise LitlabError(
            f"data.path={path}: {bad} of the {len(x)} samples of {key} hold NaN or infinite values. "
            f"Remove or fill them before training (numpy.nan_to_num, or drop those rows)."
        )
    if x.dtype.itemsize > 4:
        magnitude = np.abs(flat)
        big = int((magnitude > FLOAT32_MAX).any(axis=1).sum())
        if big:
            raise LitlabError(
                f"data.path={path}: {big} of the {len(x)} samples of {key} hold values beyond float32's range "
                f"(about 3.4e38; the largest magnitude is {float(magnitude.max()):.3g}), and litlab trains in "
                f"float32. Rescale {key} (divide it by a constant) before saving it."
            )


def finite_samples(x: torch.Tensor) -> torch.Tensor:
    """Per sample of a float batch ``(N, ...)``: whether all its values are finite (no NaN, no inf)."""
    if len(x) == 0:
        return torch.ones(0, dtype=torch.bool)
    return torch.isfinite(x.reshape(len(x), -1)).all(dim=1)


def _warn_unseen_classes(y: torch.Tensor, num_classes: int, path: Path) -> None:
    """Labels are class indices: a gap (labels 3, 7, 42) gives classes without a training sample,
    named in a warning; labels that are IDs (a few values up to thousands or more) are an error."""
    seen = y.unique().tolist()
    if num_classes > 1000 and len(seen) * 10 < num_classes:  # an output layer this wide is a mistake
        raise LitlabError(
            f"data.path={path}: the labels reach {num_classes - 1} but only {len(seen)} distinct values occur in "
            f"y_train; they look like IDs, not class indices, and would give the model {num_classes} outputs. "
            f"Renumber them 0..{len(seen) - 1} (numpy.unique(y, return_inverse=True))."
        )
    unseen = sorted(set(range(num_classes)) - set(seen))
    if unseen:
        shown = first_of(unseen, 20)
        log.warning("data.path=%s: %d of the %d classes have no training sample (labels %s). Labels are class "
                    "indices 0..%d; renumber them 0, 1, 2, ... if these classes do not exist.",
                    path, len(unseen), num_classes, shown, num_classes - 1)
