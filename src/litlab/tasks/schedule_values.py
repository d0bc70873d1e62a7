"""The values of ``model.scheduler_interval`` and ``model.warmup_epochs``, without torch: the
command line is checked with them before Hydra makes the run's folder (``config_check``), and the
task checks them again when it is built (``schedules``)."""

from __future__ import annotations

import math

from litlab.errors import LitlabError

# settings of model.scheduler_interval
INTERVALS = ("epoch", "step")


def check_scheduler_interval(value) -> None:
    """``model.scheduler_interval`` is epoch or step."""
    if not isinstance(value, str) or value not in INTERVALS:
        raise LitlabError(f"model.scheduler_interval must be epoch or step, got {value!r}. epoch steps the schedule "
                          f"once per epoch; step after every optimizer step (its periods, such as T_max, still "
                          f"count epochs).")


def check_warmup_epochs(value) -> None:
    """``model.warmup_epochs`` is a number of epochs >= 0 (a fraction is fine)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise LitlabError(f"model.warmup_epochs must be a number of epochs >= 0 (0.5 for half an epoch, 0 for no "
                          f"warm-up), got {value!r}.")


def changes_per_step(interval, warmup_epochs) -> bool:
    """Whether the learning rate changes after every optimizer step: a schedule stepped per step, or
    a warm-up. Otherwise it changes at epochs' ends only, as Lightning steps a schedule itself."""
    warming = isinstance(warmup_epochs, (int, float)) and not isinstance(warmup_epochs, bool) and warmup_epochs > 0
    return interval == "step" or warming
