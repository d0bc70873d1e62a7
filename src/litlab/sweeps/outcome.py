"""How a sweep's jobs ended, read from their ``metrics.json`` once the sweep is over.

The jobs may run in this process (Hydra's basic launcher, Optuna) or in others (submitit, SLURM),
so their run folders are what is counted, not this process's own bookkeeping.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from litlab.errors import config_error
from litlab.run_lock import recorded_status

# that sweep's status of each job, by its folder (``statuses_by_job``), or None before any
last_jobs: dict[str, str] | None = None
# the values of conf/train.yaml's sweep_fails_on: a sweep exits 1 when every job, or any job, did not complete
FAILS_ON = ("all", "any")
# the sweep_fails_on of the sweep that started in this process
fails_on = "all"
# at most this many folders are named in the paragraph after a sweep, then "and N more"
NAMED_JOBS = 10
# the folder of the sweep that started in this process (also when it never ended), or None before any
current_sweep_dir: Path | None = None


def statuses_by_job(sweep_dir: Path) -> dict[str, str]:
    """The ``status`` of each job folder under ``sweep_dir`` (its path relative to it), in job
    order; a job without ``metrics.json`` is ``killed`` where no command holds its folder (as
    summarize reads it: ``sweep_table.status_without_record``), or ``running_sweep.MAYBE_STARTING``
    where the sweep may still start jobs (``running_sweep.may_still_start``; never at the end of a
    sweep this process ran, which holds its folder); one whose ``metrics.json`` cannot be read is
    ``unknown``."""
    from litlab.run_lock import KILLED
    from litlab.sweeps.running_sweep import MAYBE_STARTING, may_still_start
    from litlab.sweeps.sweep_table import status_without_record

    jobs = {p.parent.parent for p in sweep_dir.glob("**/.hydra/config.yaml")}
    jobs |= {p.parent for p in sweep_dir.glob("**/metrics.json")}
    found, records, unrecorded = {}, [], []
    for job in sorted(jobs, key=lambda j: (len(j.parts), len(j.name), j.name)):
        name = str(job.relative_to(sweep_dir))
        if not (job / "metrics.json").is_file():  # killed before it wrote its record (SIGKILL, out of memory)
            found[name] = status_without_record(job)
            unrecorded += [name] if found[name] == KILLED else []
            continue
        try:  # a job killed before it recorded its end is "killed", not "running"
            record = json.loads((job / "metrics.json").read_text())
            status = str(recorded_status(job, record) or "unknown")
            records.append({"host": record.get("host"), "status": status})
        except (OSError, ValueError, AttributeError):
            status = "unknown"
        found[name] = status
    if unrecorded and may_still_start(sweep_dir, records, [sweep_dir / n for n in unrecorded]):
        found.update(dict.fromkeys(unrecorded, MAYBE_STARTING))
    return found


def status_counts(statuses: dict[str, str]) -> dict[str, int]:
    """How many of ``statuses`` (a job's status by its folder) are each status."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def check_fails_on(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """``sweep_fails_on`` is one of ``FAILS_ON`` (a config without the key is ``all``), refused
    before any job runs: the sweep reads it only once every job has ended. A sweep's command
    (``overrides``) or searched parameters (``hydra.sweeper.params``) that give it several values
    are refused too: the sweep read the one of the config it started from, whatever a job had."""
    swept = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == "sweep_fails_on"
             and _is_sweep(o)]
    searched = OmegaConf.select(cfg, "hydra.sweeper.params.sweep_fails_on", default=None,
                                throw_on_resolution_failure=False)
    if searched is not None and _is_sweep(f"sweep_fails_on={searched}"):
        swept.append(str(searched))
    if swept:
        raise config_error("sweep_fails_on", "all or any", swept[0],
                           "It applies to the whole sweep, not to each job (the sweep reads it once every job has "
                           "ended, for its own exit status), so it takes one value and cannot be swept or searched. "
                           "Give sweep_fails_on=all or sweep_fails_on=any.")
    value = cfg.get("sweep_fails_on", "all")
    if value not in FAILS_ON:
        raise config_error("sweep_fails_on", "all or any", value,
                           "all (the default) makes a sweep exit with status 1 only when every job failed; any "
                           "makes it exit 1 when any job did not complete, once all jobs have run. Give "
                           "sweep_fails_on=all or sweep_fails_on=any.")


def unfinished_jobs() -> tuple[str | None, bool]:
    """The paragraph after a sweep of this process in which some job did not complete
    (``last_jobs``): how many ended how, the folders of those that did not (the first
    ``NAMED_JOBS``) and the summarize command; and whether the sweep fails (exit status 1): every
    job failed, or any did not complete under ``sweep_fails_on=any``. (None, False) after a sweep
    whose every job completed, or before any."""
    jobs = last_jobs or {}
    unfinished = [(job, status) for job, status in jobs.items() if status != "completed"]
    if not unfinished:
        return None, False
    named = unfinished[:NAMED_JOBS]
    # the folders grouped by status, in job order: "2, 5 (failed), 7 (killed)"
    folders = ", ".join(f"{', '.join(job for job, s in named if s == status)} ({status})"
                        for status in dict.fromkeys(s for _, s in named))
    if len(unfinished) > len(named):
        folders += f" and {len(unfinished) - len(named)} more"
    counts = status_counts(jobs)
    if len(unfinished) == len(jobs):
        return f"every job of this sweep failed ({len(jobs)}: {_how(counts)}): {folders}; {_why()}", True
    message = (f"{len(unfinished)} of {len(jobs)} jobs of this sweep did not complete ({_how(counts)}): "
               f"{folders}; {_why()}")
    if fails_on == "any":
        return f"{message} The sweep exits with status 1 (sweep_fails_on=any).", True
    return f"{message} The sweep exits with status 0 (sweep_fails_on=any would make it 1).", False


def _is_sweep(override: str) -> bool:
    """Whether ``override`` gives its key several values (``a,b``, ``choice(a,b)``, ``range(...)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except HydraException:
        return False


def _how(counts: dict[str, int]) -> str:
    """``counts`` as "2 completed, 1 failed"."""
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _why() -> str:
    """Where each job's reason is, with the summarize command for the sweep's folder (shell-quoted)."""
    where = ""
    if current_sweep_dir is not None:
        where = f" (python -m litlab.summarize {shlex.quote(str(current_sweep_dir))} lists them)"
    return f"each job's metrics.json says why{where}."


class SweepOutcome(Callback):
    """Hydra callback (conf/hydra/default.yaml): after a sweep, counts its jobs by status. At its
    start, notes and holds its folder and, for an Optuna search kept in a database, its sampler seed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global current_sweep_dir, fails_on
        current_sweep_dir = Path(config.hydra.sweep.dir)
        fails_on = str(config.get("sweep_fails_on", "all"))  # checked before Hydra started (config_check)
        from litlab.sweeps.optuna_resume import record_seed

        hold_sweep_dir(current_sweep_dir)
        record_seed(config)  # after the hold: a sweep refused there searched nothing with its seed

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_jobs
        last_jobs = statuses_by_job(Path(config.hydra.sweep.dir))


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
