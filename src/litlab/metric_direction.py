"""Which end of a metric is best, told by its name: the one rule behind the checkpoint mode check,
the sweep direction check and the sweep summary's ranking."""

from __future__ import annotations

# names holding one of these are best at their lowest; names holding "acc" at their highest
LOWER_IS_BETTER = ("loss", "error", "latency", "size", "time")


def lower_is_better(metric: object) -> bool | None:
    """True for losses, errors, latencies, sizes and times, False for accuracies, None when the
    name does not tell."""
    name = str(metric).lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return True
    return False if "acc" in name else None
