"""Which end of a metric is best, told by its name: the one rule behind the checkpoint mode check,
the sweep direction check and the sweep summary's ranking."""

from __future__ import annotations

import re

# names holding one of these are best at their lowest; names holding "acc" at their highest
LOWER_IS_BETTER = ("loss", "error", "latency", "size", "time")
# names holding one of these as a word are best at their lowest too: too short to find inside a
# name ("ece" is in "recent" and "piece"). ece: the expected calibration error ({val,test}/ece)
LOWER_IS_BETTER_WORDS = ("ece",)


def lower_is_better(metric: object) -> bool | None:
    """True for losses, errors (``ece`` included), latencies, sizes and times, False for
    accuracies, None when the name does not tell, or names a learning rate (``names_a_rate``)."""
    name = str(metric).lower()
    if names_a_rate(name):
        return None
    if any(word in name for word in LOWER_IS_BETTER) or any(w in _words(name) for w in LOWER_IS_BETTER_WORDS):
        return True
    return False if "acc" in name else None


def names_a_rate(metric: object) -> bool:
    """Whether ``metric`` names a learning rate: ``lr`` as a word of it (between ``_``, ``-``,
    ``/``, ``.`` or digits: ``min_loss_lr_div10``, not ``clr_acc``), or ``learning_rate``. The
    ``loss`` in ``min_loss_lr`` says at which point the rate was taken, not what it is. The
    command's name in lr_find's own curves (``lr_find/loss``) is no such word."""
    name = str(metric).lower().replace("lr_find", "")
    return "learning_rate" in name or "lr" in _words(name)


def _words(name: str) -> list[str]:
    """The words of a lower-case metric name: its runs of letters (``val/ece_15`` -> val, ece)."""
    return re.split(r"[^a-z]+", name)
