"""scikit-learn's handwritten digits, written once as a PNG image folder and read as one."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import fcntl
except ImportError:  # not on Windows: the processes then do not take turns
    fcntl = None

from litlab.data.image_folder import ImageFolderDataModule
from litlab.errors import LitlabError, check_fraction

log = logging.getLogger(__name__)

# the split of the 1797 images never depends on the run's seed (data.split_seed, by default this)
DIGITS_SPLIT_SEED = 1234
# the split of conf/data/digits.yaml, whose tree is data.root itself (every other split's lies below it)
DEFAULT_SPLIT = {"val_fraction": 0.15, "test_fraction": 0.2, "seed": DIGITS_SPLIT_SEED}


def digits_tree(root: Path, val_fraction: float, test_fraction: float, seed: int = DIGITS_SPLIT_SEED) -> Path:
    """The folder of a split's ``{train,val,test}/<digit>/`` tree: ``root`` (data.root) for the
    default split, ``root/splits/seed<S>_val<V>_test<T>`` for another. One folder per split, so
    that no run ever rewrites files another run (a sweep over data.split_seed) is reading."""
    if _spec(val_fraction, test_fraction, seed) == _spec(**DEFAULT_SPLIT):
        return root
    return root / "splits" / f"seed{seed}_val{float(val_fraction)!r}_test{float(test_fraction)!r}"


def write_digits_tree(root: Path, val_fraction: float, test_fraction: float, seed: int = DIGITS_SPLIT_SEED) -> Path:
    """Writes the tree of a split (``digits_tree``) unless it is already there; returns its folder.

    ``root`` always holds the default split (written first where another split is asked for): its
    ``split.json`` marks data.root as the digits' (eval tells it from a folder of new images by it).
    A tree is built in a temporary sibling folder and renamed into place, so concurrent processes
    (DDP ranks, parallel sweeps) never see a half-written dataset, and once written it is never
    rewritten: only a tree of another split that an older litlab wrote at ``root`` is replaced.
    """
    written = _written_split(root / "split.json")
    if written is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LitlabError(
            f"data.root={root} already holds files that litlab's digits set did not write (there is no "
            f"split.json of it there), and writing the digits would replace them. litlab never deletes "
            f"them: point data.root at a new or empty folder (by default the digits go to "
            f"${{paths.data_dir}}/digits), or use data=imagefolder data.root={root} to train on your images."
        )
    spec = _spec(val_fraction, test_fraction, seed)
    if written is not None and _is_split_folder(root, written):
        if written == spec:  # data.root=<digits>/splits/<split> (eval): that tree, read as it is
            return root
        raise LitlabError(
            f"data.root={root} is the digits tree of one split ({root.name}), and this run asks for another "
            f"(data.split_seed={seed}, data.val_fraction={val_fraction}, data.test_fraction={test_fraction}). "
            f"Point data.root at the digits folder {root.parent.parent}: each split's tree lies below it."
        )
    tree = digits_tree(root, val_fraction, test_fraction, seed)
    if tree != root:
        _write_split(root, root, _spec(**DEFAULT_SPLIT))
    _write_split(root, tree, spec)
    return tree


def _is_split_folder(root: Path, written: dict) -> bool:
    """Whether ``root`` (with ``split.json`` saying ``written``) is the tree of a split other than
    the default one, in the ``splits/`` folder of a digits folder: a tree never to be rewritten."""
    try:
        split = {k: written[k] for k in ("val_fraction", "test_fraction", "seed")}
        return root.parent.name == "splits" and digits_tree(root.parent.parent, **split) == root
    except (KeyError, TypeError, ValueError):
        return False


def _spec(val_fraction: float, test_fraction: float, seed: int) -> dict:
    """A split as its tree's ``split.json`` records it."""
    return {"source": "sklearn.datasets.load_digits", "val_fraction": float(val_fraction),
            "test_fraction": float(test_fraction), "seed": seed}


def _write_split(root: Path, tree: Path, spec: dict) -> None:
    """Writes the digits into ``tree`` (of data.root ``root``) split as ``spec`` says, unless they are."""
    if _written_split(tree / "split.json") == spec:
        return
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 intensities -> 0..255 grayscale
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    order = np.random.default_rng(spec["seed"]).permutation(len(images))
    n_test = int(round(len(images) * spec["test_fraction"]))
    n_val = int(round(len(images) * spec["val_fraction"]))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    tmp = _new_tree_folder(root, tree.parent)
    try:
        for split, idx in parts.items():
            for i in idx:
                d = tmp / split / str(digits.target[i])
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i], mode="L").save(d / f"{i:04d}.png")
        (tmp / "split.json").write_text(json.dumps(spec))
        _put_in_place(tmp, tree, spec)
    except BaseException:  # Ctrl-C or a full disk halfway: no half-written tree is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("Wrote the digits dataset as PNG files to %s", tree)


