"""ONNX and TorchScript export with normalization inside; onnxruntime agrees with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from litlab.compression import artifacts
from litlab.compression.export import with_normalization
from litlab.errors import LitlabError
from litlab.checkpoint_files import load_checkpoint
from litlab.training import train


def test_onnx_of_pruned_model_agrees_with_pytorch(tiny_cfg):
    cfg = tiny_cfg(["model=mlp", "compress=prune", "compress.finetune.epochs=1", "export=onnx"])
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["export/model"] == "compressed"
    assert metrics["export/agreement"] >= 0.99
    # the same check done here, independently: raw test batches in, argmax out
    from litlab.build import build_data

    dm = build_data(cfg)
    artifact = Path(metrics["compress/artifact"])
    net = with_normalization(artifacts.load_net(load_checkpoint(artifact), artifact), dm)
    session = ort.InferenceSession(metrics["export/path"], providers=["CPUExecutionProvider"])
    same = n = 0
    for x, _ in dm.test_dataloader():
        onnx_pred = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].argmax(1)
        with torch.no_grad():
            same += int((onnx_pred == net(x).argmax(1).numpy()).sum())
        n += len(x)
    assert same / n >= 0.99


def test_torchscript_of_int8_lstm(tiny_cfg):
    cfg = tiny_cfg(["data=synthetic_seq", "data.shape=[8,3]", "model=lstm", "model.net.hidden_size=16",
                    "compress=quantize", "export=torchscript"])
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["export/model"] == "compressed" and metrics["export/agreement"] >= 0.99
    assert metrics["compress/after/params"] > 0


def test_export_without_compression(tiny_cfg):
    cfg = tiny_cfg(["model=cnn", "model.net.channels=[4]", "export=onnx"])
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["export/model"] == "float" and metrics["export/agreement"] >= 0.99
    assert np.isfinite(metrics["export/size_bytes"])


@pytest.mark.parametrize("opset", ["99", "abc", "true"])
def test_a_bad_opset_fails_before_training(tiny_cfg, opset):
    cfg = tiny_cfg(["model=mlp", "export=onnx", f"export.opset={opset}"])
    with pytest.raises(LitlabError, match=r"export\.opset must be an ONNX opset from 7 to \d+"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.parametrize("opset", [17, 18])
def test_the_written_opset_is_recorded(tiny_cfg, opset):
    """torch converts its opset-18 graph to the asked opset; where it cannot, it keeps 18 and only
    warns, which litlab records instead of leaving the file's opset unsaid."""
    import onnx

    cfg = tiny_cfg(["model=mlp", "export=onnx", f"export.opset={opset}"])
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    written = {o.domain: o.version for o in onnx.load(metrics["export/path"]).opset_import}[""]
    assert metrics["export/opset"] == written == opset


def test_an_opset_the_exporter_cannot_reach_is_recorded_and_warned(tiny_cfg, caplog):
    """The CNN's graph does not convert below opset 18: the file keeps 18, and the run says so."""
    cfg = tiny_cfg(["model=cnn", "model.net.channels=[4]", "export=onnx", "export.opset=13"])
    with caplog.at_level("INFO"):
        train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["export/opset"] == 18 and metrics["export/agreement"] >= 0.99
    assert "export.opset=13: the exporter could not convert this model to it and wrote opset 18" in caplog.text
    # and only that: the exporter's own INFO lines and the traceback of its failed conversion are kept quiet
    exporter = [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir", "torch.onnx"))]
    assert exporter == [] and "Traceback" not in caplog.text


def test_torchscript_of_a_pixel_model_takes_uint8_and_float_pixels_as_eager_does(tmp_path):
    """The trace kept the uint8 branch only: float pixels in [0, 1] were divided by 255 again
    inside the file (logits off by up to 10), while eager and litlab.predict take them as they are."""
    from litlab.compression.export import TorchScriptExport
    from litlab.data.preprocess import Normalize

    torch.manual_seed(0)
    model = torch.nn.Sequential(Normalize("image", [0.5], [0.25]), torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    pixels = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    TorchScriptExport().write(model, pixels[:1], tmp_path / "m.torchscript.pt")
    loaded = torch.jit.load(str(tmp_path / "m.torchscript.pt"))
    with torch.no_grad():
        for x in (pixels, pixels.float() / 255):
            assert torch.allclose(loaded(x), model(x), atol=1e-5), x.dtype


def test_an_interrupted_export_leaves_no_partial_file(tiny_cfg, monkeypatch):
    """The file is written under a hidden name and renamed when whole: Ctrl-C in the middle of the
    exporter's write leaves neither a truncated model.onnx nor an empty export/ folder."""
    from litlab.compression.export import OnnxExport

    def write_half_then_stop(self, model, example, path, axes=None):
        Path(path).write_bytes(b"\x08\x01")  # the first bytes of a model, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(OnnxExport, "write", write_half_then_stop)
    cfg = tiny_cfg(["model=mlp", "export=onnx"])
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "best.ckpt").exists()  # training itself finished
    assert not (run_dir / "export").exists()


def test_a_complete_export_leaves_only_the_model(tiny_cfg):
    cfg = tiny_cfg(["model=mlp", "export=torchscript"])
    train(cfg)
    assert [p.name for p in (Path(cfg.paths.output_dir) / "export").iterdir()] == ["model.torchscript.pt"]


def test_the_exported_float_model_has_the_best_checkpoints_weights(tmp_path):
    """Export took ``model.net`` as it was: the best weights only when the run had tested them (the
    test loads best.ckpt into it), the last epoch's with ``test=false``, while compression started
    from best.ckpt either way."""
    from types import SimpleNamespace

    from litlab.compression.artifacts import trained_net
    from litlab.compression.export import candidates

    torch.manual_seed(0)
    best = torch.nn.Linear(4, 3)
    torch.save({"state_dict": {f"net.{k}": v for k, v in best.state_dict().items()}, "litlab": {}},
               tmp_path / "best.ckpt")
    model = SimpleNamespace(net=torch.nn.Linear(4, 3))  # the last epoch's weights, other than the best
    (kind, net), = candidates(trained_net(model, {"best_ckpt": str(tmp_path / "best.ckpt")}), {})
    assert kind == "float" and torch.equal(net.weight, best.weight) and torch.equal(net.bias, best.bias)
    assert not torch.equal(model.net.weight, best.weight)  # the run's own net is left as it was
