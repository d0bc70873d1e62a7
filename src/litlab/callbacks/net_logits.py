"""The logits a net gave for the batch that just ended, for callbacks that score them (the
evaluation report, ``SplitLogits`` for eval's temperature fit and an ensemble member's
probabilities, and the figures at T = 1).

They come from a forward hook on the net, so the task's own call is read and no second forward
pass runs: the same weights the task scored with (EMA or SWA weights swapped in, a compiled net,
each rank's own share under DDP). Where the task did not call the net with the batch (or the hook
caught something that is not ``(B, C)`` logits of it), the callback runs the net itself.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as L
import torch
from torch import Tensor, nn


class NetLogits(L.Callback):
    """Base of callbacks that read a net's logits: ``_watch(net)`` when their epoch starts,
    ``_logits(...)`` at each batch's end, ``_remove()`` when it ends (and on an exception, here)."""

    def __init__(self):
        self._last = None  # the hooked net's latest output, until a batch takes it
        self._hook = None

    def _watch(self, net: nn.Module) -> None:
        self._hook = net.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args, output) -> None:
        self._last = output

    def _logits(self, run: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, outputs=None) -> Tensor:
        """The logits ``(B, C)`` of batch ``(x, y)``: the step's ``outputs`` where they are logits,
        else those the hook caught, else ``run(x)`` (without gradients) where the task did not call
        the watched net with this batch."""
        caught, self._last = self._last, None
        logits = outputs if _is_logits(outputs, y) else caught
        if not _is_logits(logits, y):
            with torch.no_grad():
                logits = run(x)
            self._last = None  # the hook caught this call too: the next batch must not take it
        return logits.detach()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove()

    def _remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._last = None


def _is_logits(value, y: Tensor) -> bool:
    """Whether ``value`` is a ``(B, C)`` tensor for the ``B = len(y)`` samples of the batch."""
    return isinstance(value, Tensor) and value.ndim == 2 and value.shape[0] == len(y)
