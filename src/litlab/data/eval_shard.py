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

    ``order``: the split's sample indices in the order to read them (a cut evaluation's fixed random
    order, ``ClassificationData._eval_loader``); rank ``r`` then reads ``order[r], order[r + N], ...``,
    so the ranks' first batches together are the first samples of that order, as one process reads them.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, order: list[int] | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))
        self.order = order

    def __iter__(self) -> Iterator[int]:
        mine = range(self.rank, self.total_size, self.num_replicas)
        return iter(mine if self.order is None else (self.order[i] for i in mine))
