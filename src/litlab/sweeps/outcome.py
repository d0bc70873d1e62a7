"""How a sweep's jobs ended, read from their ``metrics.json`` once the sweep is over.

The jobs may run in this process (Hydra's basic launcher, Optuna) or in others (submitit, SLURM),
so their run folders are what is counted, not this process's own bookkeeping.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from litlab.run_lock import recorded_status

# the statuses of the sweep that just ended in this process, or None before any
last_sweep: dict[str, int] | None = None
# the folder of the sweep that started in this process (also when it never ended), or None before any
current_sweep_dir: Path | None = None


def statuses_by_job(sweep_dir: Path) -> dict[str, str]:
    """The ``status`` of each job folder under ``sweep_dir`` (its path relative to it), in job
    order; a job without a readable ``metrics.json`` is ``unknown``."""
    jobs = {p.parent.parent for p in sweep_dir.glob("**/.hydra/config.yaml")}
    jobs |= {p.parent for p in sweep_dir.glob("**/metrics.json")}
    found = {}
    for job in sorted(jobs, key=lambda j: (len(j.parts), len(j.name), j.name)):
        try:  # a job killed before it recorded its end is "killed", not "running"
            status = str(recorded_status(job, json.loads((job / "metrics.json").read_text())) or "unknown")
        except (OSError, ValueError, AttributeError):
            status = "unknown"
        found[str(job.relative_to(sweep_dir))] = status
    return found


def job_statuses(sweep_dir: Path) -> dict[str, int]:
    """How many jobs under ``sweep_dir`` ended with each ``status`` (``statuses_by_job``)."""
    counts: dict[str, int] = {}
    for status in statuses_by_job(sweep_dir).values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def every_job_failed() -> str | None:
    """The paragraph after a sweep of this process whose every job failed (``last_sweep``), naming
    its folder shell-quoted for the summarize command; None after a sweep with a completed job, or
    before any. Hydra itself ends such a sweep with status 0: the entrypoint exits 1 with this."""
    counts = last_sweep or {}
    if not counts or counts.get("completed"):
        return None
    how = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    where = ""
    if current_sweep_dir is not None:
        where = f" (python -m litlab.summarize {shlex.quote(str(current_sweep_dir))} lists them)"
    return f"every job of this sweep failed ({sum(counts.values())}: {how}); each job's metrics.json says why{where}."


class SweepOutcome(Callback):
    """Hydra callback (conf/hydra/default.yaml): after a sweep, counts its jobs by status. At its
    start, notes and holds its folder and, for an Optuna search kept in a database, its sampler seed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global current_sweep_dir
        current_sweep_dir = Path(config.hydra.sweep.dir)
        from litlab.distributed.ranks import launched_rank
        from litlab.run_lock import hold_run_dir
        from litlab.sweeps.optuna_resume import record_seed

        if launched_rank() == 0:  # held to the process's end: summarize tells a running sweep by it
            hold_run_dir(current_sweep_dir, "hydra.sweep.dir")
        record_seed(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep
        last_sweep = job_statuses(Path(config.hydra.sweep.dir))
