"""Stopping a run whose training loss is no longer a number, naming the step where it happened."""

from __future__ import annotations

import lightning.pytorch as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from litlab.errors import LitlabError


class StopOnNonFiniteLoss(L.Callback):
    """Fails the run when a training loss is NaN or infinite, naming the first such step.

    Each step only keeps its (detached) loss tensor in a list: no tensor op and no host sync per
    step. Every ``check_every_n_steps`` steps, and always before validation (i.e. before any
    checkpoint of the epoch is written, so ``last.ckpt`` keeps the last good weights), the kept
    losses are checked in one op and the ranks compare notes. Every rank takes the same decision,
    so none is left waiting in a collective.

    Args:
        check_every_n_steps: how often the kept losses are checked on the host.
    """

    def __init__(self, check_every_n_steps: int = 50):
        self.every = max(1, int(check_every_n_steps))
        self._losses: list[torch.Tensor] = []
        self._first_step = 0
        """The training step (as TensorBoard plots it) of ``_losses[0]``."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if not self._losses:
            # global_step already counts this batch's optimizer step
            self._first_step = max(trainer.global_step - 1, 0)
        self._losses.append(loss.detach())
        if len(self._losses) >= self.every:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a validation inside fit (trainer.training is already False here): the weights it would
        # measure, log and checkpoint must come from finite losses
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        step = -1
        if self._losses:
            # one row per kept step; a step is bad when any element of its loss is not finite
            bad = ~torch.isfinite(torch.stack(self._losses).reshape(len(self._losses), -1)).all(dim=1)
            if bool(bad.any()):
                step = self._first_step + int(bad.int().argmax())
            self._losses = []
        if trainer.strategy.reduce_boolean_decision(step >= 0, all=False):
            where = f"at training step {step}" if step >= 0 else "on another rank"
            saved = trainer.checkpoint_callback is not None and trainer.checkpoint_callback.last_model_path
            kept = ("checkpoints/last.ckpt keeps the last good epoch" if saved
                    else "no checkpoint was written (no epoch had finished)")
            raise LitlabError(
                f"the training loss became NaN or infinite {where} (epoch {trainer.current_epoch}); the run "
                f"stopped and {kept}. Likely causes: a learning rate too "
                f"high for this model (lower model.optimizer.lr), exploding gradients (set "
                f"trainer.gradient_clip_val=1.0), or NaN/inf values in the data.")
