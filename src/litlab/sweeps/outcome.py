"""How a sweep's jobs ended, read from their ``metrics.json`` once the sweep is over.

The jobs may run in this process (Hydra's basic launcher, Optuna) or in others (submitit, SLURM),
so their run folders are what is counted, not this process's own bookkeeping.
"""

from __future__ import annotations

import json
import shlex
import sys
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
        from litlab.sweeps.optuna_resume import record_seed

        hold_sweep_dir(current_sweep_dir)
        record_seed(config)  # after the hold: a sweep refused there searched nothing with its seed

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep
        last_sweep = job_statuses(Path(config.hydra.sweep.dir))


def hold_sweep_dir(sweep_dir: Path) -> None:
    """Holds the sweep's folder to the process's end (``run_lock.hold_run_dir``): summarize tells a
    running sweep by it. A folder another command holds (two sweeps started in the same second
    share the timestamped one) ends the command here with its paragraph and status 2, before any
    job writes there: Hydra catches every ``Exception`` of a callback and only warns (a warning
    ``PYTHONWARNINGS=ignore`` hides), and the sweep then ran into the held folder. ``SystemExit``
    is not an ``Exception``. Only rank 0 of a launched run holds it: the others work in rank 0's."""
    from litlab.distributed.ranks import launched_rank
    from litlab.errors import LitlabError
    from litlab.run_lock import hold_run_dir

    if launched_rank() != 0:
        return
    try:
        hold_run_dir(sweep_dir, "hydra.sweep.dir")
    except LitlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
