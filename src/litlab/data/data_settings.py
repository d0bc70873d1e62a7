"""``data.*`` values every data module takes, checked without torch.

The data modules check them when they are built, and ``early_checks`` calls the same functions on
the composed config before torch is imported and Hydra makes the run's folder: one copy of each
sentence, whichever catches the value first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from litlab.errors import LitlabError, config_error

# the keys of data.augment and their values when absent (preprocess.Augment's fields)
AUGMENT_DEFAULTS = {"hflip": False, "shift": 0}


def check_augment(values: Mapping | None) -> dict:
    """``data.augment`` as ``{"hflip": bool, "shift": int}``, checked before any data is read: a
    float or boolean shift got as far as the first training batch (a TypeError from torch's pad)
    and a negative one silently did nothing. Checkpoint records go through
    ``Preprocess.from_dict`` unchecked, so that a model trained with such a value can still be
    evaluated."""
    if values is None:
        return dict(AUGMENT_DEFAULTS)
    if not isinstance(values, Mapping):
        raise config_error("data.augment", "a mapping with the keys hflip and shift", values)
    unknown = sorted(set(map(str, values)) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise LitlabError(f"data.augment has the key(s) {', '.join(unknown)}, but it takes hflip and shift "
                          f"only. Remove the others.")
    aug = {**AUGMENT_DEFAULTS, **values}
    if not isinstance(aug["hflip"], bool):
        raise config_error("data.augment.hflip", "true or false", aug["hflip"])
    shift = aug["shift"]
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise config_error("data.augment.shift", "an integer >= 0 (a number of pixels)", shift,
                           "Use 0 for no shift, or a few pixels (about an eighth of the image size or less).")
    return aug


def given_stats(key: str, value, count: int | None, unit: str, positive: bool = False) -> list[float] | None:
    """``data.mean`` or ``data.std`` as the user gave it: None, one number for every ``unit``
    (channel or feature) or one per ``unit`` (``count`` of them; None: not known yet), finite, and
    above 0 if ``positive`` (``std``). A std of 0 or below gave a "loss became NaN" error at step 0
    that blamed the learning rate."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value] * (count or 1)
    if (count is not None and len(values) != count) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        per = f"one number per {unit}" + (f" ({count})" if count is not None else "")
        raise LitlabError(f"{key} needs a number or {per}, got {value!r}.")
    if not all(math.isfinite(v) for v in values):
        raise LitlabError(f"{key} must hold finite numbers, got {value!r}. Set it to null to compute it from the "
                          f"training split.")
    if positive and not all(v > 0 for v in values):
        raise LitlabError(f"{key} must be above 0 (each input is divided by it), got {value!r}. Give the spread of "
                          f"the training inputs per {unit}, or set {key}=null to compute it from the training split.")
    return [float(v) for v in values]