def _put_in_place(tmp: Path, tree: Path, spec: dict) -> None:
    """Renames the written ``tmp`` to ``tree``: at once where ``tree`` is absent or empty. Else it
    holds a tree of another split that an older litlab wrote at data.root (each split rewrote it),
    which no run of this one reads: its split folders are swapped one by one and its split.json
    last, leaving ``splits/`` (the trees of the other splits, maybe being read) as it is."""
    try:
        os.replace(tmp, tree)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _written_split(tree / "split.json") == spec:  # another process won the race with this tree
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=".digits-old-", dir=tree.parent))
    for split in ("train", "val", "test"):
        if (tree / split).exists():
            os.replace(tree / split, old / split)
        os.replace(tmp / split, tree / split)
    os.replace(tmp / "split.json", tree / "split.json")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _new_tree_folder(root: Path, where: Path) -> Path:
    """A temporary folder in ``where`` for a tree of data.root ``root`` to be written into. A data
    folder that is read-only, under a file or a symbolic link to nowhere failed here in a traceback
    (EROFS, NotADirectoryError, FileExistsError); the checks before the run catch most, not eval's.

    Made with the umask's mode, as ``mkdir`` makes folders: ``tempfile.mkdtemp``'s 0700 went with
    the rename into place, and a team's shared ``paths.data_dir`` held digits only their first
    user could read."""
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f".digits-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        return tmp
    except OSError as e:
        at = f" ({e.filename})" if e.filename else ""
        raise LitlabError(
            f"data.root={root}: the digits cannot be written there: {e.strerror or e}{at}. They go to "
            f"${{paths.data_dir}}/digits unless data.root says otherwise: give a folder this process can write, "
            f"with paths.data_dir=DIR (or data.root=DIR)."
        ) from None


def _written_split(marker: Path) -> dict | None:
    """The split recorded in a digits tree's ``split.json``, or None where ``marker`` is not one."""
    try:
        spec = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return spec if isinstance(spec, dict) and spec.get("source") == "sklearn.datasets.load_digits" else None


class DigitsDataModule(ImageFolderDataModule):
    """The default dataset: real data that ships with scikit-learn, no download.

    Args:
        val_fraction: share of the 1797 images used for validation.
        test_fraction: share used for testing.
        split_seed: seed of the split into train, val and test (not the run's seed).
        **kwargs: as for ``ImageFolderDataModule`` (``root`` is where the PNG trees go: the default
            split's there, another's in ``root/splits/<split>``, see ``digits_tree``). With
            ``folds``, the split's train and val images are cut into folds (``split_seed`` seeds
            them too); the test images stay apart.
    """

    def __init__(self, root: str, val_fraction: float = 0.15, test_fraction: float = 0.2,
                 split_seed: int = DIGITS_SPLIT_SEED, **kwargs):
        super().__init__(root=root, val_fraction=val_fraction, split_seed=split_seed, **kwargs)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise LitlabError(f"data.split_seed must be an integer >= 0, got {split_seed!r}.")
        self.test_fraction = check_fraction("data.test_fraction", test_fraction, allow_zero=False)
        check_fraction("data.val_fraction", val_fraction, allow_zero=False)
        if self.folds:  # the folds cut train/ and val/ together: only data.test_fraction sets the pool
            if self.test_fraction > 0.9:
                raise LitlabError(f"data.test_fraction must leave at least 10% of the digits for the folds to cut, "
                                  f"got {self.test_fraction}.")
        elif self.val_fraction + self.test_fraction > 0.9:
            raise LitlabError(
                "data.val_fraction + data.test_fraction must leave at least 10% of the digits for "
                f"training, got {self.val_fraction} + {self.test_fraction}."
            )

    def _tree_val_fraction(self) -> float:
        """The val/ share of the tree this run reads: data.val_fraction; with data.folds, whose pool is
        train/ and val/ together whatever their split, the default split's (one tree for every
        val_fraction, the default tree with the default test_fraction)."""
        if not self.folds:
            return self.val_fraction
        return min(DEFAULT_SPLIT["val_fraction"], round((1 - self.test_fraction) / 2, 6))

    def _holds_out(self, has_val: bool) -> bool:
        """The digits' val/ is always ``data.val_fraction`` of the split's images."""
        return True

    def _new_images(self) -> bool:
        """``litlab.eval data.root=new_images/`` on a digits checkpoint: a folder of the user's
        images, read as an image folder in the checkpoint's classes, not a digits tree to write
        (it was refused as one that writing would overwrite)."""
        return self.evaluating() and self.root.is_dir() and _written_split(self.root / "split.json") is None

    def prepare_data(self) -> None:
        if not self._new_images():
            self._write()

    def _write(self) -> Path:
        """The folder of this run's split, written first where it is not there yet."""
        with _taking_turns(self.root):
            return write_digits_tree(self.root, self._tree_val_fraction(), self.test_fraction, self.split_seed)

    def load(self):
        if self._new_images():
            return super().load()
        # read outside the turn, as the loader workers of a streamed run read later: a written
        # tree is never rewritten (each split has a folder of its own)
        given, self.root = self.root, self._write()
        try:
            return super().load()
        finally:
            self.root = given


@contextlib.contextmanager
def _taking_turns(root: Path):
    """Processes that write digits trees under ``root`` take turns (an exclusive lock on a file
    beside it): the jobs of a parallel sweep over data.split_seed or data.val_fraction that start
    at once would each write the same trees (the default split's, a new split's) or swap an older
    litlab's tree at ``root`` together. Reading takes no turn: a written tree never changes."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        lock = open(root.parent / f".{root.name}.lock", "a")
    except OSError:  # a read-only data folder: nobody can rewrite the tree there either
        yield
        return
    with lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield

