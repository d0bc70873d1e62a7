"""Case 1, training-loop overhead: litlab vs a hand-written loop vs plain Lightning.

Throughput is measured in this process, alternating the contenders (see ``common.alternate``);
peak memory in a fresh subprocess per contender, since a process's peak cannot be shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import alternate, median, quiet, record
from bench.contenders import CONTENDERS, TrainSpec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"
# litlab/raw and litlab/Lightning targets per workload (2-core CPU)
RAW_TARGET = {"cnn_digits": 1.0, "mlp_digits": 0.95, "resnet18_synthetic": 0.98}


def specs(tiny: bool) -> list[TrainSpec]:
    """The three workloads of the brief (tiny mode: the MLP, for a few steps)."""
    synth = ["model=resnet18", "data=synthetic", "data.num_train=1024", "data.num_val=256", "data.num_test=128"]
    if tiny:  # one workload through every contender and the memory probe: the plumbing, in seconds
        return [TrainSpec("mlp_digits", ["model=mlp", "data=digits"], epochs=2, limit_train=3, limit_val=1)]
    return [TrainSpec("cnn_digits", ["model=cnn", "data=digits", "data.batch_size=64"], epochs=5),
            TrainSpec("mlp_digits", ["model=mlp", "data=digits", "data.batch_size=64"], epochs=5),
            TrainSpec("resnet18_synthetic", synth + ["data.shape=[3,32,32]", "data.batch_size=128"],
                      epochs=2, limit_train=3, limit_val=1)]


def throughput(spec: TrainSpec, work: Path, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Steady-state samples/s of every contender, ``repeats`` alternating rounds."""
    data_dir = work / "data"
    counter = iter(range(10**6))

    def runner(name):
        return lambda: CONTENDERS[name](spec, data_dir, work / "runs" / f"{spec.name}-{name}-{next(counter)}")

    with quiet(work / "runs.log"):
        return alternate({n: runner(n) for n in CONTENDERS}, repeats, warmup)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def probe_memory(spec: TrainSpec, contender: str, work: Path) -> dict:
    """Runs in a fresh process: one run of ``contender``; peak resident memory above the
    resident size just before it (modules every contender may import are loaded first, so the
    figure is data, model, optimizer, activations and framework state, not code)."""
    import torch.utils.tensorboard  # noqa: F401  (lazily imported by both Lightning contenders)
    import lightning.pytorch.loggers  # noqa: F401
    import litlab.train  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    with quiet(work / "runs.log"):
        CONTENDERS[contender](spec, work / "data", work / "runs" / f"{spec.name}-{contender}-mem")
    peak = _status_kib("VmHWM")
    return {"rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024, "delta_mib": (peak - before) / 1024}


def memory(spec: TrainSpec, work: Path, tiny: bool) -> dict[str, dict]:
    """``probe_memory`` of each contender in its own subprocess; one after the other, except in
    tiny mode (a check of the plumbing, not a measurement), where they run side by side."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def start(contender):
        cmd = [sys.executable, str(SCRIPT), "--work-dir", str(work), "--probe-memory", f"{spec.name}:{contender}"]
        return subprocess.Popen(cmd + (["--tiny"] if tiny else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)

    def finish(contender, proc):
        stdout, stderr = proc.communicate(timeout=900)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"memory probe {spec.name}:{contender} failed:\n{stderr[-3000:]}")
        return json.loads(lines[-1])

    contenders = [c for c in CONTENDERS if c != "raw_tuned"]  # memory: the three of the brief
    if tiny:
        procs = {c: start(c) for c in contenders}
        return {c: finish(c, p) for c, p in procs.items()}
    return {c: finish(c, start(c)) for c in contenders}


def run(work: Path, tiny: bool) -> list[dict]:
    """All records of case 1."""
    records = []
    for spec in specs(tiny):
        # the first epoch of every run is the in-run warm-up; a whole warm-up round is only
        # affordable for the small models
        repeats, warmup = (1, 0) if tiny else (5, 1) if spec.limit_train is None else (3, 0)
        values = throughput(spec, work, repeats, warmup)
        mid = {n: median(v) for n, v in values.items()}
        raw_t = RAW_TARGET[spec.name]
        for base, target in (("raw", raw_t), ("lightning", 1.0)):
            r = record(f"train_{spec.name}_vs_{base}", "samples/s", mid["litlab"], base, mid[base],
                       target=f"ratio >= {target}", samples=values)
            r["met"] = r["ratio"] is not None and r["ratio"] >= target
            records.append(r)
        records.append(record(f"train_{spec.name}_vs_raw_tuned", "samples/s", mid["litlab"], "raw_tuned",
                              mid["raw_tuned"], samples=values,
                              note="informational: the hand-written loop with litlab's automatic speed switches"))
        mem = memory(spec, work, tiny)
        for base in ("raw", "lightning"):
            r = record(f"peak_memory_{spec.name}_vs_{base}", "MiB (peak RSS delta)", mem["litlab"]["delta_mib"],
                       base, mem[base]["delta_mib"], target="ratio <= 1.1" if base == "raw" else None,
                       samples={k: v for k, v in mem.items()},
                       note="peak resident set size during one run minus the resident size just before it")
            if base == "raw":
                r["met"] = r["ratio"] is not None and r["ratio"] <= 1.1
            records.append(r)
    return records


def probe_main(arg: str, work: Path, tiny: bool) -> None:
    """``--probe-memory NAME:CONTENDER``: prints ``probe_memory``'s result as one JSON line."""
    name, contender = arg.split(":")
    spec = next(s for s in specs(tiny) if s.name == name)
    print(json.dumps(probe_memory(spec, contender, work)))
