"""A Lightning profiler that records nothing and costs nothing per hook."""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning wraps every hook call (~100 per training step: each callback's hooks, the
    module's and the strategy's) in ``profiler.profile(name)``. Its default no-op profiler still
    builds a generator-based context manager each time, about half of what dispatching a hook to a
    callback costs. This one hands back one shared ``nullcontext``.

    litlab uses it when ``trainer.profiler`` is not set; ``+trainer.profiler=simple`` (or
    ``advanced``, ``pytorch``) still selects one of Lightning's real profilers.
    """

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NOTHING
