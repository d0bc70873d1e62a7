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
        except (OSError, ValueError) as e:  # a file that changed since the run started, or truncated pixel data
            raise LitlabError(f"data.root: {self.files[i]} could not be read while the run was reading its images "
                              f"({e}). Remove or replace it (data.on_bad_file=skip leaves out the files it can tell "
                              f"are bad when the run starts).") from None


def split_off(labels: Sequence[int] | Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of the samples with ``labels`` into (kept, held-out) index tensors.

    The hold-out is a plain random ``fraction`` of the samples, except that a class whose every
    sample it drew gets the first of them back: otherwise a rare class (one image of 41) could
    vanish from training without a word. When every class keeps a training sample, the split is
    the plain random one, so existing splits do not change.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    n_out = int(round(len(labels) * fraction))
    keep, out = perm[n_out:].sort().values, perm[:n_out].sort().values
    back = _returned_to_training(labels, keep, out)
    if len(back):
        keep = torch.cat([keep, back]).sort().values
        out = out[~torch.isin(out, back)]
    return keep, out


def _returned_to_training(labels: Tensor, keep: Tensor, out: Tensor) -> Tensor:
    """The first held-out index of each class that ``keep`` has no sample of (sorted)."""
    lost = set(labels[out].tolist()) - set(labels[keep].tolist())
    firsts: dict[int, int] = {}
    for i in out.tolist() if lost else []:  # ``out`` is sorted: a class's first index comes first
        firsts.setdefault(int(labels[i]), i)
    return torch.tensor(sorted(firsts[c] for c in lost), dtype=torch.long)
