"""The model summary at the start of training, with the forward FLOPs of one sample counted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from torch import nn

log = logging.getLogger(__name__)


class FlopSummary(ModelSummary):
    """Lightning's model summary, whose FLOPs column and total are counted, not left at 0.

    Lightning counts FLOPs only by passing ``LightningModule.example_input_array`` through the
    batch-transfer hooks, which litlab's ``(x, y)`` batches and its preprocessing do not fit; the
    table said "FLOPs 0" for every net. Here one zero sample of the data's ``input_shape`` (a batch
    of 1) runs through the module inside the summary's own FLOP counter (torch's
    ``FlopCounterMode``, which fills the per-layer column too): without gradients, in eval mode
    (each module's mode put back after, so batch-norm statistics stay as they were), on the
    module's device, in its parameters' dtype, and past ``torch.compile`` (run eagerly, nothing
    compiled). The count is skipped, and said so once, under sharding strategies (FSDP,
    DeepSpeed, model parallel: no rank holds the whole net), for nets whose recurrent layers torch's
    counter cannot see (an ``nn.LSTM`` on CPU: the total would leave it out), and when that
    forward fails: a summary never fails a run. Only rank 0 counts (it alone prints the summary).

    ``flops_per_sample`` holds the count after fit starts (None when not counted), for metrics.json.

    Args:
        max_depth: layer nesting shown in the table, as for Lightning's ``ModelSummary``.
        rich: draw the table with rich (Lightning's ``RichModelSummary``, its pick when rich is
            installed, as it is with litlab) or as plain text.
        **summarize_kwargs: passed to the table's printer (e.g. rich's ``header_style``).
    """

    def __init__(self, max_depth: int = 1, rich: bool = True, **summarize_kwargs):
        super().__init__(max_depth, **summarize_kwargs)
        self.rich = rich
        self.flops_per_sample: int | None = None
        self._not_counted: str | None = None  # why, once the count was tried and skipped
        self._shape: tuple[int, ...] | None = None

    def summarize(self, *args, **kwargs) -> None:
        # Lightning's printers are static methods; on_fit_start calls this one through the instance
        printer = RichModelSummary.summarize if self.rich else ModelSummary.summarize
        printer(*args, **kwargs)

    def _summary(self, trainer: L.Trainer, pl_module: L.LightningModule):
        summary = super()._summary(trainer, pl_module)
        counter = getattr(summary, "_flop_counter", None)  # DeepSpeed's stage-3 summary has none
        if trainer.is_global_zero and counter is not None:
            self._count(trainer, pl_module, counter)
        return summary

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if not self._max_depth or not trainer.is_global_zero:
            return
        if self.flops_per_sample is not None:
            log.info("model summary: the FLOPs are those of one sample's forward pass (a batch of 1, shape %s): "
                     "%s per sample", self._shape, f"{self.flops_per_sample:,}")
        elif self._not_counted:
            log.info("model summary: FLOPs not counted (%s)", self._not_counted)

    def _count(self, trainer: L.Trainer, pl_module: L.LightningModule, counter) -> None:
        self.flops_per_sample = self._not_counted = None
        why = _uncountable(trainer, pl_module)
        if why is None:
            self._shape = tuple(trainer.datamodule.input_shape)
            try:
                self.flops_per_sample = one_sample_flops(pl_module, self._shape, counter,
                                                         trainer.precision_plugin.forward_context())
            except Uncounted as e:
                why = str(e)
            except Exception as e:  # never fail a run for its summary
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e).strip() else repr(e)
                why = f"the forward pass of one zero sample failed: {reason}"
        if why is not None:
            counter.flop_counts.clear()  # no partial count of a failed forward in the table
            self._not_counted = why


def _uncountable(trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
    """Why one sample cannot be run through ``pl_module`` here, or None."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
        return f"the {type(trainer.strategy).__name__} shards the parameters across devices"
    shape = getattr(trainer.datamodule, "input_shape", None)
    if shape is None or not all(isinstance(n, int) and n > 0 for n in shape):
        return "the data module gives no input_shape of one sample"
    return None


class Uncounted(Exception):
    """Part of the net ran without being counted: a total would be too low."""


def one_sample_flops(module: nn.Module, input_shape: tuple[int, ...], counter, context=None) -> int:
    """Forward FLOPs of one zero sample of ``input_shape`` through ``module`` (a batch of 1), counted
    by ``counter`` (a ``torch.utils.flop_counter.FlopCounterMode``, left holding the per-module counts).

    Runs without gradients and in eval mode; every submodule's training flag is restored after, so
    the module's state (batch-norm statistics included) is unchanged. ``context``: the precision's
    forward context (autocast), if any. Raises ``Uncounted`` for a net with recurrent layers
    (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``), which torch's counter leaves out.
    """
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    x = torch.zeros(1, *input_shape, device=device, dtype=dtype)  # (1, *input_shape)
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        # a torch.compile'd net (in place, or an _orig_mod wrapper) runs its plain forward: torch 2.14
        # already runs compiled code eagerly under a dispatch mode such as the counter; the stance
        # keeps it so (no compilation for one sample, which took seconds)
        with torch.no_grad(), torch.compiler.set_stance("force_eager"), context or contextlib.nullcontext(), counter:
            module(x)
    finally:
        for m, training in modes.items():
            m.training = training
    counts = counter.get_flop_counts()  # {"<root class>.<module name>": {op: flops}}
    missed = [f"{name} ({type(m).__name__})" for name, m in module.named_modules() if isinstance(m, nn.RNNBase)
              and not sum(counts.get(f"{type(module).__name__}.{name}", {}).values())]
    if missed:  # its fused kernels have no FLOP formula in torch: the total would leave them out
        raise Uncounted(f"torch's FLOP counter does not count recurrent layers, and this net runs "
                        f"{', '.join(missed)}")
    return int(counter.get_total_flops())


def with_flop_count(callbacks: Iterable[L.Callback]) -> list[L.Callback]:
    """``callbacks`` with Lightning's model summary (the one it adds when ``trainer.enable_model_summary``
    is true, or one configured as ``lightning.pytorch.callbacks.ModelSummary``) replaced by a
    ``FlopSummary`` of the same depth, style and printer arguments, at its place."""
    out = []
    for c in callbacks:
        if type(c) in (ModelSummary, RichModelSummary):
            c = FlopSummary(c._max_depth, rich=isinstance(c, RichModelSummary), **c._summarize_kwargs)
        out.append(c)
    return out
