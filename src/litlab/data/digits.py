"""scikit-learn's handwritten digits, written once as a PNG image folder and read as one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
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


def write_digits_tree(root: Path, val_fraction: float, test_fraction: float, seed: int = DIGITS_SPLIT_SEED) -> None:
    """Writes ``root/{train,val,test}/<digit>/<index>.png`` unless the same split is already there.

    The tree is built in a temporary sibling folder and renamed into place, so concurrent
    processes (DDP ranks, parallel sweeps) never see a half-written dataset.
    """
    spec = {"source": "sklearn.datasets.load_digits", "val_fraction": val_fraction,
            "test_fraction": test_fraction, "seed": seed}
    marker = root / "split.json"
    written = _written_split(marker)
    if written == spec:
        return
    if written is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LitlabError(
            f"data.root={root} already holds files that litlab's digits set did not write (there is no "
            f"split.json of it there), and writing the digits would replace them. litlab never deletes "
            f"them: point data.root at a new or empty folder (by default the digits go to "
            f"${{paths.data_dir}}/digits), or use data=imagefolder data.root={root} to train on your images."
        )
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 intensities -> 0..255 grayscale
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    n_val = int(round(len(images) * val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    tmp = _new_tree_folder(root)
    try:
        for split, idx in parts.items():
            for i in idx:
                d = tmp / split / str(digits.target[i])
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i], mode="L").save(d / f"{i:04d}.png")
        (tmp / "split.json").write_text(json.dumps(spec))
    except BaseException:  # Ctrl-C or a full disk halfway: no half-written tree is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        # a digits tree of another split (or an empty folder): move it aside first, then swap
        old = Path(tempfile.mkdtemp(prefix=".digits-old-", dir=root.parent))
        os.replace(root, old / "tree")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:
        # another process won the race with an identical tree
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Wrote the digits dataset as PNG files to %s", root)


def _new_tree_folder(root: Path) -> Path:
    """A temporary folder beside ``root`` for the tree to be written into. A data folder that is
    read-only, under a file or a symbolic link to nowhere failed here in a traceback (EROFS,
    NotADirectoryError, FileExistsError); the checks before the run catch most, not eval's."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".digits-", dir=root.parent))
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise LitlabError(
            f"data.root={root}: the digits cannot be written there: {e.strerror or e}{where}. They go to "
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
        **kwargs: as for ``ImageFolderDataModule`` (``root`` is where the PNG tree goes).
    """

    def __init__(self, root: str, val_fraction: float = 0.15, test_fraction: float = 0.2,
                 split_seed: int = DIGITS_SPLIT_SEED, **kwargs):
        super().__init__(root=root, val_fraction=val_fraction, split_seed=split_seed, **kwargs)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise LitlabError(f"data.split_seed must be an integer >= 0, got {split_seed!r}.")
        self.test_fraction = check_fraction("data.test_fraction", test_fraction, allow_zero=False)
        check_fraction("data.val_fraction", val_fraction, allow_zero=False)
        if self.val_fraction + self.test_fraction > 0.9:
            raise LitlabError(
                "data.val_fraction + data.test_fraction must leave at least 10% of the digits for "
                f"training, got {self.val_fraction} + {self.test_fraction}."
            )

    def _new_images(self) -> bool:
        """``litlab.eval data.root=new_images/`` on a digits checkpoint: a folder of the user's
        images, read as an image folder in the checkpoint's classes, not a digits tree to write
        (it was refused as one that writing would overwrite)."""
        return self.evaluating() and self.root.is_dir() and _written_split(self.root / "split.json") is None

    def prepare_data(self) -> None:
        if not self._new_images():
            with _taking_turns(self.root):
                write_digits_tree(self.root, self.val_fraction, self.test_fraction, self.split_seed)

    def load(self):
        if self._new_images():
            return super().load()
        with _taking_turns(self.root):  # written and read (decoded into memory) in one turn
            write_digits_tree(self.root, self.val_fraction, self.test_fraction, self.split_seed)
            return super().load()


@contextlib.contextmanager
def _taking_turns(root: Path):
    """Processes that write and read one digits tree take turns (an exclusive lock on a file beside
    it): the jobs of a parallel sweep over data.split_seed or data.val_fraction each rewrite the
    tree with their split, and one could read another's between its write and its read."""
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

