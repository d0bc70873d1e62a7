"""Long lists in messages and tables: the first few, then how many more."""

from __future__ import annotations

from collections.abc import Sequence


def first_of(items: Sequence[object], limit: int, sep: str = ", ", before_more: str = " ") -> str:
    """``a, b, c and 5 more``: the first ``limit`` of ``items`` joined by ``sep``, then the count left."""
    shown = sep.join(str(i) for i in items[:limit])
    return shown + (f"{before_more}and {len(items) - limit} more" if len(items) > limit else "")
