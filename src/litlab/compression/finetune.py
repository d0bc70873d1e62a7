"""A short, seeded plain training loop for fine-tuning compressed nets on the CPU.

A plain loop rather than a Lightning fit: methods hook into every step (pruning masks, the
distillation loss) and the run directory gets no second set of logs and checkpoints.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from litlab import class_weights as weighting
from litlab.errors import LitlabError, check_positive_int

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
StepHook = Callable[[int, int], None]


@dataclass
class FineTune:
    """Fine-tuning settings.

    Args:
        epochs: passes over the training split.
        lr: AdamW learning rate at the start (cosine decay to zero over the fine-tuning).
        weight_decay: AdamW weight decay.
        class_weights: the hard-label cross-entropy's weights per class, as ``model.class_weights``
            (None, ``balanced`` over the training split, or a list); by default the weights the
            training applied (``use_class_weights``), so a compressed net keeps the trained one's
            objective, a resumed run's too.
    """

    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    class_weights: list[float] | str | None = None

    def __post_init__(self) -> None:
        check_positive_int("compress.finetune.epochs", self.epochs)
        self.class_weights = weighting.check_setting(self.class_weights, key=weighting.FINETUNE_KEY)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise LitlabError(f"compress.finetune.lr must be a positive number, got {self.lr!r}.")
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or wd < 0:
            # AdamW refused it only when fine-tuning began, after the whole training run
            raise LitlabError(f"compress.finetune.weight_decay must be a number >= 0, got {wd!r}.")


def cross_entropy(net: nn.Module, x: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    return F.cross_entropy(net(x), y, weight=weight)


def class_weight_tensor(settings: FineTune, dm) -> Tensor | None:
    """The fine-tuning's class weights on ``dm``'s training split (``(num_classes,)``), or None."""
    if settings.class_weights is None:
        return None
    weights = weighting.resolve_on_data(settings.class_weights, dm, key=weighting.FINETUNE_KEY)
    log.info("fine-tuning with class weights %s", weighting.describe(weights))
    return torch.tensor(weights, dtype=torch.float32)


def check_class_weights(settings: FineTune, cfg: DictConfig, dm) -> None:
    """``compress.finetune.class_weights`` of its own against the data, before training (a list's
    length, ``balanced`` with a class without training samples; only labels are counted). The
    default, the training's weights, is the task's to check (``model.class_weights``)."""
    if settings.class_weights is not None and not weighting.follows_training(cfg):
        weighting.resolve_on_data(settings.class_weights, dm, key=weighting.FINETUNE_KEY)


def use_class_weights(settings: FineTune, cfg: DictConfig, applied: list[float] | None) -> None:
    """Sets the fine-tuning's class weights and says which in the log: with the default
    ``compress.finetune.class_weights`` the ``applied`` ones (the training loss's: on a resume the
    checkpoint's, not this command's ``model.class_weights``; a task without ``class_weights``: the
    setting as configured), else the key's own value."""
    if weighting.follows_training(cfg):
        settings.class_weights = weighting.check_setting(applied, key=weighting.KEY)
        log.info("compression fine-tunes with the class weights the training applied (%s): %s", weighting.KEY,
                 _shown(applied))
    elif settings.class_weights is not None or applied is not None:
        log.info("compression fine-tunes with %s=%s, not the training's weights", weighting.FINETUNE_KEY,
                 _shown(settings.class_weights))


def _shown(setting: list[float] | str | None) -> str:
    return "null" if setting is None else setting if isinstance(setting, str) else weighting.describe(setting)


def train_loop(net: nn.Module, dm, settings: FineTune, seed: int, loss_fn: LossFn | None = None,
               after_step: StepHook | None = None, before_step: StepHook | None = None) -> nn.Module:
    """Trains ``net`` in place on the training split and returns it (in eval mode).

    Args:
        net: the float net to train (on the CPU).
        dm: the data module; raw batches go through ``dm.preprocess`` (with augmentation).
        settings: epochs and learning rate.
        seed: seeds the batch order and dropout.
        loss_fn: ``(net, x, y) -> loss``; None: cross-entropy with ``settings.class_weights``.
        after_step: called as ``after_step(step, total_steps)`` after each optimizer step.
        before_step: called as ``before_step(step, total_steps)`` before each forward pass.
    """
    if loss_fn is None:
        loss_fn = functools.partial(cross_entropy, weight=class_weight_tensor(settings, dm))
    torch.manual_seed(seed)
    loader = dm.train_dataloader()
    total = settings.epochs * len(loader)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=settings.lr,
                            weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    net.train()
    step = 0
    for epoch in range(settings.epochs):
        running = 0.0
        for x, y in loader:
            if before_step is not None:
                before_step(step, total)
            loss = loss_fn(net, dm.preprocess(x, train=True), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if after_step is not None:
                after_step(step, total)
            running += loss.item()
        log.info("fine-tune epoch %d/%d  loss %.4f", epoch + 1, settings.epochs, running / max(len(loader), 1))
    return net.eval()
