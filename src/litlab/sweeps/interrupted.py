"""Ctrl-C or SIGTERM during a sweep: one line naming the interrupted jobs (and, for a grid sweep,
the jobs that never started, with the commands that run them), and the signal's exit status (130,
143), whichever launcher ran the jobs.

Under submitit's launchers the jobs stop on the signal in their own processes and record it, and
the parent's wait for them failed with submitit's UncompletedJobError traceback and exit status 1.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from litlab.entry import Terminated
from litlab.errors import LitlabError
from litlab.run_lock import KILLED
from litlab.sweeps import outcome
from litlab.sweeps.job_processes import wait_for_job_processes

# the most never-started jobs of a grid sweep whose commands the end line shows (summarize shows all)
UNSTARTED_SHOWN = 10


def _stop(signum, frame) -> None:
    """Stops this process's wait for the jobs at once, as Ctrl-C's KeyboardInterrupt does; jobs in
    this process (the basic launcher) record it as their own interruption."""
    raise Terminated(signum) if signum == signal.SIGTERM else KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sweep_stops_on_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM end the sweep with ``exit_interrupted``. A SIGINT that the shell
    had this process ignore (a script's background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, _stop) for s in handled}
    try:
        yield
    except KeyboardInterrupt as e:
        for s in handled:  # a second signal while the jobs' records are read: the default, at once
            signal.signal(s, signal.SIG_DFL)
        exit_interrupted(getattr(e, "signum", None) or signal.SIGINT)
    except SystemExit as e:  # a job in this process (the basic launcher) stopped on the signal and exits with it
        if e.code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            for s in handled:
                signal.signal(s, signal.SIG_DFL)
            exit_interrupted(e.code - 128)
        raise
    finally:
        for s, handler in previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(s, handler)


def exit_interrupted(signum: int) -> None:
    """One line on the interrupted sweep (its jobs as their folders say), then, for a grid sweep,
    its jobs that never started with the commands that run them (at most ``UNSTARTED_SHOWN``),
    then the signal's status."""
    where = outcome.current_sweep_dir
    jobs, unstarted = "", []
    if where is not None and where.is_dir():
        found = _settled_statuses(where)
        listed = {status: [job for job, s in found.items() if s == status]
                  for status in ("interrupted", "running", KILLED)}
        jobs = f" in {where}; interrupted jobs: {', '.join(listed['interrupted']) or 'none'}"
        if listed["running"]:  # jobs that did not get the signal (sent to this process alone)
            jobs += f"; still running: {', '.join(listed['running'])}"
        if listed[KILLED]:  # jobs whose process ended without recording it (kill -9, the out-of-memory killer)
            jobs += f"; killed before recording their end: {', '.join(listed[KILLED])}"
        jobs += (f". python -m litlab.summarize {shlex.quote(str(where))} lists its jobs; an interrupted job's "
                 f"metrics.json says how to resume it (resume)")
        unstarted = _unstarted(where)
    print("\n".join([f"\nSweep interrupted by signal {signal.Signals(signum).name}{jobs}.", *unstarted]),
          file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def _unstarted(sweep_dir: Path) -> list[str]:
    """``grid_points.unstarted_lines`` of the sweep (none for an Optuna search); a job folder too
    broken to read leaves them unsaid rather than hiding the line above behind a traceback."""
    from litlab.sweeps.grid_points import unstarted_commands, unstarted_lines
    from litlab.sweeps.sweep_table import read_jobs

    try:
        jobs = read_jobs(sweep_dir)
    except LitlabError:  # not one job folder yet: every job of the grid is still to start
        jobs = []
    except (OSError, ValueError, TypeError, yaml.YAMLError):  # an overrides.yaml cut short or edited
        return []
    return unstarted_lines(unstarted_commands(sweep_dir, jobs), sweep_dir, UNSTARTED_SHOWN)


def _settled_statuses(sweep_dir, wait_s: float = 15.0) -> dict[str, str]:
    """``outcome.statuses_by_job`` once the jobs have recorded their stop: jobs in other processes
    (submitit's) stop a moment after this one stopped waiting for them, so first the children that
    run jobs (submitit's local job controllers, ``job_processes``) are waited for, never one that
    lives as long as this process (multiprocessing's resource tracker), then for no job saying
    ``running``; at most ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    wait_for_job_processes(deadline)
    found = outcome.statuses_by_job(sweep_dir)
    while "running" in found.values() and time.monotonic() < deadline:
        time.sleep(0.25)
        found = outcome.statuses_by_job(sweep_dir)
    return found
