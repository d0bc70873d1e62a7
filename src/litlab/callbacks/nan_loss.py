"""Stopping a run whose training loss is no longer a number, naming the step where it happened."""

from __future__ import annotations

import lightning.pytorch as L
import torch

from litlab.errors import LitlabError


class StopOnNonFiniteLoss(L.Callback):
    """Fails the run when a training loss is NaN or infinite, naming the first such step.

    The first bad step is tracked on the device (no host sync per step); ranks compare notes
    every ``check_every_n_steps`` steps and always before validation, i.e. before any checkpoint
    of the epoch is written, so ``last.ckpt`` keeps the last good weights. Every rank takes the
    same decision, so none is left waiting in a collective.

    Args:
        check_every_n_steps: how often the flag is read on the host.
    """

    def __init__(self, check_every_n_steps: int = 50):
        self.every = max(1, int(check_every_n_steps))
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach()).all()
        # global_step already counts this batch's optimizer step; name the step as TensorBoard plots it
        step = torch.full((), max(trainer.global_step - 1, 0), dtype=torch.long, device=loss.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        if (batch_idx + 1) % self.every == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self._first_bad is None:
            return
        step = int(self._first_bad)
        if trainer.strategy.reduce_boolean_decision(step >= 0, all=False):
            where = f"at training step {step}" if step >= 0 else "on another rank"
            raise LitlabError(
                f"the training loss became NaN or infinite {where} (epoch {trainer.current_epoch}); the run "
                f"stopped and checkpoints/last.ckpt keeps the last good epoch. Likely causes: a learning rate too "
                f"high for this model (lower model.optimizer.lr), exploding gradients (set "
                f"trainer.gradient_clip_val=1.0), or NaN/inf values in the data.")
