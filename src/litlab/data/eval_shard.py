"""Each evaluation sample on exactly one rank, so validation and test metrics under DDP count
every sample once."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler


class EvalShard(DistributedSampler):
    """Rank ``r`` of ``N`` evaluates samples ``r, r + N, r + 2N, ...`` in order.

    Lightning's default for evaluation, a ``DistributedSampler``, pads the split with repeated
    samples until every rank has as many, so some samples counted twice in the metrics. Here the
    ranks may hold one sample fewer than others; litlab's evaluation has no per-batch collective
    (its metrics are device sums reduced once at the epoch end), so that is safe.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))
