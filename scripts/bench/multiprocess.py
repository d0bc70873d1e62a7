"""Case 4, multi-process: ``trainer=ddp_cpu`` with 2 processes vs 1, as scaling efficiency.

Both run the real CLI (``python -m litlab.train``) in a subprocess with one compute thread per
process (``OMP_NUM_THREADS=1``), so 2 processes use 2 cores where 1 process uses 1: the
efficiency is ``rate(2 processes) / (2 x rate(1 process))`` at the same per-process batch.
The rates come from ``bench.timing.EpochTimer`` (rank 0, samples counted over all ranks). Tiny
mode checks the plumbing only: its 1-process run trains in the benchmark's own process.
An all-reduce of the model's gradient size is timed separately to show compute dominates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.common import CONF_DIR, alternate, median, record, skipped
from bench.timing import steady_rate

SCRIPTS = Path(__file__).resolve().parents[1]
NAME = "ddp_cpu_2proc_scaling"
TARGET = 0.8
"""Scaling efficiency, rate(2 processes) / (2 x rate(1)): at least this."""


def workload(work: Path, tiny: bool) -> list[str]:
    """A conv net heavy enough that a step's compute dwarfs its gradient all-reduce."""
    shape = "[3,16,16]" if tiny else "[3,32,32]"
    return ["data=synthetic", f"data.shape={shape}", "data.num_train=2048", "data.num_val=128", "data.num_test=128",
            "model=cnn", "model.net.channels=[64,128]", "data.batch_size=64", "test=false", "logger=csv",
            f"trainer.max_epochs={2 if tiny else 3}", f"+trainer.limit_train_batches={2 if tiny else 25}",
            "+trainer.limit_val_batches=1", f"paths.data_dir={work / 'data'}", f"paths.log_dir={work / 'ddp-runs'}",
            "+callbacks.bench_timer._target_=bench.timing.EpochTimer"]


def run_cli(overrides: list[str], work: Path) -> float:
    """Steady-state samples/s of one CLI run."""
    with tempfile.NamedTemporaryFile(suffix=".json", dir=work, delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "BENCH_TIMER_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "litlab.train", *overrides], cwd=work, capture_output=True,
                          text=True, env=env, timeout=900)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"litlab.train {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
        return steady_rate([tuple(e) for e in json.loads(out.read_text())])
    finally:
        out.unlink(missing_ok=True)


def run_here(overrides: list[str], work: Path) -> float:
    """Steady-state samples/s of ``run_cli``'s run of a single process, trained in this process (tiny
    mode: its plumbing, the CLI, is the DDP run's; its threads are this process's)."""
    from bench.common import compose_cfg, quiet
    from bench.timing import EpochTimer
    from litlab.training import train

    with quiet(work / "runs.log"):
        train(compose_cfg(overrides, work / "ddp-runs" / "one"))
    return steady_rate(EpochTimer.latest.epochs)


def _allreduce_worker(rank: int, port: int, numel: int, rounds: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    t = torch.ones(numel)
    times = []
    for _ in range(rounds):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - start)
    if rank == 0:
        Path(out).write_text(json.dumps(sorted(times)[len(times) // 2]))
    dist.destroy_process_group()


def allreduce_seconds(numel: int, rounds: int = 20) -> float:
    """Median time of one gloo all-reduce of ``numel`` float32 values between 2 processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.json"
        mp.spawn(_allreduce_worker, args=(port, numel, rounds, str(out)), nprocs=2, join=True)
        return float(json.loads(out.read_text()))


def gradient_numel(work: Path, tiny: bool) -> int:
    """Parameters of the workload's net, built the way litlab builds it."""
    from bench.common import compose_cfg, quiet
    from litlab.build import build_data, build_model

    cfg = compose_cfg([o for o in workload(work, tiny) if not o.startswith("+callbacks")], work / "runs" / "ddp-numel")
    with quiet(work / "runs.log"):
        dm = build_data(cfg)
        return sum(p.numel() for p in build_model(cfg.model, dm.input_shape, dm.num_classes).parameters())


def targets(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The comparison of case 4 that carries a target, as ``(name, unit, baseline, target)``: what a
    crash of the case reports as missed, instead of losing it."""
    return [(NAME, "samples/s", "1 process x 2", f"ratio >= {TARGET}")]


def run(work: Path, tiny: bool) -> list[dict]:
    """The record of case 4 (skipped while ``conf/trainer/ddp_cpu.yaml`` does not exist)."""
    if not (CONF_DIR / "trainer" / "ddp_cpu.yaml").is_file():
        return [skipped(NAME, "samples/s", "1 process x 2", "conf/trainer/ddp_cpu.yaml is not there yet; "
                        "the case runs trainer=ddp_cpu trainer.devices=2 once it is", target=f"ratio >= {TARGET}")]
    repeats, warmup = (1, 0) if tiny else (3, 0)
    base = workload(work, tiny)
    single = [*base, "trainer=cpu", "trainer.devices=1"]

    def side_by_side() -> float:
        """Two independent single-process runs at once: what this machine gives two processes
        that never talk to each other (shared caches, memory bandwidth, host scheduling)."""
        with ThreadPoolExecutor(2) as pool:
            return sum(pool.map(lambda _: run_cli(single, work), range(2)))

    def two() -> float:
        return run_cli([*base, "trainer=ddp_cpu", "trainer.devices=2"], work)

    if tiny:  # the plumbing, not a measurement: three interpreter start-ups less, as the 1-process
        # run trains in this process and the side-by-side pair is not run (taken as 2 x one)
        values = alternate({"two": two, "one": lambda: run_here(single, work)}, repeats, warmup)
        values["side_by_side"] = [2 * v for v in values["one"]]
    else:
        values = alternate({"two": two, "one": lambda: run_cli(single, work), "side_by_side": side_by_side},
                           repeats, warmup)
    one = median(values["one"])
    r = record(NAME, "samples/s", median(values["two"]), "1 process x 2", 2 * one if one else None,
               target=f"ratio >= {TARGET}", samples=values)
    step_s = 64 / one if one else float("nan")
    if tiny:  # two more interpreter start-ups; the plumbing is what tiny mode checks
        r["note"] = (f"tiny mode: 1 process in the benchmark's own; per-process batch 64; step {step_s * 1e3:.0f} ms; "
                     f"all-reduce not timed")
    else:
        reduce_s = allreduce_seconds(gradient_numel(work, tiny))
        ratio = step_s / reduce_s if reduce_s > 0 else float("inf")
        r["samples"]["compute_to_allreduce"] = ratio
        r["note"] = (f"1 thread per process; per-process batch 64; step {step_s * 1e3:.0f} ms vs all-reduce "
                     f"{reduce_s * 1e3:.2f} ms ({ratio:.0f}x)")
    r["met"] = r["ratio"] is not None and r["ratio"] >= TARGET
    side = median(values["side_by_side"])
    ceiling = side / (2 * one) if one else float("nan")
    c = record(f"{NAME}_vs_two_independent", "samples/s", median(values["two"]), "2 independent processes", side,
               samples={"side_by_side_over_2x_one": ceiling},
               note=f"informational: two unconnected 1-process runs side by side reach {ceiling:.2f} of 2 x one "
                    f"process on this machine; the ratio is what DDP itself costs"
                    + (" (tiny mode: not run, taken as 2 x one process)" if tiny else ""))
    return [r, c]
