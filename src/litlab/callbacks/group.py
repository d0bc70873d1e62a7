"""litlab's own callbacks behind one Lightning callback, each hook reaching only those that define it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning.pytorch as L
from lightning.pytorch.callbacks import (BatchSizeFinder, Checkpoint, EarlyStopping, LearningRateFinder,
                                         LearningRateMonitor, ModelSummary, ProgressBar, Timer)

HOOKS = tuple(name for name, value in vars(L.Callback).items()
              if callable(value) and not name.startswith("_") and name not in ("state_dict", "load_state_dict"))
"""Every hook Lightning calls on a callback, except the two that carry its checkpoint state."""

# the hooks Lightning calls once per batch
STEP_HOOKS = tuple(f"on_{stage}_batch_{when}" for stage in ("train", "validation", "test", "predict")
                   for when in ("start", "end")) + (
    "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")

# callbacks the Trainer finds by their type in trainer.callbacks: they stay there, ungrouped
_LOOKED_UP = (Checkpoint, ProgressBar, EarlyStopping, Timer, ModelSummary, BatchSizeFinder, LearningRateFinder)


class CallbackGroup(L.Callback):
    """Stands in ``trainer.callbacks`` for several callbacks, in their order.

    Lightning calls every hook (six per training step) on every callback, through its profiler
    context, whether the callback defines the hook or not; that dispatch cost ~0.5 µs per callback
    and hook, about 4 % of a small MLP's step with litlab's ~10 callbacks. A group answers each
    hook with exactly the members that define it: a hook no member defines is Callback's no-op, a
    hook one member defines is that member's bound method, otherwise one loop over the members
    that do.

    Only callbacks without checkpoint state are grouped (their ``state_dict`` is Callback's, so
    checkpoints hold the same entries either way), and never those the Trainer looks up by type
    (checkpointing, progress bar, early stopping, ...). ``find_callback`` looks inside groups.
    """

    def __init__(self, members: Iterable[L.Callback]):
        self.members = list(members)
        for hook in HOOKS:
            fns = [getattr(m, hook) for m in self.members if _defines(m, hook)]
            if len(fns) == 1:
                setattr(self, hook, fns[0])
            elif fns:
                setattr(self, hook, _chain(fns))

    def __reduce__(self):
        # rebuilt from its members when pickled (spawn-based strategies pickle the trainer's callbacks)
        return CallbackGroup, (self.members,)

    def __repr__(self) -> str:
        return f"CallbackGroup({', '.join(type(m).__name__ for m in self.members)})"


def _defines(callback: L.Callback, hook: str) -> bool:
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(L.Callback, hook)


def _chain(fns: list[Callable]) -> Callable:
    def call_each(*args, **kwargs):
        for fn in fns:
            fn(*args, **kwargs)
    return call_each


def groupable(callback: L.Callback) -> bool:
    """litlab's own stateless callbacks and Lightning's learning-rate monitor."""
    cls = type(callback)
    own = cls.__module__.startswith("litlab.") or isinstance(callback, LearningRateMonitor)
    stateless = cls.state_dict is L.Callback.state_dict and cls.load_state_dict is L.Callback.load_state_dict
    return own and stateless and not isinstance(callback, (_LOOKED_UP, CallbackGroup))


def group_callbacks(callbacks: list[L.Callback]) -> list[L.Callback]:
    """``callbacks`` with the groupable ones replaced by one ``CallbackGroup`` at the place of the
    first of them (two or more are needed to be worth it); the others keep their order."""
    members = [c for c in callbacks if groupable(c)]
    if len(members) < 2:
        return list(callbacks)
    out, placed = [], False
    for c in callbacks:
        if not groupable(c):
            out.append(c)
        elif not placed:
            out.append(CallbackGroup(members))
            placed = True
    return out


def skip_idle_step_hooks(callbacks: Iterable[L.Callback]) -> None:
    """Sets every per-batch hook that a callback leaves as Callback's no-op to None on it.

    Lightning calls a callback's hook only if the attribute is callable (``_call_callback_hooks``),
    so it passes these over instead of entering its profiler context and calling an empty method
    (~0.5 µs each; ~20 times per training step for the checkpoint callback, the progress lines,
    the model summary and a group). ``build_trainer`` applies it to the trainer's callbacks only
    without a real profiler (which times each callback's hooks), after grouping: a group's hooks
    that no member defines are skipped the same way. A callback that never acts per batch (the
    learning-rate clock) applies it to itself under any profiler, which would time empty calls.
    """
    for c in callbacks:
        for hook in STEP_HOOKS:
            if not _defines(c, hook):
                setattr(c, hook, None)


def find_callback(trainer: L.Trainer, cls: type) -> L.Callback | None:
    """The first callback of type ``cls`` in ``trainer.callbacks``, also inside groups."""
    for c in trainer.callbacks:
        for member in c.members if isinstance(c, CallbackGroup) else [c]:
            if isinstance(member, cls):
                return member
    return None
