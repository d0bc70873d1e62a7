"""The arithmetic of a learning-rate range test: the rates it sweeps, the smoothed loss, when the
loss has diverged, and the rate it suggests. Plain numbers in and out, so tests check each against
a hand computation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# the fewest points, after the skipped ones, that a suggestion is read from: fewer give a
# gradient of noise (Lightning skips 10 of its 100 points and needs 2; fastai needs a few more)
MIN_POINTS = 10
# points left out at the end: the one that stopped the sweep is already past the divergence
SKIP_END = 1


def lr_sequence(min_lr: float, max_lr: float, num_steps: int, mode: str = "exponential") -> list[float]:
    """The learning rate of each optimizer step: ``min_lr`` first and ``max_lr`` last. Exponential
    multiplies the rate by the same factor each step (evenly spaced on a log axis, where the loss
    curve is read); linear adds the same amount each step."""
    last = num_steps - 1
    if mode == "linear":
        return [min_lr + (max_lr - min_lr) * k / last for k in range(num_steps)]
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (k / last) for k in range(num_steps)]


def smooth(losses: list[float], smoothing: float) -> list[float]:
    """The bias-corrected exponential moving average of ``losses`` (fastai's and Lightning's):
    ``avg = (1 - s) * avg + s * loss``, divided by ``1 - (1 - s) ** (k + 1)`` so that the first
    points are not pulled towards the average's start at 0. ``smoothing`` ``s`` is the new loss's
    weight (Lightning's ``1 - beta``); 1 is no smoothing. A loss that is not finite gives NaN
    (the test stops there)."""
    avg, out = 0.0, []
    for k, loss in enumerate(losses):
        avg, smoothed = smooth_next(avg, loss, k, smoothing)
        out.append(smoothed)
    return out


def smooth_next(avg: float, loss: float, k: int, smoothing: float) -> tuple[float, float]:
    """One step of ``smooth``: the moving average after the ``k``-th loss and its smoothed value."""
    if not math.isfinite(loss):
        return avg, math.nan
    beta = 1.0 - smoothing
    avg = beta * avg + smoothing * loss
    return avg, avg / (1.0 - beta ** (k + 1))


def divergence(loss: float, smoothed: list[float], stop_factor: float | None) -> str | None:
    """Why the sweep stops after its latest point (the last of ``smoothed``), or None: a loss that
    is not a number, or a smoothed loss above ``stop_factor`` times the best so far (checked from
    the third point on, as Lightning does: the first two have no best to speak of). It counts the
    steps run ("after 60 steps"), as the summary's "steps 60 of 100" does: an index (step 59, the
    row of lr_find.csv) read as one short of the count."""
    if not math.isfinite(loss):
        return f"the loss became {loss} after {len(smoothed)} steps"
    if stop_factor is None or len(smoothed) < 3:
        return None
    best = min(smoothed[:-1])
    if smoothed[-1] > stop_factor * best:
        return (f"the smoothed loss {smoothed[-1]:.4g} exceeded {stop_factor:g} x the best {best:.4g} after "
                f"{len(smoothed)} steps")
    return None


def skip_begin(num_steps: int) -> int:
    """Points left out at the start: the loss barely moves there and its first smoothed values
    rest on few losses (Lightning skips 10 of 100; a tenth of a shorter sweep)."""
    return min(10, num_steps // 10)


@dataclass
class Suggestion:
    """What the curve suggests, or why it suggests nothing (``lr`` None, ``reason`` set)."""

    lr: float | None = None
    """the rate at the steepest descent of the smoothed loss (per unit of log lr)"""
    step: int | None = None
    min_loss_lr: float | None = None
    """the rate of the lowest smoothed loss"""
    min_loss_step: int | None = None
    min_loss_lr_div10: float | None = None
    """fastai's rule, a tenth of ``min_loss_lr``; None where the loss was lowest at the first usable
    point: it never fell, and a tenth of that rate is a guess below the swept range"""
    usable_points: int = 0
    reason: str | None = None

    def as_record(self) -> dict:
        return {"suggested_lr": self.lr, "suggested_by": "steepest descent of the smoothed loss",
                "suggested_step": self.step, "min_loss_lr": self.min_loss_lr, "min_loss_step": self.min_loss_step,
                "min_loss_lr_div10": self.min_loss_lr_div10, "usable_points": self.usable_points,
                "no_suggestion": self.reason}


def suggest(lrs: list[float], smoothed: list[float], begin: int, end: int = SKIP_END,
            mode: str = "exponential") -> Suggestion:
    """The steepest descent of ``smoothed`` against log lr (the most negative gradient, as
    Lightning's suggestion; its own is against the step, the same for an exponential sweep), over
    the points left after ``begin`` at the start and ``end`` at the end, up to the first that is
    not finite, and at or before the lowest smoothed loss. Fewer than ``MIN_POINTS`` such points,
    or a loss lowest at the first of them, suggest nothing; each reason says what to change
    (``mode``, the sweep's, picks the advice for the latter)."""
    finite = next((k for k, v in enumerate(smoothed) if not math.isfinite(v)), len(smoothed))
    stop = max(begin, finite - end)
    idx = list(range(begin, stop))
    if len(idx) < MIN_POINTS:
        return Suggestion(usable_points=len(idx), reason=(
            f"only {len(idx)} usable point(s) of {len(smoothed)} (at least {MIN_POINTS} are needed after leaving out "
            f"the first {begin} and the last {end} before the loss diverged or stopped being a number). Run again "
            f"with more steps (lr_find.num_steps) or a lower lr_find.max_lr, so that more come before the divergence"))
    x = np.log(np.asarray([lrs[k] for k in idx], dtype=np.float64))
    y = np.asarray([smoothed[k] for k in idx], dtype=np.float64)
    gradient = np.gradient(y, x)
    lowest = int(np.argmin(y))
    result = Suggestion(min_loss_lr=lrs[idx[lowest]], min_loss_step=idx[lowest], usable_points=len(idx))
    if lowest == 0:
        result.reason = lowest_at_start(lrs[idx[0]], begin, mode)
        return result
    result.min_loss_lr_div10 = result.min_loss_lr / 10
    # only up to the lowest point: past it the loss is diverging, and a fall there is noise of a
    # diverging run (Lightning and fastai search the whole curve, and then may suggest such a rate)
    steepest = int(np.argmin(gradient[:lowest + 1]))
    if not gradient[steepest] < 0:  # lower at its lowest than at the start, yet no point falls: a flat step
        result.reason = "the smoothed loss fell at no point before its lowest one"
        return result
    result.lr, result.step = lrs[idx[steepest]], idx[steepest]
    return result


def lowest_at_start(first_lr: float, begin: int, mode: str) -> str:
    """Why nothing is suggested where the smoothed loss was lowest at the first usable point: it
    rose from there, so every usable rate was already too high (more steps or a higher max_lr,
    which was advised, only go further), and how to sweep lower ones. A linear sweep's first usable
    rate is about a tenth of max_lr whatever min_lr says (``skip_begin`` leaves out a tenth)."""
    if mode == "linear":
        how = ("lr_find.mode=exponential, which gives every decade from lr_find.min_lr up as many steps, or a lower "
               "lr_find.max_lr (a linear sweep's first usable rate is about a tenth of it)")
    else:
        how = "a lower lr_find.min_lr and lr_find.max_lr"
    return (f"the smoothed loss was lowest at the start of the usable range (lr {first_lr:.1e}, after the first "
            f"{begin} steps left out) and rose from there: every usable rate was already too high. Run again with "
            f"lower rates: {how}")
