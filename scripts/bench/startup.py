"""Case 3, start-up: ``python -m litlab.train`` to its first training step vs ``import lightning``.

Method: the parent notes ``time.time()`` just before starting each child; the child prints
``time.time()`` at milestones. For litlab these come from ``bench.timing.FirstStepStamp``,
added on the command line like any callback (``+callbacks.first_step._target_=...``), which
ends the process at the first training batch; the bare import prints once it is done. Both
figures therefore include interpreter start and exclude interpreter teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import alternate, median, record

SCRIPTS = Path(__file__).resolve().parents[1]
NAME = "startup_first_step_vs_import_lightning"
TARGET = 1.5
"""litlab's first training step / ``import lightning``: at most this."""
IMPORT = "import {module}, time; print('BENCH_STAMP first_step', f'{{time.time():.6f}}', flush=True)"


def targets(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The comparison of case 3 that carries a target, as ``(name, unit, baseline, target)``: what a
    crash of the case reports as missed, instead of losing it."""
    return [(NAME, "s (lower is better)", "import lightning", f"ratio <= {TARGET}")]


def timed_child(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Seconds from launching ``cmd`` to each ``BENCH_STAMP`` line it prints."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    stamps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_STAMP "):
            _, name, t = line.split()
            stamps[name] = float(t) - start
    if "first_step" not in stamps:
        raise RuntimeError(f"{' '.join(cmd)} printed no first-step stamp (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return stamps


def timed_error(cmd: list[str], cwd: Path) -> float:
    """Seconds from launching ``cmd``, a command line with a mistake in it, to its exit (which must
    be the one-paragraph error's status 2)."""
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.time() - start
    if proc.returncode != 2:
        raise RuntimeError(f"{' '.join(cmd)} should fail with exit status 2, got {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def run(work: Path, tiny: bool) -> list[dict]:
    """All records of case 3."""
    repeats, warmup = (1, 0) if tiny else (3, 1)
    work.mkdir(parents=True, exist_ok=True)
    litlab_cmd = [sys.executable, "-m", "litlab.train", f"paths.data_dir={work / 'data'}",
                  f"paths.log_dir={work / 'startup-runs'}", "+callbacks.first_step._target_=bench.timing.FirstStepStamp"]
    stamps: dict[str, list[dict]] = {"litlab": [], "lightning": [], "litlab_import": []}

    def child(name, cmd):
        def go():
            s = timed_child(cmd, work)
            stamps[name].append(s)
            return s["first_step"]
        return go

    children = {"litlab": child("litlab", litlab_cmd),
                "lightning": child("lightning", [sys.executable, "-c", IMPORT.format(module="lightning")])}
    if not tiny:
        children["litlab_import"] = child("litlab_import", [sys.executable, "-c", IMPORT.format(module="litlab.training")])
        # a misspelt key: reported before torch and Lightning are imported
        children["config_error"] = lambda: timed_error([*litlab_cmd, "trainer.max_epoch=3"], work)
    values = alternate(children, repeats, warmup)
    runs = stamps["litlab"][-repeats:]
    built, fit = median([s["built"] for s in runs]), median([s["fit"] for s in runs])
    first = median(values["litlab"])
    note = (f"median milestones: imports+config+data {built:.2f}s, trainer built {fit:.2f}s, "
            f"first step {first:.2f}s (sanity validation included)")
    r = record(NAME, "s (lower is better)", first, "import lightning",
               median(values["lightning"]), target=f"ratio <= {TARGET}", note=note, samples=values)
    r["met"] = r["ratio"] is not None and r["ratio"] <= TARGET
    if tiny:
        return [r]
    imp = record("startup_import_litlab_training_vs_import_lightning", "s (lower is better)",
                 median(values["litlab_import"]), "import lightning", median(values["lightning"]),
                 note="importing litlab.training, the training code, alone (Hydra, Lightning, torchvision...)")
    error = record("startup_config_error_vs_import_lightning", "s (lower is better)", median(values["config_error"]),
                   "import lightning", median(values["lightning"]),
                   note="python -m litlab.train with a misspelt key (trainer.max_epoch=3) until its one-paragraph "
                        "error and exit, teardown included")
    return [r, imp, error]
