"""Which axes of an exported model's input are left free: the batch always, the time too for sequences.

A sequence batch is ``(B, T, F)``; recurrent nets (and others that read any length) then give a
file that takes sequences of any length, not only the training one. The record
(``export/dynamic_axes`` in metrics.json) lists the axes the written file really leaves free: the
ONNX graph's declared dims, and for both formats each axis only where the file's logits match
PyTorch's at another size of it (twice the batch; half and twice the length). An asked axis the
file fixes is logged.
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


def forget_earlier_exports() -> None:
    """Call before every ONNX export: drops what earlier exports of the process left in torch.

    With torch 2.14.1 an ONNX export of a net with an LSTM or GRU can leave state behind that
    makes a later export of the same op unroll the example's steps, fixing the time axis of the
    file (``['batch', 8, 3]``). Observed in one process, without this call: two time-free LSTM
    exports in a row (the second is fixed); a batch-only LSTM or GRU export (an image RNN, or a
    sequence net exported with the batch free alone) followed by a time-free one of the same op
    (fixed). Time-free exports alternating LSTM, GRU, LSTM, GRU all kept the time axis. The exact
    cause is not pinned down: clearing the ops' dispatch caches (which then hold the default
    decomposition, the one that unrolls the loop) mends the first case only, Dynamo's reset
    (``torch.compiler.reset()``) mends neither, both together mend both. The reset also drops
    ``torch.compile`` caches: a compiled module used later recompiles, with the same results."""
    torch.compiler.reset()
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def padded(model: nn.Module, example: Tensor, axes: dict[int, str]) -> Tensor:
    """``example`` repeated to 2 along each axis of ``axes`` where it has 1 (values do not matter).

    torch.export takes a dimension of size 1 as a constant, so a batch of 1 (``data.batch_size=1``)
    or 1-step sequences gave a file with that axis fixed. The time axis is padded only where the
    net runs at 2 steps (an MLP over sequences needs its training length)."""
    for axis in sorted(axes):
        if axis < example.dim() and example.shape[axis] == 1:
            longer = example.repeat(*[2 if i == axis else 1 for i in range(example.dim())])
            if axis == BATCH_AXIS or runs_at(model, [longer]):
                example = longer
    return example


def declared_in_onnx(onnx_model, axes: dict[int, str]) -> list[str]:
    """The names of ``axes`` that the ONNX graph's input leaves symbolic (a ``dim_param``): the
    exporter fixes an asked axis to the example's size where the net's code needs that size."""
    dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    return [name for i, name in axes.items() if i < len(dims) and dims[i].HasField("dim_param")]


def other_lengths(example: Tensor) -> list[Tensor]:
    """The example batch ``(B, T, F)`` cut to ``T // 2`` steps and repeated to ``2T`` (the half
    left out where it is ``T`` itself, at 1 step)."""
    steps = example.shape[TIME_AXIS]
    longer = example.repeat(1, 2, *[1] * (example.dim() - 2))
    return [longer] if steps < 2 else [example[:, : steps // 2], longer]


def other_batch(example: Tensor) -> Tensor:
    """The example batch repeated to twice its size."""
    return example.repeat(2, *[1] * (example.dim() - 1))


@torch.inference_mode()
def runs_at(model: nn.Module, inputs: list[Tensor]) -> bool:
    """Whether ``model`` runs on each of ``inputs`` (its logits are not looked at)."""
    try:
        for x in inputs:
            quant_backend.run(model, x)
    except Exception:  # a shape the net's code refuses (an MLP's Linear of T*F inputs)
        return False
    return True


@torch.inference_mode()
def same_on(run: Callable[[Tensor], object], model: nn.Module, inputs: list[Tensor]) -> bool:
    """Whether ``run(x)`` (a written file's forward) gives ``model``'s logits on each of ``inputs``;
    False where either cannot take one."""
    try:
        for x in inputs:
            ours = torch.as_tensor(np.asarray(run(x)))
            theirs = quant_backend.run(model, x)
            if ours.shape != theirs.shape or not torch.allclose(ours, theirs.float(), rtol=RTOL, atol=ATOL):
                return False
    except Exception:  # a shape the net or the file refuses
        return False
    return True


def checked(axes: dict[int, str], free: list[str], run, model: nn.Module, example: Tensor, fmt: str) -> list[str]:
    """``free`` less each asked axis where the file's logits differ from PyTorch's once that axis
    changes (twice the batch; half and twice the length), saying so for every asked axis the
    file does not leave free."""
    probes = {BATCH_AXIS: [other_batch(example)]}
    if TIME_AXIS in axes:
        probes[TIME_AXIS] = other_lengths(example)
    free = [name for i, name in axes.items() if name in free and same_on(run, model, probes.get(i, []))]
    for i, name in axes.items():
        if name in free:
            continue
        if i == TIME_AXIS:
            _say_fixed(model, example, fmt)
        else:
            log.warning("export=%s: the written file takes a %s of %d only, though it was asked to leave that axis "
                        "free (export/dynamic_axes in metrics.json lists its free axes)", fmt, name,
                        example.shape[i])
    return free


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _say_fixed(model: nn.Module, example: Tensor, fmt: str) -> None:
    """A warning where the net reads other lengths and only the file does not; a note otherwise."""
    steps = _steps(example.shape[TIME_AXIS])
    lengths = [x.shape[TIME_AXIS] for x in other_lengths(example)]
    if runs_at(model, other_lengths(example)):
        log.warning("export=%s: the net reads sequences of any length, but the written file takes sequences of %s "
                    "only (export/dynamic_axes in metrics.json lists its free axes); pad or cut sequences to %s "
                    "for it", fmt, steps, steps)
    else:
        # the longer length is 2 or more: "steps"
        log.info("export=%s: the file takes sequences of %s only, as the net does (it does not run at %s steps)", fmt,
                 steps, " and ".join(map(str, lengths)))
