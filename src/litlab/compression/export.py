"""Export of the final model, normalization included, to ONNX or TorchScript (``export=onnx``).

The exported graph takes raw batches (as the data loaders yield them: uint8 images or float
sequences) and returns logits; the batch axis is free, and for sequences the time axis too where
the net reads any length (``dynamic_axes``). The compressed model is exported when the run
compressed and the format can hold it; otherwise (e.g. int8 PyTorch kernels in ONNX) the float
model is.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from litlab.build import instantiate
from litlab.checkpoint_files import load_checkpoint
from litlab.compression import artifacts, dynamic_axes, quant_backend
from litlab.data.preprocess import Normalize
from litlab.errors import LitlabError

log = logging.getLogger(__name__)


def with_normalization(net: nn.Module, dm) -> nn.Module:
    """Raw batch -> ``Preprocess.module()`` -> net -> logits ``(B, K)``."""
    return nn.Sequential(dm.preprocess.module(), net).eval()


@torch.inference_mode()
def agreement(predict, reference: nn.Module, dm) -> float:
    """Share of test samples where ``predict(raw_batch)`` and ``reference`` pick the same class."""
    same, n = 0, 0
    for x, _ in dm.test_dataloader():
        ours = np.asarray(predict(x)).argmax(axis=1)
        theirs = quant_backend.run(reference, x).argmax(dim=1).numpy()
        same += int((ours == theirs).sum())
        n += len(x)
    return same / max(n, 1)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter's own loggers print a dozen INFO lines per export, and the traceback of an
    opset conversion it falls back from; what matters is reported by ``OnnxExport.write``."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class OnnxExport:
    """``model.onnx`` for onnxruntime, batch size (and sequence length) left free.

    Args:
        opset: ONNX opset version.
        check: run the test split through onnxruntime and report argmax agreement with PyTorch.
    """

    name = "onnx"
    suffix = ".onnx"

    def __init__(self, opset: int = 18, check: bool = True):
        import onnx

        newest = onnx.defs.onnx_opset_version()
        if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= newest:
            raise LitlabError(f"export.opset must be an ONNX opset from 7 to {newest} (the newest this onnx "
                              f"package knows), got {opset!r}.")
        self.opset = opset
        self.check = check

    def write(self, model: nn.Module, example: Tensor, path: Path, axes: dict[int, str] | None = None) -> dict:
        """Writes ``path`` with ``axes`` (``dynamic_axes.requested``; the batch alone by default) free."""
        import onnx
        import onnxruntime as ort

        axes = axes or {dynamic_axes.BATCH_AXIS: "batch"}
        example = dynamic_axes.padded(model, example, axes)  # a size-1 axis would be fixed in the file
        # min=1: a recurrent net runs on one step as on many; the exporter fixes an axis the net's
        # code needs at the example's size (an MLP's flattened (T, F)), which the file's dims then show
        dims = {i: torch.export.Dim(name, min=1) for i, name in axes.items()}
        dynamic_axes.forget_earlier_exports()
        with warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=(dims,), opset_version=self.opset, verbose=False,
                              external_data=False)  # one self-contained file
        graph = onnx.load(str(path), load_external_data=False)
        # torch writes opset 18 and converts; where a conversion fails it keeps 18 and only warns
        written = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
        if written != self.opset:
            log.warning("export.opset=%d: the exporter could not convert this model to it and wrote opset %d "
                        "(export/opset in metrics.json)", self.opset, written)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        free = dynamic_axes.checked(axes, dynamic_axes.declared_in_onnx(graph, axes),
                                    lambda x: session.run(None, {"input": x.numpy()})[0], model, example, self.name)
        return {"opset": written, "dynamic_axes": free}

    def verify(self, path: Path, model: nn.Module, dm) -> dict:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return {"agreement": agreement(lambda x: session.run(None, {name: x.numpy()})[0], model, dm)}


class TorchScriptExport:
    """``model.torchscript.pt`` for ``torch.jit.load`` (no Python class needed), int8 models included.

    Args:
        check: run the test split through the loaded file and report argmax agreement.
    """

    name = "torchscript"
    suffix = ".torchscript.pt"

    def __init__(self, check: bool = True):
        self.check = check

    def write(self, model: nn.Module, example: Tensor, path: Path, axes: dict[int, str] | None = None) -> dict:
        """Writes ``path``; a trace declares no shapes, so ``axes`` (the batch alone by default) are
        recorded as free where the file's logits match the model's at another size of them (a
        trace of nn.GRU/nn.LSTM keeps the length free)."""
        axes = axes or {dynamic_axes.BATCH_AXIS: "batch"}
        # as for ONNX, though no litlab net's trace keeps a size-1 axis as a constant (traced at batch 1,
        # each ran a batch of 4 alike); the check below says so where a net's trace does
        example = dynamic_axes.padded(model, example, axes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(model, nn.Sequential) and isinstance(model[0], Normalize):
                # scripted, not traced: a trace keeps only the branch of the example's dtype, and the
                # file then divided float pixels in [0, 1] by 255 again, silently (eager and predict
                # take them as they are)
                model = nn.Sequential(torch.jit.script(model[0]), *list(model)[1:]).eval()
            traced = quant_backend.run(torch.jit.trace, model, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
        free = dynamic_axes.checked(axes, list(axes.values()), lambda x: quant_backend.run(traced, x), model, example,
                                    self.name)
        return {"dynamic_axes": free}

    def verify(self, path: Path, model: nn.Module, dm) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location="cpu")
        return {"agreement": agreement(lambda x: quant_backend.run(loaded, x).numpy(), model, dm)}


def candidates(trained: nn.Module, extra: dict) -> list[tuple[str, nn.Module]]:
    """The nets to try in order: the compressed one (if any), then ``trained``, the float net with
    the best checkpoint's weights (``artifacts.trained_net``: those compression starts from and
    test/acc measured; ``model.net`` holds the last epoch's when the run did not test)."""
    found = []
    path = extra.get("compress/artifact")
    if path:
        found.append(("compressed", artifacts.load_net(load_checkpoint(path), Path(path))))
    found.append(("float", trained))
    return found


