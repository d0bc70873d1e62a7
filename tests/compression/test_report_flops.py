"""One sample's forward FLOPs in compression's before/after report, counted or said not to be."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from litlab.checkpoint_files import load_checkpoint
from litlab.compression import artifacts, quant_backend, report
from litlab.training import train

from .test_compress_run import CASES


def _figures(flops_count, **more) -> dict:
    return {"test_acc": 0.5, "test_loss": 1.0, "params": 10, "nonzero_params": 10, "flops": flops_count,
            "size_bytes": 100, "latency_ms_batch1": 1.0, "latency_ms_test_batch": 2.0, **more}


def _training_forward_flops(net: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of a training-mode forward with gradients, counted by hand (another way than the report's)."""
    counter = FlopCounterMode(display=False)
    with counter:
        net.train()(torch.zeros(1, *shape))
    return counter.get_total_flops()


def test_the_table_says_not_counted_and_metrics_json_leaves_the_figure_out():
    before = _figures(2000)
    after = _figures(None, flops_not_counted="int8 kernels")
    rep = {"method": "quantize", "before": before, "after": after, "change": report.ratios(before, after),
           "artifacts": {"before": "dense.pt", "after": "quantize.pt"}}
    text = report.table(rep)
    assert "| flops | 2000 | not counted |" in text.splitlines()
    assert text.endswith("\n\nFLOPs after not counted: int8 kernels.")  # a paragraph, not a table row
    fields = report.metrics_fields(rep)
    assert fields["compress/before/flops"] == 2000
    assert "compress/after/flops" not in fields and not any("not_counted" in k for k in fields)
    assert fields["compress/flops_ratio"] is None and "flops_ratio" not in text
    counted = _figures(500)
    assert report.ratios(before, counted)["flops_ratio"] == 0.25
    assert "| flops | 2000 | 500 |" in report.table({**rep, "after": counted}).splitlines()


def test_flops_of_a_float_net_and_of_an_int8_one():
    from litlab.compression.measure import flops

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    assert flops(mlp, (1, 8, 8)) == {"flops": 2 * (64 * 16 + 16 * 4)}
    counted = flops(quant_backend.dynamic_int8(mlp.eval()), (1, 8, 8))
    assert counted["flops"] is None and "int8 Linear" in counted["flops_not_counted"]
    broken = flops(mlp, (3, 8, 8))  # 192 features for a Linear of 64: the count fails, the report goes on
    assert broken["flops"] is None and "RuntimeError" in broken["flops_not_counted"]


def _run(tiny_cfg, overrides):
    cfg = tiny_cfg(overrides)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    return (json.loads((run_dir / "compression.json").read_text()),
            json.loads((run_dir / "metrics.json").read_text()))


def test_distill_reports_the_teachers_and_the_students_flops(tiny_cfg):
    rep, metrics = _run(tiny_cfg, CASES["distill"] + ["trainer.enable_model_summary=true"])
    nets = {side: artifacts.load_net(load_checkpoint(rep["artifacts"][side]), rep["artifacts"][side])
            for side in ("before", "after")}
    for side, net in nets.items():
        assert rep[side]["flops"] == _training_forward_flops(net, (1, 8, 8)) > 0
        assert metrics[f"compress/{side}/flops"] == rep[side]["flops"]
    assert rep["change"]["flops_ratio"] == rep["after"]["flops"] / rep["before"]["flops"]
    # flops_per_sample is the trained (uncompressed) net's: the "before" figure, not the student's
    assert metrics["flops_per_sample"] == rep["before"]["flops"] != rep["after"]["flops"]


def test_an_int8_model_is_reported_not_counted(tiny_cfg):
    rep, metrics = _run(tiny_cfg, CASES["quantize"])
    assert rep["before"]["flops"] > 0 and metrics["compress/before/flops"] == rep["before"]["flops"]
    assert rep["after"]["flops"] is None and "int8" in rep["after"]["flops_not_counted"]
    assert "compress/after/flops" not in metrics and metrics["compress/flops_ratio"] is None
