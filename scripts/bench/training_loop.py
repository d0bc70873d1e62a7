"""Case 1, training-loop overhead: litlab vs a hand-written loop vs plain Lightning.

Throughput is measured in this process, alternating the contenders (see ``common.alternate``);
peak memory in a fresh subprocess per contender, since a process's peak cannot be shared (tiny
mode, which checks the plumbing only: the probe's command line in this process).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from bench import private_memory
from bench.common import alternate, median, paired_ratio, quiet, record, scratch_run
from bench.contenders import CONTENDERS, TrainSpec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"
# litlab/raw and litlab/Lightning targets per workload (2-core CPU)
RAW_TARGET = {"cnn_digits": 1.0, "mlp_digits": 0.95, "resnet18_synthetic": 0.98}
LIGHTNING_TARGET = 1.0
MEMORY_TARGET = 1.1
"""Peak memory: litlab / raw at most this (glibc's mmap threshold pinned)."""
MEMORY_UNIT = "MiB (peak private RSS delta)"


def specs(tiny: bool) -> list[TrainSpec]:
    """The three workloads of the brief (tiny mode: the MLP, for a few steps)."""
    synth = ["model=resnet18", "data=synthetic", "data.num_train=1024", "data.num_val=256", "data.num_test=128"]
    if tiny:  # one workload through every contender and the memory probe: the plumbing, in seconds
        return [TrainSpec("mlp_digits", ["model=mlp", "data=digits"], epochs=2, limit_train=3, limit_val=1)]
    # digits: 10 epochs, so each run's timed window (9 epochs) is ~0.2 s (MLP) to ~0.5 s (CNN)
    return [TrainSpec("cnn_digits", ["model=cnn", "data=digits", "data.batch_size=64"], epochs=10),
            TrainSpec("mlp_digits", ["model=mlp", "data=digits", "data.batch_size=64"], epochs=10),
            TrainSpec("resnet18_synthetic", synth + ["data.shape=[3,32,32]", "data.batch_size=128"],
                      epochs=2, limit_train=3, limit_val=1)]


def targets(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The comparisons of case 1 that carry a target, as ``(name, unit, baseline, target)``: what a
    crash of the case reports as missed, instead of losing them with its other records."""
    found = []
    for spec in specs(tiny):
        found += [(f"train_{spec.name}_vs_raw", "samples/s", "raw", f"paired ratio >= {RAW_TARGET[spec.name]}"),
                  (f"train_{spec.name}_vs_lightning", "samples/s", "lightning",
                   f"paired ratio >= {LIGHTNING_TARGET}"),
                  (f"peak_memory_{spec.name}_vs_raw", MEMORY_UNIT, "raw", f"ratio <= {MEMORY_TARGET}")]
    return found


def memory_spec(spec: TrainSpec) -> TrainSpec:
    """The workload of the memory probes: at most 5 epochs (the peak comes in the first epochs and
    at the evaluation report's, every 5th; more epochs only make each probe process slower)."""
    return replace(spec, epochs=min(spec.epochs, 5))


def throughput(spec: TrainSpec, work: Path, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Steady-state samples/s of every contender, ``repeats`` alternating rounds."""
    data_dir = work / "data"

    def runner(name):
        return scratch_run(lambda run_dir: CONTENDERS[name](spec, data_dir, run_dir), work / "runs" / f"{spec.name}-{name}")

    with quiet(work / "runs.log"):
        return alternate({n: runner(n) for n in CONTENDERS}, repeats, warmup)


def _run_dir(spec: TrainSpec, contender: str, work: Path) -> Path:
    return work / "runs" / f"{spec.name}-{contender}-mem"


def _one_run(spec: TrainSpec, contender: str, work: Path) -> None:
    with quiet(work / "runs.log"):
        CONTENDERS[contender](spec, work / "data", _run_dir(spec, contender, work))


def probe_modules(spec: TrainSpec, contender: str, work: Path) -> dict:
    """Runs in a fresh process: one run of ``contender``; the modules it imported, in order."""
    before = set(sys.modules)
    _one_run(spec, contender, work)
    return {"modules": [m for m in sys.modules if m not in before and not m.startswith("bench")]}


def probe_memory(spec: TrainSpec, contender: str, work: Path, modules: list[str]) -> dict:
    """Runs in a fresh process: one run of ``contender``; its peak private memory (see
    ``private_memory``). The modules the same run imported in an earlier process
    (``probe_modules``) are imported first and every shared-library page is mapped in, so the
    figure is data, model, optimizer state, activations and framework state, not code."""
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    shutil.rmtree(_run_dir(spec, contender, work), ignore_errors=True)  # each round starts afresh
    try:
        return {**private_memory.measure(lambda: _one_run(spec, contender, work)), "modules_preloaded": len(modules)}
    finally:
        shutil.rmtree(_run_dir(spec, contender, work), ignore_errors=True)


# glibc's mmap threshold, fixed at its initial value. By default glibc raises the threshold to
# the size of any mmapped block that is freed, after which blocks of that size come from the heap
# and may stay there when freed: whether a run's 0.5 MiB activations end up counted once more
# then depends on the order of frees, and the CNN's peak varied by 1-2 MiB from process to
# process whatever the code. Setting the threshold turns that adjustment off for every contender.
PINNED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def memory(spec: TrainSpec, work: Path, tiny: bool, repeats: int = 1, pinned: bool = True) -> dict[str, dict]:
    """``probe_memory`` of each contender in its own subprocess (after ``probe_modules`` in
    another), ``repeats`` rounds in rotating order; each contender's record is its median round,
    with every round's figure in ``rounds_mib``. Tiny mode checks the plumbing only, not a
    measurement: one ``probe_modules`` (litlab's, in this process) for all three, and the three
    ``probe_memory`` one after another, by the probe's command line run in this process
    (``probe_command``; each from a trimmed heap and a reset peak, so each figure is its own
    run's, though not a fresh process's). ``pinned``: with glibc's mmap threshold fixed
    (``PINNED_MMAP_THRESHOLD``; tiny mode: not, as no process starts); else with glibc's defaults."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)  # the caller's own setting never leaks in
    if pinned:
        env.update(PINNED_MMAP_THRESHOLD)
    listed = work / "mem-modules"
    listed.mkdir(parents=True, exist_ok=True)

    def run_probe(contender, phase):
        args = ["--work-dir", str(work), "--probe-memory", f"{spec.name}:{contender}:{phase}",
                *(["--tiny"] if tiny else [])]
        code, stdout, stderr = probe_command(args, env, here=tiny)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if code != 0 or not lines:
            raise RuntimeError(f"memory probe {spec.name}:{contender}:{phase} failed:\n{stderr[-3000:]}")
        return json.loads(lines[-1])

    def list_modules(contender):
        (listed / f"{spec.name}-{contender}.json").write_text(json.dumps(run_probe(contender, "modules")))

    contenders = [c for c in CONTENDERS if c != "raw_tuned"]  # memory: the three of the brief
    if tiny:  # six interpreter start-ups less: the modules of litlab's run are listed in this process
        # (which has most of them imported already), and one probe, also in this process, measures
        # the three contenders one after another, each preloading that list
        modules = json.dumps(probe_modules(memory_spec(spec), "litlab", work))
        for c in contenders:
            (listed / f"{spec.name}-{c}.json").write_text(modules)
        return run_probe(",".join(contenders), "memory")
    for c in contenders:
        list_modules(c)
    rounds: dict[str, list[dict]] = {c: [] for c in contenders}
    for r in range(repeats):
        for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            rounds[c].append(run_probe(c, "memory")[c])
    result = {}
    for c, probes in rounds.items():
        probes.sort(key=lambda p: p["delta_mib"])
        result[c] = {**probes[len(probes) // 2], "rounds_mib": [p["delta_mib"] for p in probes]}
    return result


def probe_command(args: list[str], env: dict[str, str], here: bool) -> tuple[int, str, str]:
    """``benchmark.py ARGS`` (a ``--probe-memory`` line) in a fresh process with ``env``: its exit
    status, stdout and stderr. ``here`` (tiny mode): the same command line through the script's
    ``main`` in this process, whose errors raise as they are; an interpreter start-up, with torch
    and Lightning imported again (~10 CPU seconds), is most of what a tiny probe costs."""
    if here:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = runpy.run_path(str(SCRIPT))["main"](args)
        return code, out.getvalue(), ""
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr


def run(work: Path, tiny: bool) -> list[dict]:
    """All records of case 1."""
    records = []
    for spec in specs(tiny):
        # the first epoch of every run is the in-run warm-up; a whole warm-up round is only
        # affordable for the small models
        repeats, warmup = (1, 0) if tiny else (9, 1) if spec.limit_train is None else (3, 0)
        values = throughput(spec, work, repeats, warmup)
        mid = {n: median(v) for n, v in values.items()}
        raw_t = RAW_TARGET[spec.name]
        for base, target in (("raw", raw_t), ("lightning", LIGHTNING_TARGET)):
            # judged on the paired ratio: rounds in which the machine ran slower or faster (this VM's
            # speed moves by ~20 % within seconds) count for both contenders alike
            r = record(f"train_{spec.name}_vs_{base}", "samples/s", mid["litlab"], base, mid[base],
                       target=f"paired ratio >= {target}", samples=values,
                       paired=paired_ratio(values["litlab"], values[base]))
            r["met"] = r["paired_ratio"] is not None and r["paired_ratio"] >= target
            records.append(r)
        records.append(record(f"train_{spec.name}_vs_raw_tuned", "samples/s", mid["litlab"], "raw_tuned",
                              mid["raw_tuned"], samples=values, paired=paired_ratio(values["litlab"], values["raw_tuned"]),
                              note="informational: the hand-written loop with every fast path litlab applies (channels-last, fused optimizer, batched fetch, no per-step sync)"))
        records += memory_records(spec, work, tiny)
    return records


def memory_records(spec: TrainSpec, work: Path, tiny: bool) -> list[dict]:
    """Peak memory against raw (the target) and Lightning, glibc's mmap threshold pinned; for the
    digits workloads also against raw under glibc's defaults (informational)."""
    small = not tiny and spec.limit_train is None
    records = []
    for pinned in (True, False) if small else (True,):
        mem = memory(spec, work, tiny, repeats=3 if small else 1, pinned=pinned)
        excluded = all(m["code_pages_excluded"] for m in mem.values())
        how = ("shared-library code pages are mapped in first and not counted" if excluded else
               "this kernel could not map code pages in first (MADV_POPULATE_READ), so they are counted")
        allocator = "glibc's mmap threshold pinned at 128 KiB" if pinned else "glibc's default (adaptive) mmap threshold"
        for base in ("raw", "lightning") if pinned else ("raw",):
            name = f"peak_memory_{spec.name}_vs_{base}" + ("" if pinned else "_glibc_default")
            r = record(name, MEMORY_UNIT, mem["litlab"]["delta_mib"], base, mem[base]["delta_mib"],
                       target=f"ratio <= {MEMORY_TARGET}" if base == "raw" and pinned else None,
                       samples={k: v for k, v in mem.items()},
                       note=f"peak private (anonymous) resident memory during one run above the resident size "
                            f"just before it; {how}; {allocator}")
            if base == "raw" and pinned:
                r["met"] = r["ratio"] is not None and r["ratio"] <= MEMORY_TARGET
            records.append(r)
    return records


def probe_main(arg: str, work: Path, tiny: bool) -> None:
    """``--probe-memory NAME:CONTENDER:PHASE``: prints ``probe_modules``' (PHASE ``modules``) or
    ``probe_memory``'s (``memory``) result as one JSON line; for ``memory``, CONTENDER may be a
    comma-separated list (measured one after another) and the line maps each to its result."""
    name, contender, phase = arg.split(":")
    spec = memory_spec(next(s for s in specs(tiny) if s.name == name))
    if phase == "modules":
        print(json.dumps(probe_modules(spec, contender, work)))
        return
    results = {}
    for c in contender.split(","):
        modules = json.loads((work / "mem-modules" / f"{name}-{c}.json").read_text())["modules"]
        results[c] = probe_memory(spec, c, work, modules)
    print(json.dumps(results))
