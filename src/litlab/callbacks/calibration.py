"""Calibration of top-1 confidences: per-bin sums over equal-width bins, kept as device tensors.

A classifier is calibrated when, among the samples it predicts with confidence ``p`` (the
softmax's largest probability), a share ``p`` is right. The confidences are put in ``B``
equal-width bins over [0, 1]; bin ``k`` holds ``k/B <= p < (k+1)/B``, and the last one also
``p = 1`` (so 0 goes in the first bin and 1 in the last, as with ``numpy.histogram``). Per bin the
tally keeps three sums, which add up over batches and over DDP ranks:

- ``count``: samples in the bin;
- ``confidence``: their summed confidences (``confidence / count`` is the bin's mean confidence);
- ``hits``: how many of them were predicted right (``hits / count`` is the bin's accuracy).

The expected calibration error (ECE) is the mean over bins of ``|accuracy - mean confidence|``
weighted by the bin's share of the samples, ``sum_k |hits_k - confidence_k| / N``; the maximum
calibration error (MCE) is the largest ``|accuracy - mean confidence|`` of a bin with samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_BINS = 15  # as in Guo et al., "On Calibration of Modern Neural Networks" (2017), and most tools

COUNT, CONFIDENCE, HITS = 0, 1, 2  # rows of ``CalibrationBins.sums``


def _sum_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps counts exact and sums of millions of confidences accurate; Apple GPUs have no float64
    return torch.float32 if device.type == "mps" else torch.float64


def bin_index(confidence: Tensor, bins: int) -> Tensor:
    """The bin of each confidence ``(N,)``: ``k`` with ``k/B <= p < (k+1)/B``, ``B - 1`` for ``p = 1``.

    The interior edges ``k/B`` are compared exactly (no ``floor(p * B)``, whose rounding can move a
    confidence on an edge to the bin below)."""
    edges = torch.arange(1, bins, device=confidence.device, dtype=_sum_dtype(confidence.device)) / bins  # (B - 1,)
    return torch.bucketize(confidence.to(edges.dtype), edges, right=True)


class CalibrationBins:
    """Per-bin sample counts, confidence sums and hits ``(3, B)`` on one device.

    One tensor rather than three, so that DDP reduces it in one collective.
    """

    def __init__(self, sums: Tensor):
        self.sums = sums  # (3, B): rows COUNT, CONFIDENCE, HITS

    @classmethod
    def empty(cls, bins: int, device: torch.device | str) -> CalibrationBins:
        device = torch.device(device)
        return cls(torch.zeros(3, bins, dtype=_sum_dtype(device), device=device))

    @property
    def bins(self) -> int:
        return self.sums.shape[1]

    def add(self, confidence: Tensor, correct: Tensor) -> None:
        """Counts a batch: top-1 confidences ``(N,)`` in [0, 1] and whether each prediction was
        right ``(N,)``. ``index_add_`` keeps it on the device (``bincount`` on CUDA reads its
        maximum back to the host)."""
        index = bin_index(confidence, self.bins)  # (N,)
        values = torch.stack([torch.ones_like(confidence, dtype=self.sums.dtype), confidence.to(self.sums.dtype),
                              correct.to(self.sums.dtype)])  # (3, N)
        self.sums.index_add_(1, index, values)

    @property
    def count(self) -> Tensor:
        return self.sums[COUNT]

    def accuracy(self) -> Tensor:
        """Share of right predictions per bin ``(B,)``, 0 for an empty bin."""
        return self.sums[HITS] / self.count.clamp_min(1)

    def mean_confidence(self) -> Tensor:
        """Mean confidence per bin ``(B,)``, 0 for an empty bin."""
        return self.sums[CONFIDENCE] / self.count.clamp_min(1)

    def ece(self) -> Tensor:
        """Expected calibration error, a 0-d tensor in [0, 1] (0 without samples)."""
        gaps = (self.sums[HITS] - self.sums[CONFIDENCE]).abs()  # (B,): count * |accuracy - mean confidence|
        return gaps.sum() / self.count.sum().clamp_min(1)

    def max_error(self) -> Tensor:
        """Maximum calibration error over the bins with samples, a 0-d tensor (0 without samples)."""
        gaps = (self.accuracy() - self.mean_confidence()).abs()
        return torch.where(self.count > 0, gaps, torch.zeros_like(gaps)).max()
