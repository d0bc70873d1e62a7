"""Which end of a metric is best, told by its name: the one rule behind the checkpoint mode check,
the sweep direction check and the sweep summary's ranking."""

from __future__ import annotations

import re

# names holding one of these are best at their lowest; names holding "acc" at their highest
LOWER_IS_BETTER = ("loss", "error", "latency", "size", "time")
# names holding one of these as a word are learning rates (lr_find's suggested_lr and min_loss_lr,
# Lightning's lr-Adam): settings, best at neither end, whatever else the name holds
RATE_WORDS = ("lr", "learning_rate")


def lower_is_better(metric: object) -> bool | None:
    """True for losses, errors, latencies, sizes and times, False for accuracies, None when the
    name does not tell, or names a learning rate (``names_a_rate``)."""
    name = str(metric).lower()
    if names_a_rate(name):
        return None
    if any(word in name for word in LOWER_IS_BETTER):
        return True
    return False if "acc" in name else None


def names_a_rate(metric: object) -> bool:
    """Whether ``metric`` names a learning rate: ``lr`` as a word of it (between ``_``, ``-``,
    ``/``, ``.`` or digits: ``min_loss_lr_div10``, not ``clr_acc``), or ``learning_rate``. The
    ``loss`` in ``min_loss_lr`` says at which point the rate was taken, not what it is. The
    command's name in lr_find's own curves (``lr_find/loss``) is no such word."""
    name = str(metric).lower().replace("lr_find", "")
    return "learning_rate" in name or "lr" in re.split(r"[^a-z]+", name)