def build_exporter(cfg: DictConfig):
    """The ``export`` config's exporter (its settings checked), or None without one."""
    export_cfg = cfg.get("export")
    return instantiate(export_cfg, "export") if export_cfg and "_target_" in export_cfg else None


def export_after_training(cfg: DictConfig, trained: nn.Module, dm, run_dir: Path, extra: dict) -> dict:
    """Writes ``export/model<suffix>`` in ``run_dir``; returns ``export/...`` fields for metrics.json."""
    exporter = build_exporter(cfg)
    out = Path(run_dir) / "export"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"model{exporter.suffix}"
    # written under a hidden name and renamed when complete: an interrupted or failed export
    # leaves no half-written model.* (and no empty export/) behind
    partial = out / f".partial-model{exporter.suffix}"
    example, _ = next(iter(dm.test_dataloader()))
    axes = dynamic_axes.requested(dm.preprocess.kind)  # sequences (B, T, F): T free too
    errors = []
    try:
        for kind, net in candidates(trained, extra):
            wrapped = with_normalization(net, dm)
            try:
                written = exporter.write(wrapped, example[:2], partial, axes)
            except Exception as e:  # a format that cannot hold this model: try the next one
                errors.append(f"{kind}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                continue
            partial.replace(path)
            if errors:  # said once the file is written, naming what it holds instead
                log.warning("%s", fell_back(exporter.name, errors, kind, extra.get("compress/method")))
            return _verified(exporter, kind, wrapped, path, written, dm)
    finally:
        partial.unlink(missing_ok=True)
        if not any(out.iterdir()):
            out.rmdir()
    raise RuntimeError(f"export={exporter.name} failed for every model: {'; '.join(errors)}")


def fell_back(format_name: str, errors: list[str], kind: str, method: str | None) -> str:
    """The warning for an export that wrote the ``kind`` model because ``format_name`` could not hold
    the ones before it (``errors``: ``"compressed: TorchExportError: ..."``), with the format that keeps
    a quantized model: TorchScript holds torch's int8 kernels, which ONNX's exporter refuses."""
    refused = errors[0].split(":", 1)[0]
    reason = errors[0].split(":", 2)[1].strip()
    text = (f"export={format_name} cannot hold the {refused} model ({reason}), so the {kind} model was exported "
            f"instead (metrics.json export/model: {kind})")
    if refused == "compressed" and method == "quantize" and format_name != TorchScriptExport.name:
        text += (f"; the compressed model's int8 weights are in compress/artifact, and export={TorchScriptExport.name} "
                 f"exports that model itself")
    return text + "."


def _verified(exporter, kind: str, wrapped: nn.Module, path: Path, written: dict, dm) -> dict:
    """The ``export/...`` fields of a written file, with the agreement check when asked for."""
    fields = {"export/format": exporter.name, "export/path": str(path), "export/model": kind,
              "export/size_bytes": path.stat().st_size, **{f"export/{k}": v for k, v in written.items()}}
    if exporter.check:
        fields.update({f"export/{k}": v for k, v in exporter.verify(path, wrapped, dm).items()})
    log.info("exported the %s model to %s", kind, path)
    return fields
