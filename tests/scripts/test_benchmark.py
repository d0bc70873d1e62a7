"""scripts/benchmark.py in its tiny mode: every case runs, prints its fields and writes the JSON
schema. Timings are never asserted: at this size, on a shared machine, they are noise.

The benchmark runs once per module and each test checks one part of it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tests.conftest import made_once

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SCRIPT = SCRIPTS / "benchmark.py"
RECORD_KEYS = {"name", "unit", "litlab", "baseline", "baseline_value", "ratio", "paired_ratio", "target", "met",
               "note", "skipped", "samples"}
MACHINE_KEYS = {"cpu", "cores", "torch_threads", "torch", "lightning", "litlab", "python", "cuda", "tiny"}

pytestmark = pytest.mark.slow


def _run_tiny(tmp: Path) -> None:
    """``benchmark.py --tiny`` over every case into ``tmp``: bench.json, stdout.txt and work/.

    The script's ``main`` runs in this process, which has imported torch, Lightning and litlab
    already: an interpreter start-up less than the script as a command (which
    ``test_unknown_case_is_a_usage_error`` runs). The cases start their own processes wherever a
    process is what they measure, as they do from the command line; tiny mode runs the memory
    probe's command line (``--probe-memory``) in this process too."""
    out = tmp / "bench.json"
    sys.path.insert(0, str(SCRIPTS))  # for ``bench``, as for the script itself
    try:
        spec = importlib.util.spec_from_file_location("benchmark_tiny_run", SCRIPT)
        benchmark = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(benchmark)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = benchmark.main(["--tiny", "--markdown", "--json", str(out), "--work-dir", str(tmp / "work")])
    finally:
        sys.path.remove(str(SCRIPTS))
    assert code == 0, "benchmark.py --tiny failed: its stderr, captured above, says which case and why"
    (tmp / "stdout.txt").write_text(stdout.getvalue())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """stdout and parsed JSON of ``benchmark.py --tiny`` over every case, and its work folder: one
    run for the whole session, however many test processes draw this module's tests."""
    tmp = made_once(tmp_path_factory, "bench", _run_tiny)
    return (tmp / "stdout.txt").read_text(), json.loads((tmp / "bench.json").read_text()), tmp / "work" / "tiny"


def records(result: dict, prefix: str) -> list[dict]:
    found = [r for r in result["cases"] if r["name"].startswith(prefix)]
    assert found, f"no {prefix}* records"
    return found


def test_every_record_has_the_schema_and_is_printed(tiny_run):
    stdout, result, _ = tiny_run
    assert MACHINE_KEYS <= set(result["machine"]) and result["machine"]["tiny"] is True
    for rec in result["cases"]:
        assert set(rec) == RECORD_KEYS, rec["name"]
        # a case that crashed gives "failed: ..." records (and exit status 1, which the fixture refuses)
        assert not (rec["skipped"] or "").startswith("failed"), rec["skipped"]
        assert rec["name"] in stdout
        assert f"| {rec['name']} |" in stdout  # the Markdown table
        if rec["skipped"]:
            assert rec["ratio"] is None and rec["skipped"] in stdout
            continue
        assert rec["litlab"] > 0 and rec["baseline_value"] > 0, rec
        assert rec["ratio"] == pytest.approx(rec["litlab"] / rec["baseline_value"])
        assert f"{rec['ratio']:.3g}" in stdout
        assert rec["met"] is None  # --tiny judges no target (its table says so above the header)
    assert result["tiny"] is True and "machine: cpu=" in stdout


def test_training_case_compares_with_raw_and_lightning(tiny_run):
    _, result, _ = tiny_run
    names = {r["name"] for r in records(result, "train_")}
    # tiny mode runs the MLP only; the full run adds cnn_digits and resnet18_synthetic
    assert {"train_mlp_digits_vs_raw", "train_mlp_digits_vs_lightning", "train_mlp_digits_vs_raw_tuned"} <= names
    assert all(r["unit"] == "samples/s" for r in records(result, "train_"))
    for r in records(result, "train_"):
        # judged on the median of the rounds' own ratios (one round in tiny mode)
        mine, theirs = r["samples"]["litlab"], r["samples"][r["baseline"]]
        assert r["paired_ratio"] == pytest.approx(statistics.median(a / b for a, b in zip(mine, theirs)))
        assert r["met"] is None  # tiny sizes: the ratio is not judged against its target (a full run judges it)
    memory = {r["name"]: r for r in records(result, "peak_memory_")}
    assert set(memory["peak_memory_mlp_digits_vs_raw"]["samples"]) == {"litlab", "raw", "lightning"}


def test_data_and_startup_cases_report(tiny_run):
    _, result, _ = tiny_run
    names = {r["name"] for r in records(result, "data_")}
    assert {"data_digits_png_folder_vs_tensors", "data_jpeg32_streamed_vs_tensors",
            "data_jpeg32_loader_vs_model"} <= names
    first = records(result, "startup_")[0]
    assert first["name"] == "startup_first_step_vs_import_lightning" and "first step" in first["note"]


def test_ddp_case_reports_scaling_or_why_not(tiny_run):
    _, result, _ = tiny_run
    rec, independent = records(result, "ddp_")
    assert rec["skipped"] or "all-reduce" in rec["note"]
    # the machine's own ceiling for two processes that never talk: two 1-process runs at once
    assert independent["name"] == "ddp_cpu_2proc_scaling_vs_two_independent"
    assert independent["litlab"] == rec["litlab"] and independent["baseline_value"] > 0
    assert "side by side" in independent["note"]


def test_gpu_case_is_skipped_without_cuda(tiny_run):
    _, result, _ = tiny_run
    gpu = records(result, "gpu_")
    if not torch.cuda.is_available():
        assert all(r["skipped"] == "no CUDA device on this machine" for r in gpu)


@pytest.mark.parametrize("arg", ["--cases=nope", "--cases=training,nope"])
def test_unknown_case_is_a_usage_error(arg):
    proc = subprocess.run([sys.executable, str(SCRIPT), arg], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--cases: unknown nope" in proc.stderr


def test_no_run_folder_or_checkpoint_is_left_behind(tiny_run):
    # each round's run folder is scratch: a full benchmark once left gigabytes of checkpoints
    _, _, work = tiny_run
    assert (work / "data").is_dir() and (work / "runs.log").is_file()
    assert not list(work.rglob("*.ckpt")), sorted(work.rglob("*.ckpt"))
    assert not [p.name for p in work.iterdir() if p.name in ("runs", "ddp-runs", "startup-runs")]
