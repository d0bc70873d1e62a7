"""The model summary at the start of training, with the forward FLOPs of one sample counted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from torch import nn

log = logging.getLogger(__name__)


class FlopSummary(ModelSummary):
    """Lightning's model summary, whose FLOPs column and total are counted, not left at 0.

    Lightning counts FLOPs only by passing ``LightningModule.example_input_array`` through the
    batch-transfer hooks, which litlab's ``(x, y)`` batches and its preprocessing do not fit; the
    table said "FLOPs 0" for every net. Here one zero sample of the data's ``input_shape`` runs
    forward through the module inside the summary's own FLOP counter (torch's ``FlopCounterMode``,
    which fills the per-layer column too); see :func:`one_sample_flops` for how. The count is
    skipped, and said so once, under sharding strategies (FSDP, DeepSpeed, model parallel: no rank
    holds the whole net), for nets with layers whose fused kernels torch's counter cannot see (an
    ``nn.LSTM`` on CPU, int8 layers: the total would leave them out), and when that forward fails:
    a summary never fails a run. The table's FLOPs column then reads "n/a"; its "Total FLOPs: 0"
    is Lightning's, which only prints numbers, and the log line after it says "not counted". Only
    rank 0 counts (it alone prints the summary).

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

    def summarize(self, summary_data: list[tuple[str, list[str]]], *args, **kwargs) -> None:
        # Lightning's printers are static methods; on_fit_start calls this one through the instance
        printer = RichModelSummary.summarize if self.rich else ModelSummary.summarize
        if self._not_counted:  # each layer's 0 would read as counted
            summary_data = [(name, ["n/a"] * len(cells) if name == "FLOPs" else cells)
                            for name, cells in summary_data]
        printer(summary_data, *args, **kwargs)

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
            log.info("model summary: the FLOPs are those of one sample of shape %s, forward only: %s per sample",
                     self._shape, f"{self.flops_per_sample:,}")
        elif self._not_counted:
            log.info("model summary: FLOPs not counted, the table's total of 0 included (%s)", self._not_counted)

    def _count(self, trainer: L.Trainer, pl_module: L.LightningModule, counter) -> None:
        self.flops_per_sample = self._not_counted = None
        why = _uncountable(trainer)
        if why is None:
            self._shape = tuple(trainer.datamodule.input_shape)
            try:
                self.flops_per_sample = one_sample_flops(pl_module, self._shape, counter)
            except Uncounted as e:
                why = str(e)
            except Exception as e:  # never fail a run for its summary
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e).strip() else repr(e)
                why = f"the forward pass of one zero sample failed: {reason}"
        if why is not None:
            counter.flop_counts.clear()  # no partial count of a failed forward in the table
            self._not_counted = why


def _uncountable(trainer: L.Trainer) -> str | None:
    """Why one sample cannot be run through the trainer's module here, or None."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
        return f"the {type(trainer.strategy).__name__} shards the parameters across devices"
    shape = getattr(trainer.datamodule, "input_shape", None)
    if shape is None or not all(isinstance(n, int) and n > 0 for n in shape):
        return "the data module gives no input_shape of one sample"
    return None


class Uncounted(Exception):
    """Part of the net ran without being counted: a total would be too low."""


def one_sample_flops(module: nn.Module, input_shape: tuple[int, ...], counter) -> int:
    """Forward FLOPs of one zero sample of ``input_shape`` through ``module`` (a batch of 1), counted
    by ``counter`` (a ``torch.utils.flop_counter.FlopCounterMode``, left holding the per-module counts).

    Runs without gradients and in eval mode, on the module's device and in its parameters' dtype
    (so ``bf16-true`` counts as it trains; autocast would not change the count, which depends on
    shapes alone). Every submodule's training flag is restored after, so the module's state
    (batch-norm statistics included) is unchanged. Attention runs as matrix products, which torch's
    counter has formulas for: see :func:`_counted_attention`.

    Raises ``Uncounted`` when a layer that torch's counter cannot see ran without a count: a
    recurrent layer run by a fused kernel (``nn.LSTM`` on CPU, and cuDNN's RNN kernels, which torch
    2.14 has no formula for; a GRU or plain RNN on CPU runs as matrix products and is counted) or
    an int8 layer of ``torch.ao.nn.quantized`` (dynamic or static).
    """
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    x = torch.zeros(1, *input_shape, device=device, dtype=dtype)  # (1, *input_shape)
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        # a torch.compile'd net (in place, or an _orig_mod wrapper) runs its plain forward: torch 2.14
        # already runs compiled code eagerly under a dispatch mode such as the counter, so the stance
        # is a guard for torch versions that would compile there (seconds, for one sample)
        with torch.no_grad(), _counted_attention(), torch.compiler.set_stance("force_eager"), counter:
            module(x)
    finally:
        for m, training in modes.items():
            m.training = training
    counts = counter.get_flop_counts()  # {"<root class>.<module name>": {op: flops}}
    missed = [f"{name} ({kind})" for name, m in module.named_modules() if (kind := _unseen_kind(m))
              and not sum(counts.get(f"{type(module).__name__}.{name}", {}).values())]
    if missed:  # their kernels have no FLOP formula in torch: the total would leave them out
        raise Uncounted(f"torch's FLOP counter does not count fused recurrent or int8 kernels, and this net "
                        f"runs {', '.join(missed)}")
    return int(counter.get_total_flops())


@contextlib.contextmanager
def _counted_attention() -> Iterator[None]:
    """Meanwhile, attention runs as matrix products that torch's FLOP counter counts.

    In eval mode without gradients ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
    take PyTorch's fast path, and ``F.scaled_dot_product_attention`` on CPU its flash kernel:
    neither has a FLOP formula (an ``nn.MultiheadAttention(64, 4)`` over 16 tokens counted 0 of its
    589,824). With the fast path off and SDPA's math backend, the products are counted as a
    training-mode forward counts them.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def _unseen_kind(module: nn.Module) -> str | None:
    """What ``module`` is when it may run kernels that torch's FLOP counter has no formula for, else None."""
    path = type(module).__module__
    name = type(module).__name__
    if (path.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and ".reference" not in path
            and hasattr(module, "_weight_bias") and not name.endswith("PackedParams")):
        return f"int8 {name}"  # a layer with packed int8 weights (not their holder), run by quantized:: ops
    if isinstance(module, nn.RNNBase):
        return name
    return None


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
