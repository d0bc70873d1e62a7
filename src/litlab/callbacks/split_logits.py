"""The logits and labels of every batch of one split's pass, for eval: the validation logits it
fits a temperature on (``temperature_scaling.fit_on_validation``) and the test logits whose softmax
an ensemble averages (``evaluation.member_probabilities``)."""

from __future__ import annotations

import torch
from torch import Tensor

from litlab.callbacks.net_logits import NetLogits

STAGES = ("validate", "test")


class SplitLogits(NetLogits):
    """Keeps the logits of ``pl_module.net`` ``(N, C)`` and the labels ``(N,)`` of every batch of
    ``stage``'s epoch (``"validate"`` or ``"test"``) in the order the loader serves them, on the CPU
    in float64 (a split is small next to what it costs to compute). The logits are the net's own in
    the run's precision (divided by T where eval wrapped the net for ``temperature=``), not what the
    step returns: T is fitted on, and divides, the net's logits."""

    def __init__(self, stage: str):
        if stage not in STAGES:
            raise ValueError(f"SplitLogits keeps the logits of one of {STAGES}, not {stage!r}")
        super().__init__()
        self.stage = stage
        self._kept: list[Tensor] = []  # (B, C) float64 per batch
        self._labels: list[Tensor] = []  # (B,) long per batch

    def _start(self, pl_module) -> None:
        self._kept, self._labels = [], []
        self._watch(pl_module.net)

    def _keep(self, pl_module, batch) -> None:
        x, y = batch[0], batch[1]
        self._kept.append(self._logits(pl_module.net, x, y).double().cpu())  # (B, C)
        self._labels.append(y.detach().long().cpu())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.stage == "validate":
            self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "validate":
            self._keep(pl_module, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.stage == "validate":
            self._remove()

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        if self.stage == "test":
            self._start(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "test":
            self._keep(pl_module, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.stage == "test":
            self._remove()

    def result(self) -> tuple[Tensor, Tensor]:
        """(logits ``(N, C)`` float64, labels ``(N,)`` long); ``(0, 0)`` and ``(0,)`` where no batch
        ran (e.g. ``trainer.limit_val_batches=0``)."""
        if not self._labels:
            return torch.empty(0, 0, dtype=torch.float64), torch.empty(0, dtype=torch.long)
        return torch.cat(self._kept), torch.cat(self._labels)
