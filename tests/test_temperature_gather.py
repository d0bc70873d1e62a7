"""``temperature_scaling.gather_validation``: every rank's validation logits on every rank, each
sample once and in the split's order, with the ranks' collectives played by threads (one per rank)
over the samplers a run uses."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

import litlab.temperature_scaling as scaling
from litlab.data.eval_shard import EvalShard


class ThreadRanks:
    """``torch.distributed``'s ``get_world_size`` and ``all_gather`` for ``world`` threads, each
    one rank (``local.rank``)."""

    def __init__(self, world: int):
        self.world = world
        self.local = threading.local()
        self._barrier = threading.Barrier(world, timeout=20)
        self._slots: dict[int, torch.Tensor] = {}

    def get_world_size(self) -> int:
        return self.world

    def all_gather(self, parts: list[torch.Tensor], tensor: torch.Tensor) -> None:
        assert all(p.shape == tensor.shape for p in parts)  # as torch.distributed needs
        self._slots[self.local.rank] = tensor.clone()
        self._barrier.wait()
        for rank, part in enumerate(parts):
            part.copy_(self._slots[rank])
        self._barrier.wait()


def gathered(monkeypatch, shards: list[list[int]], logits: torch.Tensor, targets: torch.Tensor):
    """What each rank's ``gather_validation`` returns when rank ``r`` validated the samples ``shards[r]``."""
    ranks = ThreadRanks(len(shards))
    monkeypatch.setattr(scaling, "dist", ranks)
    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    results: dict[int, tuple] = {}

    def rank(r: int) -> None:
        ranks.local.rank = r
        index = torch.tensor(shards[r], dtype=torch.long)
        mine = logits[index] if len(index) else torch.empty(0, 0, dtype=torch.float64)  # as fit_on_validation's
        results[r] = scaling.gather_validation(strategy, mine, targets[index], len(targets))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == len(shards)
    return [results[r] for r in range(len(shards))]


def split(n: int, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, classes, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("n,world", [(7, 3), (99, 2), (8, 4), (3, 3)])
def test_uneven_shards_give_every_sample_once_in_order(monkeypatch, n, world):
    """EvalShard: rank r holds r, r + W, ...; some ranks one sample fewer."""
    logits, targets = split(n)
    shards = [list(EvalShard(range(n), world, r)) for r in range(world)]
    for got_logits, got_targets in gathered(monkeypatch, shards, logits, targets):
        assert torch.equal(got_logits, logits) and torch.equal(got_targets, targets)


def test_the_repeats_of_lightnings_sampler_are_dropped(monkeypatch):
    """A split smaller than the ranks gets Lightning's padding sampler: 2 samples on 3 ranks, the
    third holding sample 0 again."""
    logits, targets = split(2)
    shards = [list(DistributedSampler(range(2), 3, r, shuffle=False)) for r in range(3)]
    assert shards == [[0], [1], [0]]
    for got_logits, got_targets in gathered(monkeypatch, shards, logits, targets):
        assert torch.equal(got_logits, logits) and torch.equal(got_targets, targets)


def test_a_rank_without_batches_still_joins(monkeypatch):
    """A rank whose validation ran no batch holds no logits (not even their width)."""
    logits, targets = split(3)
    for got_logits, got_targets in gathered(monkeypatch, [[0, 2], [1], []], logits, targets):
        assert torch.equal(got_logits, logits) and torch.equal(got_targets, targets)


def test_no_rank_with_batches_gives_nothing_to_fit(monkeypatch):
    """trainer.limit_val_batches=0 on every rank: empty, for fit_temperature's error (not a reshape's)."""
    logits, targets = split(3)
    for got_logits, got_targets in gathered(monkeypatch, [[], []], logits, targets):
        assert got_logits.shape == (0, 0) and got_targets.shape == (0,)
