"""The before/after figures: test accuracy, parameter counts, one sample's FLOPs, artifact size and CPU latency."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from litlab.compression import quant_backend
from litlab.errors import check_positive_int

# state-dict entries that are statistics, not learned weights
_STATISTICS = re.compile(r"(^|\.)(running_mean|running_var|num_batches_tracked)$")
# quantization constants come in pairs (``x.scale`` beside ``x.zero_point``); a learned ``layer_scale``
# or a ``scale`` without its zero point is a weight
_QUANT_CONSTANT = re.compile(r"(^|[._])(scale|zero_point)(_\d+)?$")  # FX names them 0_input_scale_0


@dataclass
class Measure:
    """How latency is timed.

    Args:
        threads: torch CPU threads while timing (fixed, so runs compare).
        warmup: untimed forward passes first.
        repeats: timed forward passes; the median is reported.
    """

    threads: int = 1
    warmup: int = 10
    repeats: int = 50

    def __post_init__(self) -> None:
        check_positive_int("compress.measure.threads", self.threads)
        check_positive_int("compress.measure.warmup", self.warmup)
        check_positive_int("compress.measure.repeats", self.repeats)


def weight_tensors(state: dict) -> list[Tensor]:
    """The learned tensors of a state dict (float or int8), packed Linear params included."""
    out: list[Tensor] = []
    for key, value in state.items():
        if _STATISTICS.search(key) or _is_quant_constant(key, state):
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        out += [v for v in values if isinstance(v, Tensor) and (v.is_floating_point() or v.is_quantized)]
    return out


def _is_quant_constant(key: str, state: dict) -> bool:
    match = _QUANT_CONSTANT.search(key)
    if match is None:
        return False
    stem, name, number = key[:match.start(2)], match.group(2), match.group(3) or ""
    partner = "zero_point" if name == "scale" else "scale"
    return f"{stem}{partner}{number}" in state


def count_params(state: dict) -> tuple[int, int]:
    """(parameters, nonzero parameters) of a state dict; int8 weights count as one each."""
    tensors = weight_tensors(state)
    total = sum(t.numel() for t in tensors)
    nonzero = sum(int(((t.dequantize() if t.is_quantized else t) != 0).sum()) for t in tensors)
    return total, nonzero


@torch.inference_mode()
def evaluate(net: nn.Module, dm, split: str = "test") -> dict:
    """Accuracy and mean cross-entropy of ``net`` on a split, on the CPU, batches preprocessed."""
    net.eval()
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    correct, loss_sum, n = 0, 0.0, 0
    for x, y in loader:
        logits = quant_backend.run(net, dm.preprocess(x))
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
        n += len(y)
    return {"acc": correct / max(n, 1), "loss": loss_sum / max(n, 1)}


@torch.inference_mode()
def latencies_ms(nets: dict[str, nn.Module], x: Tensor, measure: Measure) -> dict[str, float]:
    """Median milliseconds of one forward pass of ``x`` through each net, with ``measure.threads``
    CPU threads.

    The nets are timed in alternation: every net's warm-up passes first, then rounds that time
    each net once, in an order that rotates every round. Timed one after the other, the net timed
    first paid one-off costs of the process (allocator growth, the first calls of a kernel) that
    its warm-up did not absorb: a pruned MLP, whose dense kernels cannot be faster, came out 2x
    faster than its dense original.
    """
    names = list(nets)
    for net in nets.values():
        net.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(measure.threads)
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        for name in names:
            for _ in range(measure.warmup):
                quant_backend.run(nets[name], x)
        for r in range(measure.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                quant_backend.run(nets[name], x)
                times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {n: 1000 * statistics.median(t) for n, t in times.items()}


def figures(net: nn.Module, dm, artifact: Path, state: dict) -> dict:
    """Accuracy, counts and bytes on disk of one model (its latency: :func:`add_latencies`)."""
    params, nonzero = count_params(state)
    return {
        **{f"test_{k}": v for k, v in evaluate(net, dm).items()},
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": Path(artifact).stat().st_size,
        **flops(net, dm.input_shape),
    }


def flops(net: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """``flops``: the forward FLOPs of one sample through ``net``, counted as the model summary's
    ``flops_per_sample`` is; or None, with ``flops_not_counted`` saying why (int8 layers and an LSTM
    on CPU run kernels that torch's counter cannot see). A count never fails the compression."""
    from torch.utils.flop_counter import FlopCounterMode

    from litlab.callbacks.model_summary import Uncounted, one_sample_flops

    try:
        return {"flops": quant_backend.run(one_sample_flops, net, tuple(input_shape), FlopCounterMode(display=False))}
    except Uncounted as e:
        return {"flops": None, "flops_not_counted": str(e)}
    except Exception as e:
        return {"flops": None, "flops_not_counted": f"the forward pass of one zero sample failed: {type(e).__name__}"}


def add_latencies(figs: dict[str, dict], nets: dict[str, nn.Module], dm, measure: Measure) -> None:
    """Adds ``latency_ms_batch1`` and ``latency_ms_test_batch`` to each model's figures, the
    models timed in alternation on the first test batch."""
    x, _ = next(iter(dm.test_dataloader()))
    x = dm.preprocess(x)  # (B, ...) model inputs
    for key, batch in (("latency_ms_batch1", x[:1]), ("latency_ms_test_batch", x)):
        for name, ms in latencies_ms(nets, batch, measure).items():
            figs[name][key] = ms
    for name in figs:
        figs[name]["test_batch_size"] = len(x)
