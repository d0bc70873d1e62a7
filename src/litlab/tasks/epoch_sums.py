"""An epoch's loss and accuracy sums in the classification task, on the device until its end,
reduced over the ranks once, and carried in checkpoints taken within the epoch."""

from __future__ import annotations

import torch
from torch import Tensor


class EpochSums:
    """An epoch's loss sum and correct predictions, kept on the device (two in-place ops per batch
    instead of a metric update and a logged value), and its sample count.

    Plain tensors made at each epoch start, not module buffers: DDP broadcasts every buffer from
    rank 0 before each forward, which would overwrite each rank's own sums (and cost a collective
    per step).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.samples = 0

    def add(self, loss: Tensor, logits: Tensor, y: Tensor, correct: Tensor | None = None) -> None:
        """``correct``: the batch's count of correct predictions where it is not ``argmax == y``
        (a mixed batch's, each share weighted: ``MixedBatch.correct``)."""
        # detached inputs and no gradient on the sums: nothing is recorded for autograd
        self.loss.add_(loss.detach(), alpha=len(y))
        self.correct.add_((logits.argmax(dim=1) == y).sum() if correct is None else correct)
        self.samples += len(y)

    def means(self, strategy) -> tuple[Tensor, Tensor]:
        """Mean loss and accuracy over every sample of all ranks: one reduction of three sums."""
        if strategy.world_size == 1:  # nothing to reduce: four small ops instead of nine
            count = max(self.samples, 1)
            return (self.loss / count).float(), (self.correct / count).float()
        sums = self._totals(strategy)
        count = sums[2].clamp_min(1)
        return (sums[0] / count).float(), (sums[1] / count).float()

    def _totals(self, strategy) -> Tensor:
        """Loss sum, correct predictions and samples of all ranks, ``(3,)`` float64 (a collective
        under DDP: every rank calls it)."""
        sums = torch.stack([self.loss, self.correct,
                            torch.tensor(float(self.samples), dtype=torch.float64, device=self.loss.device)])
        return sums if strategy.world_size == 1 else strategy.reduce(sums, reduce_op="sum")

    def state(self, strategy) -> dict[str, float | int]:
        """The sums of all ranks so far as plain numbers, for a checkpoint taken within the epoch: a
        resume from it goes on from them, so its epoch means cover the batches trained before it.
        Reduced here because only rank 0's checkpoint is written (a collective under DDP)."""
        loss, correct, samples = self._totals(strategy).tolist()
        return {"loss": loss, "correct": correct, "samples": int(samples)}

    @classmethod
    def restored(cls, state: dict, device: torch.device | str, holder: bool) -> EpochSums:
        """Sums that go on from a checkpoint's ``state()``, on ``device``. Only one rank (``holder``)
        takes the checkpoint's totals, the others start from zero: the reduction at the epoch's end
        then counts them once."""
        sums = cls(device)
        if holder:
            sums.loss.fill_(float(state["loss"]))
            sums.correct.fill_(float(state["correct"]))
            sums.samples = int(state["samples"])
        return sums
