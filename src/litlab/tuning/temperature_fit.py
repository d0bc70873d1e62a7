"""Fitting the temperature ``T`` of temperature scaling: the ``T > 0`` that minimizes the mean
negative log-likelihood (cross-entropy) of ``softmax(logits / T)`` on held-out labelled data.

The NLL is convex in ``1 / T`` (a log-sum-exp of linear functions minus a linear one), so along
``log T`` it has one minimum; a golden-section search over ``log T`` in ``[LOWEST, HIGHEST]`` finds
it without gradients, in float64 and deterministically (the same logits give the same T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from litlab.errors import LitlabError

LOWEST, HIGHEST = 0.01, 100.0  # the temperatures searched; beyond them the data says "as sharp/flat as it gets"
_STEPS = 80  # golden-section steps: the bracket shrinks by 0.618 each, from ln(1e4) ~ 9.2 to ~1e-16 in log T
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    """The fitted T."""
    nll_before: float
    """Mean NLL of the data at T = 1."""
    nll_after: float
    """Mean NLL of the data at the fitted T."""
    samples: int


def mean_nll(logits: Tensor, targets: Tensor, temperature: float) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)``, ``logits`` ``(N, C)``, in float64."""
    return float(F.cross_entropy(logits.double() / temperature, targets))


def fit_temperature(logits: Tensor, targets: Tensor, where: str = "the validation split") -> TemperatureFit:
    """The T in ``[LOWEST, HIGHEST]`` minimizing the mean NLL of ``logits`` ``(N, C)`` with ``targets`` ``(N,)``.

    A minimum at an end of that range means the data has none inside it: every sample predicted
    right (the NLL falls as T goes to 0) or the probabilities carry no information; that is an
    error naming ``where``, rather than a T that would make every prediction certain."""
    if logits.ndim != 2 or len(logits) == 0 or len(logits) != len(targets):
        raise LitlabError(f"temperature=auto: {where} gave no logits to fit T on (no batch of it ran: an empty split, "
                          f"or trainer.limit_val_batches=0). Use data with a validation split and let its batches run "
                          f"(leave trainer.limit_val_batches out, or above 0), or give temperature=<number>.")
    logits, targets = logits.detach().double().cpu(), targets.detach().long().cpu()
    low, high = math.log(LOWEST), math.log(HIGHEST)

    def nll(log_t: float) -> float:
        return mean_nll(logits, targets, math.exp(log_t))

    # golden section: keep the bracket [low, high] around the minimum, two interior probes a < b
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(_STEPS):
        if fa <= fb:  # the minimum lies in [low, b]
            high, b, fb = b, a, fa
            a = high - _GOLDEN * (high - low)
            fa = nll(a)
        else:  # in [a, high]
            low, a, fa = a, b, fb
            b = low + _GOLDEN * (high - low)
            fb = nll(b)
        if high - low < 1e-12:
            break
    log_t = (low + high) / 2
    temperature = math.exp(log_t)
    if log_t - math.log(LOWEST) < 1e-6 or math.log(HIGHEST) - log_t < 1e-6:
        side = "every sample is predicted right" if temperature < 1 else "the probabilities carry no information"
        raise LitlabError(f"temperature=auto: the NLL of {where} ({len(logits)} samples) keeps falling up to "
                          f"T = {temperature:.3g}, the end of the range searched ({LOWEST} to {HIGHEST}); most likely "
                          f"{side}, so these samples cannot say how confident the model should be. Fit on a larger "
                          f"validation split, or give temperature=<number>.")
    return TemperatureFit(temperature, mean_nll(logits, targets, 1.0), mean_nll(logits, targets, temperature),
                          len(logits))
