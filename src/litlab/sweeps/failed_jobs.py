"""The value a failed sweep job returns, so that the sweep records it and goes on."""

from __future__ import annotations

import math

from hydra.core.hydra_config import HydraConfig


def failed_job_value() -> float:
    """The worst value for the sweep's direction: -inf when maximizing, +inf when minimizing.

    Hydra's Optuna sweeper stops the whole sweep on NaN (Optuna refuses it), but takes an infinite
    value as a finished trial that is worse than all others. Sweepers without a direction (the
    basic grid sweeper) ignore the value: NaN.
    """
    try:
        direction = HydraConfig.get().sweeper.get("direction")
    except ValueError:
        return math.nan
    if direction is None:
        return math.nan
    if not isinstance(direction, str):  # multi-objective: a list of directions; train() returns one value
        direction = list(direction)[0]
    return -math.inf if str(direction).lower().endswith("maximize") else math.inf
