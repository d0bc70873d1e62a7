"""ONNX and TorchScript export with normalization inside; onnxruntime agrees with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from litlab.compression import artifacts
from litlab.compression.export import with_normalization
from litlab.checkpoint_files import load_checkpoint
from litlab.experiment import train


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
