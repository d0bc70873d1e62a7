"""Mixup and CutMix: each training batch mixed with a shuffled copy of itself (as timm's ``Mixup``,
with a random permutation of partners where timm reverses the batch, ``x.flip(0)``).

Mixup (Zhang et al., 2018) blends whole inputs, ``lam * x + (1 - lam) * x[perm]``; CutMix (Yun et
al., 2019) pastes a box of ``x[perm]`` into each image, ``lam`` then being the share of the image
kept. Either way the batch trains on ``lam * CE(y) + (1 - lam) * CE(y[perm])`` with the task's label
smoothing on both terms: timm's soft targets (smoothed one-hot labels, mixed) give the same loss,
as cross-entropy is linear in its target. One ``lam`` and one permutation per batch, as timm's
default ``batch`` mode.

Whether a batch is mixed, ``lam`` and the box are drawn from NumPy's global generator, as timm
draws them (Python numbers in microseconds: the step never waits for the GPU; torch's Beta took
~50 us a batch), the permutation from torch's generator of the batch's device. ``EpochSeed``
reseeds both from (seed, epoch) at every epoch's start and checkpoints taken within an epoch hold
their state (``data/resumable_loader.random_state``), so a resumed run mixes as the uninterrupted
one did. Plain torch: the task calls a mixer in its ``training_step``, after
the batch's preprocessing and augmentation (``on_after_batch_transfer``); validation, the test,
eval and predict never mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from litlab.mixing_checks import check_image_samples, check_mixing_setting


@dataclass
class MixedBatch:
    """A training batch after mixing: each input of ``x`` holds ``lam`` of its own sample (label
    ``y``) and ``1 - lam`` of its partner's (label ``y_other``, ``y[perm]``); ``lam`` 1 is unmixed."""

    x: Tensor
    y: Tensor
    y_other: Tensor
    lam: float

    def loss(self, logits: Tensor, label_smoothing: float = 0.0, weight: Tensor | None = None) -> Tensor:
        """``lam * CE(y) + (1 - lam) * CE(y_other)``, each label-smoothed and class-weighted
        (``weight``, ``(num_classes,)``: ``model.class_weights``) as the task's training loss is."""
        loss = F.cross_entropy(logits, self.y, weight=weight, label_smoothing=label_smoothing)
        if self.lam == 1.0:
            return loss
        other = F.cross_entropy(logits, self.y_other, weight=weight, label_smoothing=label_smoothing)
        return loss * self.lam + other * (1.0 - self.lam)

    def correct(self, logits: Tensor) -> Tensor:
        """Correct predictions with each share weighted: a prediction of ``y`` counts ``lam``, one of
        ``y_other`` ``1 - lam`` (both, 1, where the two labels agree), as the mixup authors count
        training accuracy; an unmixed batch counts as usual. So ``train/acc`` under mixing is
        against the mixed targets and stays below what the same weights score unmixed."""
        predicted = logits.detach().argmax(dim=1)
        hits = (predicted == self.y).sum()
        if self.lam == 1.0:
            return hits
        return hits * self.lam + (predicted == self.y_other).sum() * (1.0 - self.lam)


def unmixed(x: Tensor, y: Tensor) -> MixedBatch:
    """The batch as it came: a batch left out by ``prob`` trains on plain cross-entropy."""
    return MixedBatch(x, y, y, 1.0)


def draws(prob: float) -> bool:
    """True with probability ``prob``; draws nothing at 0 and 1 (the default ``prob`` 1.0)."""
    return prob >= 1.0 or (prob > 0.0 and np.random.rand() < prob)


def draw_lam(alpha: float) -> float:
    """lam ~ Beta(alpha, alpha)."""
    return float(np.random.beta(alpha, alpha))


def partners(n: int, device: torch.device) -> Tensor:
    """A random permutation of the batch: sample i is mixed with sample ``perm[i]`` (on the batch's
    device, so the labels and inputs are gathered without a copy from the host)."""
    return torch.randperm(n, device=device)


def _shown(value: float) -> str:
    return f"{value:g}"


class _OneMixer:
    """What mixup and CutMix share: ``alpha`` and ``prob`` (checked), and the record's text,
    ``NAME(alpha=..., prob=...)`` with ``prob`` left out at its default 1."""

    name = ""

    def __init__(self, alpha: float, prob: float = 1.0):
        check_mixing_setting("alpha", alpha)
        check_mixing_setting("prob", prob)
        self.alpha, self.prob = float(alpha), float(prob)

    def __repr__(self) -> str:
        prob = f", prob={_shown(self.prob)}" if self.prob != 1.0 else ""
        return f"{self.name}(alpha={_shown(self.alpha)}{prob})"


class Mixup(_OneMixer):
    """``mixing=mixup``: each mixed batch is ``lam * x + (1 - lam) * x[perm]``, any input shape.

    Args:
        alpha: lam ~ Beta(alpha, alpha), > 0 (``mixing.alpha``; 0.2 keeps lam near 0 or 1).
        prob: the share of training batches mixed, in [0, 1] (``mixing.prob``).
    """

    pastes_boxes = False
    name = "mixup"

    def __init__(self, alpha: float = 0.2, prob: float = 1.0):
        super().__init__(alpha, prob)

    def __call__(self, x: Tensor, y: Tensor) -> MixedBatch:
        if not draws(self.prob):
            return unmixed(x, y)
        return self.mix(x, y, draw_lam(self.alpha))

    @staticmethod
    def mix(x: Tensor, y: Tensor, lam: float, perm: Tensor | None = None) -> MixedBatch:
        """``x`` blended with ``x[perm]`` (a random permutation where none is given)."""
        perm = partners(len(y), x.device) if perm is None else perm
        # index_select: a quarter of the time of x[perm] on small batches
        return MixedBatch(x * lam + x.index_select(0, perm) * (1.0 - lam), y, y.index_select(0, perm), lam)


