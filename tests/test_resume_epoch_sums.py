"""A checkpoint taken within an epoch holds the epoch's training sums of all ranks, and a resume
goes on from them: the resumed epoch's train/loss and train/acc are those of the whole epoch
(end to end: ``tests/test_mid_epoch_resume.py``)."""

from __future__ import annotations

import io

import pytest
import torch

from litlab.tasks.epoch_sums import EpochSums


def _sums(*batches: tuple[torch.Tensor, torch.Tensor]) -> EpochSums:
    sums = EpochSums()
    for logits, y in batches:
        sums.add(torch.nn.functional.cross_entropy(logits, y), logits, y)
    return sums


class _Pair:
    """One rank of two under DDP: ``reduce`` adds the other rank's sums, as the all-reduce does."""

    world_size = 2

    def __init__(self, other: EpochSums):
        self.other = other

    def reduce(self, t, reduce_op):
        assert reduce_op == "sum"
        o = self.other
        return t + torch.stack([o.loss, o.correct, torch.tensor(float(o.samples), dtype=torch.float64)])


def _batches(seed: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 4, generator=g), torch.randint(0, 4, (n,), generator=g))
            for n in (3 + i % 5 for i in range(count))]


def test_a_resume_under_ddp_goes_on_from_all_ranks_sums_once():
    """Each rank sums its own batches; the checkpoint (rank 0's) holds the sums of both, and the
    resumed ranks go on from them on rank 0 only, so the epoch's means count every batch once."""
    before = {rank: _batches(rank, 4) for rank in (0, 1)}  # the batches of each rank up to the checkpoint
    after = {rank: _batches(10 + rank, 3) for rank in (0, 1)}
    # the uninterrupted ranks
    whole = {rank: _sums(*before[rank], *after[rank]) for rank in (0, 1)}
    expected = whole[0].means(_Pair(whole[1]))

    at_checkpoint = {rank: _sums(*before[rank]) for rank in (0, 1)}
    state = at_checkpoint[0].state(_Pair(at_checkpoint[1]))
    assert state == at_checkpoint[1].state(_Pair(at_checkpoint[0]))  # every rank reduces: the same sums
    assert state["samples"] == sum(len(y) for rank in (0, 1) for _, y in before[rank])
    buffer = io.BytesIO()
    torch.save(state, buffer)  # plain numbers: read back by weights_only loads
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = {rank: EpochSums.restored(state, "cpu", holder=rank == 0) for rank in (0, 1)}
    assert (resumed[1].loss.item(), resumed[1].correct.item(), resumed[1].samples) == (0.0, 0.0, 0)
    for rank in (0, 1):
        for logits, y in after[rank]:
            resumed[rank].add(torch.nn.functional.cross_entropy(logits, y), logits, y)
    loss, acc = resumed[0].means(_Pair(resumed[1]))
    assert loss.item() == pytest.approx(expected[0].item(), abs=1e-7)
    assert acc.item() == pytest.approx(expected[1].item(), abs=1e-7)
