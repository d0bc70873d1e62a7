"""Datasets that the data modules serve: tensors in memory, or image files streamed from disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from litlab.errors import LitlabError


class TensorSplit(Dataset):
    """A split held in memory as ``x`` (uint8 or float) and ``y`` (int64).

    ``__getitems__`` lets ``DataLoader`` fetch a whole batch with one indexing op instead of
    one ``__getitem__`` per sample followed by a stack, which dominates the step time of
    small models.
    """

    def __init__(self, x: Tensor, y: Tensor):
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(i, Tensor):  # a batch of indices (``ShuffledBatches``)
            return self.x.index_select(0, i), self.y.index_select(0, i)
        return self.x[i], self.y[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        return self[torch.as_tensor(indices, dtype=torch.long)]


def collate_batch(batch):
    """The collate function for ``TensorSplit``: batches arrive already stacked."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


class FileSplit(Dataset):
    """A split of image files decoded on access (in loader worker processes)."""

    def __init__(self, files: list[Path], labels: list[int], decode: Callable[[Path], Tensor]):
        self.files = files
        self.labels = labels
        self.decode = decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        try:
            return self.decode(self.files[i]), self.labels[i]
        except FileNotFoundError:
            raise LitlabError(f"data.root: {self.files[i]} was listed when the run started but is gone now. "
                              f"Did the data folder move or disappear during training? Restore it and resume "
                              f"with ckpt_path=last.") from None
        except OSError as e:
            raise LitlabError(f"data.root: {self.files[i]} could not be read during training ({e}).") from None


def split_off(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of ``range(n)`` into (kept, held-out) index tensors."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_out = int(round(n * fraction))
    return perm[n_out:].sort().values, perm[:n_out].sort().values
