"""Which axes of an exported model's input are left free: the batch always, the time too for sequences.

A sequence batch is ``(B, T, F)``; recurrent nets (and others that read any length) then give a
file that takes sequences of any length, not only the training one. The record
(``export/dynamic_axes`` in metrics.json) lists the axes the written file really leaves free: the
ONNX graph's declared dims, and for both formats the time axis only where the file's logits at
other lengths match PyTorch's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from litlab.compression import quant_backend

log = logging.getLogger(__name__)

BATCH_AXIS, TIME_AXIS = 0, 1
# tolerance of the logits at other lengths: a trained GRU/LSTM's differ by up to ~5e-6 in onnxruntime
# (TorchScript: 0) at 16 to 64 steps
ATOL = RTOL = 1e-4


def requested(kind: str) -> dict[int, str]:
    """The axes to leave free for ``Preprocess.kind`` data: ``{0: "batch"}`` for images,
    ``{0: "batch", 1: "time"}`` for sequences ``(B, T, F)``.

    Images keep H and W fixed: the MLP's first Linear takes C*H*W flattened values and the RNN
    reads rows of C*W features, and image files are resized to ``data.image_size`` before the
    net anyway."""
    return {BATCH_AXIS: "batch", TIME_AXIS: "time"} if kind == "sequence" else {BATCH_AXIS: "batch"}


def forget_cached_rnn_kernels() -> None:
    """Call before each ONNX export that frees the time axis.

    For dynamic shapes, torch.onnx.export swaps in LSTM/GRU decompositions that loop over the
    time steps inside the graph, by writing the ops' ``py_kernels`` without clearing their
    dispatch caches (torch 2.14; torch's own ``py_impl`` clears them). After one export in the
    process, the cached default decomposition, which unrolls the loop over the example's steps,
    is used instead and fixes the time axis of every later LSTM (or GRU) export."""
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def declared_in_onnx(onnx_model, axes: dict[int, str]) -> list[str]:
    """The names of ``axes`` that the ONNX graph's input leaves symbolic (a ``dim_param``): the
    exporter fixes an asked axis to the example's size where the net's code needs that size."""
    dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    return [name for i, name in axes.items() if i < len(dims) and dims[i].HasField("dim_param")]


def other_lengths(example: Tensor) -> list[Tensor]:
    """The example batch ``(B, T, F)`` cut to ``T // 2`` steps and repeated to ``2T``."""
    steps = example.shape[TIME_AXIS]
    return [example[:, : max(1, steps // 2)], example.repeat(1, 2, *[1] * (example.dim() - 2))]


@torch.inference_mode()
def same_at_other_lengths(run: Callable[[Tensor], object], model: nn.Module, example: Tensor) -> bool:
    """Whether ``run(x)`` (a written file's forward) gives ``model``'s logits for sequences of half
    and twice the example's length; False where either cannot take them."""
    try:
        for x in other_lengths(example):
            ours = torch.as_tensor(np.asarray(run(x)))
            theirs = quant_backend.run(model, x)
            if ours.shape != theirs.shape or not torch.allclose(ours, theirs.float(), rtol=RTOL, atol=ATOL):
                return False
    except Exception:  # a length the net or the file refuses: the file takes the example's only
        return False
    return True


def checked(axes: dict[int, str], free: list[str], run, model: nn.Module, example: Tensor, fmt: str) -> list[str]:
    """``free`` less the time axis where the file's logits at other lengths differ from PyTorch's
    (or the file fixes it), saying so when the time axis was asked for."""
    time = axes.get(TIME_AXIS)
    if time is None or (time in free and same_at_other_lengths(run, model, example)):
        return free
    _say_fixed(model, example, fmt)
    return [name for name in free if name != time]


def _say_fixed(model: nn.Module, example: Tensor, fmt: str) -> None:
    """A warning where the net reads other lengths and only the file does not; a note otherwise."""
    steps = example.shape[TIME_AXIS]
    lengths = [x.shape[TIME_AXIS] for x in other_lengths(example)]
    if same_at_other_lengths(lambda x: quant_backend.run(model, x), model, example):
        log.warning("export=%s: the net reads sequences of any length, but the written file takes sequences of %d "
                    "steps only (export/dynamic_axes in metrics.json lists its free axes); pad or cut sequences to "
                    "%d steps for it", fmt, steps, steps)
    else:
        log.info("export=%s: the file takes sequences of %d steps only, as the net does (it does not run at %d "
                 "and %d steps)", fmt, steps, *lengths)
