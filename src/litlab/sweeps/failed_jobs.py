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
    if not isinstance(direction, str) and not hasattr(direction, "name"):  # multi-objective: a list of
        direction = list(direction)[0]  # directions; train() returns one value
    # the sweeper's own default is its enum (Direction.minimize), a value given on the command line a string
    return -math.inf if str(getattr(direction, "name", direction)).lower().endswith("maximize") else math.inf
