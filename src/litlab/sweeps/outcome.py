"""How a sweep's jobs ended, read from their ``metrics.json`` once the sweep is over.

The jobs may run in this process (Hydra's basic launcher, Optuna) or in others (submitit, SLURM),
so their run folders are what is counted, not this process's own bookkeeping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# the statuses of the sweep that just ended in this process, or None before any
last_sweep: dict[str, int] | None = None


def job_statuses(sweep_dir: Path) -> dict[str, int]:
    """How many jobs under ``sweep_dir`` ended with each ``status`` (a job without a readable
    ``metrics.json`` counts as ``unknown``)."""
    counts: dict[str, int] = {}
    jobs = {p.parent.parent for p in sweep_dir.glob("**/.hydra/config.yaml")}
    jobs |= {p.parent for p in sweep_dir.glob("**/metrics.json")}
    for job in sorted(jobs):
        try:
            status = str(json.loads((job / "metrics.json").read_text()).get("status", "unknown"))
        except (OSError, ValueError):
            status = "unknown"
        counts[status] = counts.get(status, 0) + 1
    return counts


class SweepOutcome(Callback):
    """Hydra callback (conf/hydra/default.yaml): after a sweep, counts its jobs by status."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep
        last_sweep = job_statuses(Path(config.hydra.sweep.dir))