def cutmix_box(height: int, width: int, lam: float, center_y: int, center_x: int) -> tuple[int, int, int, int]:
    """The box ``(top, bottom, left, right)`` (bottom and right excluded) that CutMix pastes, as
    timm's ``rand_bbox``: sides ``sqrt(1 - lam)`` of the image's around the center, clipped to the
    image, so the box may be smaller than ``1 - lam`` of it (``CutMix.paste`` then takes lam from
    the box: timm's ``correct_lam``)."""
    ratio = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * ratio) // 2, int(width * ratio) // 2
    top, bottom = min(max(center_y - half_h, 0), height), min(max(center_y + half_h, 0), height)
    left, right = min(max(center_x - half_w, 0), width), min(max(center_x + half_w, 0), width)
    return top, bottom, left, right


class CutMix(_OneMixer):
    """``mixing=cutmix``: a box of ``x[perm]`` is pasted into each image of the batch (the same box
    for all), and lam is the share of each image kept. Images only: batches ``(B, C, H, W)``.

    Args:
        alpha: the box's target share 1 - lam, lam ~ Beta(alpha, alpha), > 0 (``mixing.alpha``;
            1.0: uniform).
        prob: the share of training batches mixed, in [0, 1] (``mixing.prob``).
    """

    pastes_boxes = True
    name = "cutmix"

    def __init__(self, alpha: float = 1.0, prob: float = 1.0):
        super().__init__(alpha, prob)

    def __call__(self, x: Tensor, y: Tensor) -> MixedBatch:
        if x.dim() != 4:  # build.build_mixing refuses such data before training; this catches a batch of
            check_image_samples(tuple(x.shape[1:]))  # another kind from a data module of the user's own
        if not draws(self.prob):
            return unmixed(x, y)
        return self.draw_and_paste(x, y)

    def draw_and_paste(self, x: Tensor, y: Tensor) -> MixedBatch:
        """One box of ``x[perm]`` pasted into ``x`` (a batch ``(B, C, H, W)``, checked by the caller)."""
        height, width = x.shape[-2:]
        lam = draw_lam(self.alpha)
        center_y, center_x = int(np.random.randint(height)), int(np.random.randint(width))
        return self.paste(x, y, cutmix_box(height, width, lam, center_y, center_x))

    @staticmethod
    def paste(x: Tensor, y: Tensor, box: tuple[int, int, int, int], perm: Tensor | None = None) -> MixedBatch:
        """``x`` with ``box`` of ``x[perm]`` pasted in (a random permutation where none is given);
        lam is the share of each image outside the box."""
        top, bottom, left, right = box
        area = (bottom - top) * (right - left)
        if area == 0:  # a box clipped to nothing: the batch as it came
            return unmixed(x, y)
        perm = partners(len(y), x.device) if perm is None else perm
        mixed = x.clone()  # the batch's own tensor stays as it came
        mixed[:, :, top:bottom, left:right] = x[:, :, top:bottom, left:right].index_select(0, perm)
        return MixedBatch(mixed, y, y.index_select(0, perm), 1.0 - area / (x.shape[-2] * x.shape[-1]))


class MixupOrCutMix:
    """``mixing=mixup_cutmix``: each mixed batch takes CutMix with probability ``switch_prob``,
    else mixup, each with its own alpha (timm's ImageNet recipe: 0.8 and 1.0, switch 0.5).
    Images only, as CutMix.

    Args:
        mixup_alpha: mixup's lam ~ Beta(mixup_alpha, mixup_alpha), > 0 (``mixing.mixup_alpha``).
        cutmix_alpha: CutMix's, > 0 (``mixing.cutmix_alpha``).
        switch_prob: the share of mixed batches that take CutMix, in [0, 1] (``mixing.switch_prob``).
        prob: the share of training batches mixed, in [0, 1] (``mixing.prob``).
    """

    pastes_boxes = True

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 prob: float = 1.0):
        for key, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha),
                           ("switch_prob", switch_prob), ("prob", prob)):
            check_mixing_setting(key, value)
        self.mixup, self.cutmix = Mixup(mixup_alpha), CutMix(cutmix_alpha)  # each mixes every batch given
        self.switch_prob, self.prob = float(switch_prob), float(prob)

    def __call__(self, x: Tensor, y: Tensor) -> MixedBatch:
        if x.dim() != 4:
            check_image_samples(tuple(x.shape[1:]))
        if not draws(self.prob):
            return unmixed(x, y)
        if draws(self.switch_prob):
            return self.cutmix.draw_and_paste(x, y)  # the batch's shape is checked above, once
        return self.mixup(x, y)

    def __repr__(self) -> str:
        prob = f", prob={_shown(self.prob)}" if self.prob != 1.0 else ""
        return (f"mixup_cutmix(mixup_alpha={_shown(self.mixup.alpha)}, cutmix_alpha={_shown(self.cutmix.alpha)}, "
                f"switch_prob={_shown(self.switch_prob)}{prob})")
