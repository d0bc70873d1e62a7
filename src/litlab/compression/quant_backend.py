"""The one place that touches PyTorch's eager/FX int8 quantization (``torch.ao.quantization``).

PyTorch 2.14 marks these APIs deprecated in favour of torchao, which is not installed; they
still give real int8 kernels (fbgemm/x86) on CPU, the fastest option available here. Their
deprecation warnings are silenced here so that nothing else needs to know.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences the deprecation and observer warnings of ``torch.ao.quantization``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*")
        warnings.filterwarnings("ignore", message=".*reduce_range.*")
        warnings.filterwarnings("ignore", message=".*TypedStorage.*")
        yield


def engine() -> str:
    """The int8 kernel library: x86 (fbgemm + onednn) where available, else qnnpack (ARM)."""
    supported = torch.backends.quantized.supported_engines
    name = "x86" if "x86" in supported else "qnnpack"
    torch.backends.quantized.engine = name
    return name


def dynamic_int8(net: nn.Module) -> nn.Module:
    """Weights int8, activations quantized on the fly: Linear, LSTM and GRU layers."""
    with quiet():
        from torch.ao.quantization import quantize_dynamic

        engine()
        return quantize_dynamic(net, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


def static_prepare(net: nn.Module, example: Tensor) -> nn.Module:
    """FX-traced copy of ``net`` with observers on weights and activations (for calibration)."""
    with quiet():
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        return prepare_fx(net.eval(), get_default_qconfig_mapping(engine()), (example,))


def static_convert(prepared: nn.Module) -> nn.Module:
    """The calibrated model with int8 conv/linear kernels (conv + batch norm + ReLU fused)."""
    with quiet():
        from torch.ao.quantization.quantize_fx import convert_fx

        return convert_fx(prepared)


def is_dynamic_rnn(module: nn.Module) -> bool:
    with quiet():
        from torch.ao.nn.quantized.dynamic import GRU, LSTM

    return isinstance(module, (LSTM, GRU))


def rnn_tensors(module: nn.Module) -> dict[str, Tensor]:
    """A dynamic int8 LSTM/GRU's weights as plain (quantized) tensors, which ``torch.load`` can
    read with ``weights_only=True`` (its packed form cannot be)."""
    with quiet():
        wb = module._weight_bias()
    return {**wb["weight"], **wb["bias"]}


def set_rnn_tensors(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Inverse of ``rnn_tensors``: packs the tensors back into the int8 LSTM/GRU."""
    with quiet():
        module.set_weight_bias(tensors)


def run(fn, *args, **kwargs):
    """Calls ``fn`` with the quantization warnings silenced (forward passes of int8 models)."""
    with quiet():
        return fn(*args, **kwargs)
