"""Datasets that the data modules serve: tensors in memory, or image files streamed from disk."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from litlab.errors import LitlabError

log = logging.getLogger(__name__)


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


def joined(a: TensorSplit | FileSplit, b: TensorSplit | FileSplit) -> TensorSplit | FileSplit:
    """The samples of ``a`` then those of ``b``, splits of one kind (both in memory or both streamed):
    a source's training and validation samples as one pool, cut into folds."""
    if isinstance(a, TensorSplit):
        return TensorSplit(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]))
    return FileSplit(a.files + b.files, list(a.labels) + list(b.labels), a.decode)


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


def fold_split(labels: Sequence[int] | Tensor, folds: int, fold: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded stratified k-fold split of the samples with ``labels``: (training, validation) index
    tensors of fold ``fold`` of ``folds`` (``data.folds``/``data.fold``).

    The samples are shuffled with ``seed`` (the same on every process and every run), lined up
    class by class, and dealt to the folds in turn: each class is spread over the folds with
    counts that differ by at most one, and so are the folds' sizes. A class with fewer samples
    than ``folds`` is missing from some folds' validation. The only sample of its class is not
    dealt: validating on it would leave training without its class, so it trains in every fold
    (as ``split_off`` keeps such a sample) and takes no fold's turn from a sample that can validate.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    lined_up = perm[torch.sort(labels[perm], stable=True).indices]  # class by class, shuffled within each
    values, counts = labels.unique(return_counts=True)
    lined_up = lined_up[torch.isin(labels[lined_up], values[counts > 1])]  # the singletons are left out
    dealt = torch.full((n,), -1, dtype=torch.long)  # -1: trains in every fold
    dealt[lined_up] = torch.arange(len(lined_up)) % folds  # the fold of every dealt sample
    return (dealt != fold).nonzero().flatten(), (dealt == fold).nonzero().flatten()


def fold_of_pool(labels: Sequence[int] | Tensor, folds: int, fold: int, seed: int, where: str,
                 class_names: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """``fold_split`` of a data source's pool (its training and validation samples together, at
    ``where``), with the errors and the log lines a run shows: more folds than the samples that can
    validate (those not alone in their class) is refused, the same in every fold, and classes too
    small to reach every fold's validation are named."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    values, counts = (t.tolist() for t in labels.unique(return_counts=True))
    name = (lambda c: str(class_names[c])) if class_names is not None else str
    single = [name(c) for c, k in zip(values, counts) if k == 1]
    few = [name(c) for c, k in zip(values, counts) if 1 < k < folds]
    dealt = len(labels) - len(single)  # the samples that can validate: each fold needs one
    if folds > dealt:
        lone = ("" if not single else ", less 1 alone in its class, which trains in every fold" if len(single) == 1
                else f", less {len(single)} alone in their class, which train in every fold")
        fix = (f"Use data.folds={dealt} or fewer" if dealt >= 2 else
               "Add samples: cross-validation needs at least two samples of a class")
        raise LitlabError(
            f"data.folds={folds} asks for more folds than the {dealt} samples of {where} that can validate (its "
            f"training and validation samples together{lone}), so some folds would validate on nothing. {fix}.")
    keep, out = fold_split(labels, folds, fold, seed)
    if single:
        log.warning("data: class(es) %s have one sample in %s; it is trained on in every fold and never validated",
                    ", ".join(single), where)
    if few:
        log.warning("data: class(es) %s have fewer samples than data.folds=%d; some folds validate without them",
                    ", ".join(few), folds)
    log.info("data: fold %d of %d (%d validation, %d training samples)", fold, folds, len(out), len(keep))
    return keep, out


def note_val_fraction_unused(val_fraction: float) -> None:
    """The log line of a source that would hold out ``data.val_fraction`` of its training samples
    and cuts folds instead (once, as it reads its data): the value, perhaps only the yaml default,
    which composition cannot tell apart from one given, changes nothing."""
    log.info("data.val_fraction is not used with data.folds (each fold holds out 1/k of the samples; "
             "data.val_fraction=%s is ignored)", val_fraction)
