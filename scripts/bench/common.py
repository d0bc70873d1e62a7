"""Shared parts of the benchmark: composing litlab configs, alternating runs, result records."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

import litlab

CONF_DIR = Path(litlab.__file__).resolve().parent / "conf"
TIMER = "+callbacks.bench_timer._target_=bench.timing.EpochTimer"


def compose_cfg(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config of ``python -m litlab.train *overrides``, writing its run files to ``run_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(run_dir.parent)
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@contextlib.contextmanager
def quiet(log_file: Path):
    """Sends the runs' stdout (epoch lines, summaries) to ``log_file`` and mutes Lightning's
    info messages, the same for every contender. stdout is then not a terminal, so litlab's
    progress callback takes its non-terminal path (one line per epoch)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    names = ["lightning.pytorch", "lightning.fabric", "litlab"]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with open(log_file, "a") as f, contextlib.redirect_stdout(f), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def scratch_run(run: Callable[[Path], float], run_dir: Path) -> Callable[[], float]:
    """``run(run_dir)`` in a folder that is empty before and removed after: only the rate it
    returns is kept (a round's checkpoints would otherwise pile up, gigabytes over a full run)."""
    def go() -> float:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            return run(run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    return go


def alternate(runs: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Calls each run ``warmup`` times untimed, then ``repeats`` rounds, rotating the order each
    round so that no contender always goes first or follows the same neighbour."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    values: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            values[name].append(runs[name]())
    return values


def paired_ratio(values: list[float], baseline: list[float]) -> float | None:
    """Median over rounds of ``values[r] / baseline[r]``: each ratio compares two runs made within
    seconds of each other, so a change in the machine's speed between rounds cancels out, which a
    ratio of the two medians (possibly from different rounds) does not."""
    return median([v / b for v, b in zip(values, baseline) if v == v and b == b and b])


def median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None and v == v]
    return statistics.median(clean) if clean else None


def record(name: str, unit: str, value: float | None, baseline: str, baseline_value: float | None,
           target: str | None = None, met: bool | None = None, note: str = "", skipped: str | None = None,
           samples: dict | None = None, paired: float | None = None) -> dict:
    """One comparison in the JSON output; ``ratio`` is ``litlab / baseline_value`` (the two
    medians), ``paired_ratio`` the median of the rounds' own ratios (``paired``, from
    :func:`paired_ratio`) where the case has rounds of both contenders, else None."""
    ratio = value / baseline_value if value is not None and baseline_value else None
    return {"name": name, "unit": unit, "litlab": value, "baseline": baseline, "baseline_value": baseline_value,
            "ratio": ratio, "paired_ratio": paired, "target": target, "met": met, "note": note,
            "skipped": skipped, "samples": samples or {}}


def skipped(name: str, unit: str, baseline: str, reason: str, target: str | None = None) -> dict:
    return record(name, unit, None, baseline, None, target=target, skipped=reason)


def failed(name: str, unit: str, baseline: str, reason: str, target: str | None = None) -> dict:
    """The record of a comparison whose case crashed: skipped with the reason, and its target, if
    it has one, missed (``met`` false): a crash must neither drop a target nor leave it unjudged."""
    return record(name, unit, None, baseline, None, target=target, met=False if target else None, skipped=reason)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the numbers were measured on."""
    import lightning

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_model(), "cores": cores, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "litlab": litlab.__version__, "platform": platform.platform(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info
