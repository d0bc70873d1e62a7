"""Every method end to end through litlab.train: report fields, files on disk, eval of the artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from litlab.checkpoint_files import load_checkpoint
from litlab.compression import artifacts
from litlab.compression.measure import count_params
from litlab.evaluation import evaluate
from litlab.training import train

FIELDS = ("test_acc", "test_loss", "params", "nonzero_params", "size_bytes", "latency_ms_batch1",
          "latency_ms_test_batch")

CASES = {
    "prune": ["model=mlp", "compress=prune", "compress.finetune.epochs=2"],
    "prune_structured": ["model=cnn", "model.net.channels=[8,16]", "model.net.hidden_size=16",
                         "compress=prune_structured", "compress.finetune.epochs=1"],
    "quantize": ["model=cnn", "model.net.channels=[8,16]", "model.net.hidden_size=16", "compress=quantize",
                 "compress.calibration_batches=2"],
    "distill": ["model=mlp", "compress=distill", "compress.finetune.epochs=1"],
    "lowrank": ["model=mlp", "compress=lowrank", "compress.rank=4", "compress.finetune.epochs=1"],
}


def run_compressed(tiny_cfg, overrides: list[str]) -> tuple[Path, dict, dict]:
    cfg = tiny_cfg(overrides)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    return run_dir, json.loads((run_dir / "compression.json").read_text()), json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("method", list(CASES))
def test_method_reports_and_saves(tiny_cfg, cfg_factory, method):
    run_dir, report, metrics = run_compressed(tiny_cfg, CASES[method])
    assert report["method"] == method
    for side in ("before", "after"):
        assert set(FIELDS) <= set(report[side])
        path = Path(report["artifacts"][side])
        assert report[side]["size_bytes"] == path.stat().st_size
        assert metrics[f"compress/{side}/test_acc"] == report[side]["test_acc"]
    assert report["after"]["nonzero_params"] <= report["before"]["nonzero_params"]
    # the "before" numbers are those of the tested best checkpoint
    assert report["before"]["test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    # the saved artifact alone reproduces the reported accuracy through litlab.eval
    after = Path(report["artifacts"]["after"])
    ckpt = torch.load(after, map_location="cpu", weights_only=True)
    assert "optimizer_states" not in ckpt
    eval_cfg = cfg_factory([f"ckpt_path={after}"], name=f"eval_{method}", config_name="eval")
    assert evaluate(eval_cfg)["test/acc"] == pytest.approx(report["after"]["test_acc"], abs=1e-6)
    # counting from the file gives the reported counts
    net = artifacts.load_net(load_checkpoint(after), after)
    assert count_params(artifacts.storable_state(net)) == (report["after"]["params"], report["after"]["nonzero_params"])


def test_prune_reaches_amount_and_shrinks_file(tiny_cfg):
    _, report, _ = run_compressed(tiny_cfg, ["model=mlp", "compress=prune", "compress.amount=0.8",
                                             "compress.finetune.epochs=1"])
    before, after = report["before"], report["after"]
    biases = 64 * 0 + (256 + 128 + 4)  # MLP biases are not pruned
    assert after["nonzero_params"] <= 0.2 * (before["params"] - biases) + biases + 1
    assert after["size_bytes"] < 0.45 * before["size_bytes"]  # bitmask + nonzeros, not dense zeros


def test_structured_prune_narrows_the_net(tiny_cfg):
    _, report, _ = run_compressed(tiny_cfg, CASES["prune_structured"] + ["compress.amount=0.5"])
    assert report["after"]["params"] < 0.5 * report["before"]["params"]
    recipe = load_checkpoint(report["artifacts"]["after"])["compression"]["net"]
    assert recipe["channels"] == [4, 8] and recipe["hidden_size"] == 8


def test_distill_reports_student_alone(tiny_cfg):
    _, report, metrics = run_compressed(tiny_cfg, CASES["distill"])
    extra = report["extra"]
    # the distilled student (the "after" model) is reported next to the same student trained alone
    assert extra["student_distilled_test_acc"] == report["after"]["test_acc"]
    assert 0 <= extra["student_alone_test_acc"] <= 1
    assert extra["distill_gain"] == pytest.approx(extra["student_distilled_test_acc"] - extra["student_alone_test_acc"])
    assert metrics["compress/student_alone_test_acc"] == extra["student_alone_test_acc"]
    assert metrics["compress/distill_gain"] == extra["distill_gain"]


@pytest.mark.parametrize("method", ["quantize", "prune"])
def test_artifacts_share_one_compact_layout(tiny_cfg, method):
    _, report, _ = run_compressed(tiny_cfg, CASES[method])
    for side in ("before", "after"):
        stored = torch.load(report["artifacts"][side], map_location="cpu", weights_only=True)
        # the run record is packed JSON, every tensor lives in one blob per dtype, no float64 scales
        assert set(stored) == {"format", "meta", "blobs"} and stored["format"] == artifacts.FORMAT
        assert stored["meta"].dtype == torch.uint8 and "float64" not in stored["blobs"]
        assert load_checkpoint(report["artifacts"][side])["litlab"]["data"]["num_classes"] == 4


def test_a_rebuilt_net_is_timed_in_the_trained_nets_memory_order(tiny_cfg, monkeypatch):
    # the trained CNN runs channels-last (model.channels_last=auto); the narrower net that
    # structured pruning builds must too, or its latency is compared with a handicap
    from litlab.compression import run as compress_run
    from litlab.models.speed_switches import runs_channels_last

    seen = []
    real = compress_run.figures
    monkeypatch.setattr(compress_run, "figures", lambda net, *rest: seen.append(runs_channels_last(net)) or real(net, *rest))
    run_compressed(tiny_cfg, CASES["prune_structured"])
    assert seen == [True, True]


@pytest.mark.parametrize("precision,method,export", [("64", "prune", "onnx"), ("bf16-true", "lowrank", "torchscript")])
def test_a_net_trained_in_another_dtype_is_compressed_and_exported_in_float32(tiny_cfg, precision, method, export):
    """These runs trained and tested, then failed with 'mat1 and mat2 must have the same dtype'."""
    cfg = tiny_cfg(["model=mlp", f"trainer.precision={precision}", f"compress={method}", "compress.finetune.epochs=1",
                    f"export={export}"])
    train(cfg)
    m = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert m["status"] == "completed" and m["export/agreement"] >= 0.99
    # the float32 copy classifies the test split as the trained net did (rounding may move a sample or two)
    assert m["compress/before/test_acc"] == pytest.approx(m["test/acc"], abs=0.02)


@pytest.mark.parametrize("preset", ["fdr", "limit"])
def test_the_debug_presets_cut_compression_to_their_batches(tiny_cfg, caplog, preset):
    """``debug=fdr compress=prune`` ran one batch of training and test, then fine-tuned over the
    whole training split for 8 epochs and scored the models on the whole test split."""
    import logging

    cfg = tiny_cfg([f"debug={preset}", "compress=prune", "data.batch_size=16"])
    with caplog.at_level(logging.INFO, logger="litlab.compression.finetune"):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    report = json.loads((run_dir / "compression.json").read_text())
    # the dense model is scored on the test batches Lightning's test used: the same accuracy
    assert report["before"]["test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fine-tune epoch")]
    assert len(epochs) == (1 if preset == "fdr" else 8)  # prune fine-tunes for 8 epochs


def test_a_method_that_breaks_on_the_net_fails_in_one_paragraph_and_writes_no_artifacts(tiny_cfg, monkeypatch):
    """A user's net that a method could not handle (a dynamically quantized transformer layer)
    failed after training with a traceback (exit 1) and left compressed/ half written."""
    from litlab.compression import run as compress_run
    from litlab.errors import LitlabError

    def broken(*args, **kwargs):
        raise AttributeError("'function' object has no attribute 'device'")

    monkeypatch.setattr(compress_run, "add_latencies", broken)  # after dense.pt and prune.pt were written
    cfg = tiny_cfg(CASES["prune"])
    with pytest.raises(LitlabError, match=r"^compress \(MagnitudePrune\) failed on the trained MLP: AttributeError: "
                                          r"'function' object has no attribute 'device'\. Training and test results "
                                          r"are in metrics\.json"):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / "compressed").exists() and not (run_dir / "compression.json").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0
