"""The training order: a function of the run's seed and the epoch only.

Each epoch's order is ``torch.randperm(n)`` drawn from a generator seeded with ``seed + epoch``,
the rule of torch's ``DistributedSampler`` (which Lightning puts in place under DDP, with the same
seed). Lightning tells the sampler the epoch (``set_epoch``) before each training epoch.

Drawing the order from torch's global generator instead (``DataLoader(shuffle=True)``) makes it
depend on everything else that drew from that generator before the epoch's first batch; a run
resumed from a checkpoint creates its loader at another moment than an uninterrupted one and so
trained its first epoch in another order. The loaders also take a generator of their own, so that
creating an iterator (which draws a seed for the loader's workers) leaves the global generator
alone: the dropout and augmentation draws of an epoch then follow only from ``EpochSeed``'s
reseeding at the epoch's start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import RandomSampler, Sampler


def run_seed() -> int:
    """The run's seed as Lightning's distributed sampler reads it (``PL_GLOBAL_SEED``, which
    ``litlab.seeding.seed_everything`` sets; 0 where nothing was seeded)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of epoch ``epoch``: the one ``DistributedSampler(shuffle=True, seed=seed)`` gives a
    single process."""
    return torch.randperm(n, generator=loader_generator(seed + epoch))


def loader_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: for ``DataLoader(generator=...)`` (its iterators draw
    their worker seed from it) and for each epoch's permutation."""
    return torch.Generator().manual_seed(seed)


class EpochShuffle(RandomSampler):
    """``RandomSampler`` whose order is :func:`epoch_permutation` (a ``RandomSampler``, so Lightning
    still recognizes a shuffled loader and swaps in its distributed sampler under DDP)."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        yield from epoch_permutation(len(self.data_source), self.seed, self.epoch).tolist()


class ShuffledBatches(Sampler[Tensor]):
    """Yields the batches of :func:`epoch_permutation` as int64 index tensors of up to
    ``batch_size`` indices (the last one shorter): ``EpochShuffle`` cut the way ``BatchSampler``
    cuts it, without the batch sampler's list of Python ints and its conversion back to a tensor
    (~14 µs of ~17 µs per batch for data held in memory). Used with ``DataLoader(batch_size=None)``
    and a dataset that takes an index tensor.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, drop_last: bool = False):
        self.n = n
        self.batch_size = batch_size
        self.seed = int(seed)
        self.epoch = 0
        self.drop_last = drop_last
        """Leave out a last batch shorter than ``batch_size``, as ``DataLoader(drop_last=True)``."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        order = epoch_permutation(self.n, self.seed, self.epoch)
        if self.drop_last:
            order = order[:len(self) * self.batch_size]
        yield from order.split(self.batch_size)
