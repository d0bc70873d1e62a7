"""Post-training int8 quantization: dynamic for Linear/LSTM/GRU nets, static (calibrated) for conv nets."""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import Tensor, nn

from litlab.compression import quant_backend
from litlab.compression.base import Compressor, Context
from litlab.errors import LitlabError, check_choice, check_positive_int

RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

log = logging.getLogger(__name__)


def has(net: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in net.modules())


class Quantize(Compressor):
    """int8 weights (and activations, for static) without further training.

    Args:
        mode: ``auto`` (static for nets with convolutions that torch.fx can trace, else dynamic),
            ``dynamic`` or ``static`` (``compress.mode``).
        calibration_batches: training batches that set the activation ranges of static quantization.
    """

    name = "quantize"
    cpu_only = True

    def __init__(self, mode: str = "auto", calibration_batches: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("compress.mode", mode, ("auto", "dynamic", "static"))
        self.calibration_batches = check_positive_int("compress.calibration_batches", calibration_batches)
        self._resolved = mode

    def settings(self) -> dict:
        return {"mode": self.mode, "resolved_mode": self._resolved, "calibration_batches": self.calibration_batches,
                "engine": quant_backend.engine()}

    def resolve(self, net: nn.Module, input_shape: tuple[int, ...]) -> str:
        """The mode to use: ``auto`` picks static int8 for convolutional nets that torch.fx can
        trace, dynamic int8 (of the Linear layers) for the others."""
        if self.mode != "auto":
            return self.mode
        if has(net, CONV) and not has(net, RECURRENT):
            if self._trace_error(net, input_shape) is None:
                return "static"
            log.info("compress.mode=auto: %s cannot be traced for static int8; quantizing its Linear layers "
                     "dynamically", type(net).__name__)
        return "dynamic"

    @staticmethod
    def _trace_error(net: nn.Module, input_shape: tuple[int, ...]) -> str | None:
        """Why torch.fx cannot prepare ``net`` for static quantization, or None when it can."""
        try:
            quant_backend.static_prepare(copy.deepcopy(net).cpu(), torch.zeros(2, *input_shape))
        except Exception as e:  # FX cannot trace data-dependent Python control flow
            return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return None

    def check(self, net: nn.Module, dm) -> None:
        mode = self.resolve(net, dm.input_shape)
        if mode == "static" and has(net, RECURRENT):
            raise LitlabError(f"compress.mode=static cannot quantize the LSTM/GRU of {type(net).__name__} (PyTorch has "
                              f"no static int8 recurrent kernels). Use compress.mode=dynamic or auto.")
        if mode == "dynamic" and not has(net, (nn.Linear, *RECURRENT)):
            picked = "auto picked dynamic int8, which" if self.mode == "auto" else "dynamic"
            raise LitlabError(f"compress.mode={picked} quantizes Linear, LSTM and GRU layers; {type(net).__name__} "
                              f"has none{' and cannot be traced for static int8' if self.mode == 'auto' else ''}. "
                              f"Use another compress method.")
        if mode == "static" and self.mode == "static":
            why = self._trace_error(net, dm.input_shape)
            if why is not None:
                raise LitlabError(
                    f"compress.mode=static needs a net that torch.fx can trace; {type(net).__name__} cannot be "
                    f"traced ({why}). Use compress.mode=dynamic or auto.")

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        self._resolved = self.resolve(net, dm.input_shape)
        net = net.cpu().eval()
        if self._resolved == "dynamic":
            return quant_backend.dynamic_int8(net)
        batches = [dm.preprocess(x) for x, _ in itertools.islice(dm.train_dataloader(), self.calibration_batches)]
        prepared = quant_backend.static_prepare(net, batches[0])
        with torch.no_grad():
            for x in batches:
                quant_backend.run(prepared, x)  # observers record activation ranges
        return quant_backend.static_convert(prepared)

    def recipe(self, compressed: nn.Module, ctx: Context) -> dict:
        return {"mode": self._resolved}

    @classmethod
    def rebuild(cls, net: nn.Module, recipe: dict, example: Tensor) -> nn.Module:
        if recipe["mode"] == "dynamic":
            return quant_backend.dynamic_int8(net)
        prepared = quant_backend.static_prepare(net, example)
        with torch.no_grad():
            quant_backend.run(prepared, example)  # scales are overwritten by the stored ones
        return quant_backend.static_convert(prepared)
