"""The classifier's epoch sums: exact loss and accuracy means over batches of any size."""

from __future__ import annotations

import pytest
import torch

from litlab.tasks.epoch_sums import EpochSums


class _OneProcess:
    world_size = 1

    @staticmethod
    def reduce(t, reduce_op):
        assert reduce_op == "sum"
        return t


class _TwoRanks:
    """As if a second rank had seen exactly the same batches."""

    world_size = 2

    @staticmethod
    def reduce(t, reduce_op):
        return t * 2


@pytest.mark.parametrize("batches", [1, 3, 300])
def test_means_match_the_whole_epoch_at_once(batches):
    g = torch.Generator().manual_seed(batches)
    sums, all_logits, all_y, losses = EpochSums(), [], [], []
    for i in range(batches):
        n = 1 + i % 7  # uneven batch sizes: the loss mean must weight them by size
        logits = torch.randn(n, 5, generator=g, requires_grad=True)
        y = torch.randint(0, 5, (n,), generator=g)
        loss = torch.nn.functional.cross_entropy(logits, y)
        sums.add(loss, logits, y)
        all_logits.append(logits.detach())
        all_y.append(y)
        losses.append(torch.nn.functional.cross_entropy(logits.detach(), y, reduction="none"))
    logits, y = torch.cat(all_logits), torch.cat(all_y)
    loss, acc = sums.means(_OneProcess())
    assert sums.samples == len(y)
    assert loss.item() == pytest.approx(torch.cat(losses).mean().item(), rel=1e-6)
    assert acc.item() == pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-7)
    assert sums.means(_OneProcess()) == (loss, acc)  # reading twice changes nothing
    assert sums.means(_TwoRanks()) == (loss, acc)  # sums and counts reduce together


def test_an_empty_epoch_reads_zero():
    loss, acc = EpochSums().means(_OneProcess())
    assert loss.item() == 0.0 and acc.item() == 0.0
