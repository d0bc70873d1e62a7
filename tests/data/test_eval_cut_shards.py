"""A cut evaluation (``trainer.limit_val_batches``, ``limit_test_batches``) reads its split in a
fixed random order on one process and on several: the ranks shard that order, so together they
read the samples one process reads (``ClassificationData._eval_loader`` with ``EvalShard``)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from litlab.data.npz import NpzDataModule

BATCH = 4


@pytest.fixture
def class_ordered(tmp_path) -> NpzDataModule:
    """An npz whose validation split holds 4 classes of 10 samples, stored class by class; every
    sample's pixels hold its index in the split, so a batch tells which samples it holds."""
    rng = np.random.default_rng(0)
    y_val = np.repeat(np.arange(4), 10)  # (40,): 0 x10, 1 x10, ...
    x_val = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None, None], (40, 1, 2, 2)).copy()
    y_train = np.arange(40) % 4
    path = tmp_path / "ordered.npz"
    np.savez(path, x_train=rng.normal(size=(40, 1, 2, 2)).astype(np.float32), y_train=y_train,
             x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val)
    dm = NpzDataModule(path=str(path), batch_size=BATCH)
    dm.setup()
    return dm


def read(dm: NpzDataModule, world: int, rank: int, limit: int | float) -> list[int]:
    """The validation samples rank ``rank`` of ``world`` reads with ``trainer.limit_val_batches=limit``:
    Lightning takes the first ``limit`` batches of each rank's loader (a fraction of its length)."""
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, fast_dev_run=False, limit_val_batches=limit,
                                 limit_test_batches=1.0)
    loader = dm.val_dataloader()
    batches = limit if isinstance(limit, int) else int(len(loader) * limit)
    samples = [int(v) for x, _ in itertools.islice(loader, batches) for v in x[:, 0, 0, 0]]
    dm.trainer = None
    return samples


def test_two_processes_read_the_samples_of_one_when_the_cut_covers_as_many(class_ordered):
    """Each rank read the first samples in stored order (EvalShard: r, r + W, ...), so a cut
    evaluation on 2 processes read classes 0 and 1 only, and other samples than on one process
    (where T of temperature=auto was then fitted on other samples). Lightning's limit counts
    batches per rank: 2 processes with limit_val_batches=2 read as many samples as one with 4."""
    one = read(class_ordered, 1, 0, 4)
    ranks = [read(class_ordered, 2, r, 2) for r in range(2)]
    assert len(one) == 16 and all(len(r) == 8 for r in ranks)
    assert not set(ranks[0]) & set(ranks[1])  # each sample on one rank
    assert sorted(ranks[0] + ranks[1]) == sorted(one)
    # the one-process order, dealt to the ranks in turn
    assert ranks[0] == one[0::2] and ranks[1] == one[1::2]
    labels = {int(class_ordered.splits.val.y[i]) for i in one}
    assert labels == {0, 1, 2, 3}  # not the first classes only
    # 3 processes with a third of the batches: the same samples once more
    # each rank holds 13-14 samples in 4 batches, and reads int(4 * 0.4) = 1 of them
    three = [read(class_ordered, 3, r, 0.4) for r in range(3)]
    assert sorted(itertools.chain(*three)) == sorted(read(class_ordered, 1, 0, 3))


def test_a_whole_evaluation_keeps_the_stored_order(class_ordered):
    """Without a cut every sample is read anyway: each rank reads r, r + W, ... of the stored order."""
    ranks = [read(class_ordered, 2, r, 1.0) for r in range(2)]
    assert ranks == [list(range(0, 40, 2)), list(range(1, 40, 2))]
    assert read(class_ordered, 1, 0, 1.0) == list(range(40))
