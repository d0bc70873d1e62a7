"""Whether a sweep is still running, and which process runs it.

The sweep's process holds its folder from the sweep's start to the process's end
(``outcome.SweepOutcome.on_multirun_start``, ``run_lock.hold_run_dir``), as a run holds its own.
While it does, a grid job without a folder is waiting for its turn: summarize must not hand out a
command that starts it, which the sweep would then start a second time into the same folder. Only
that lock tells: a job still running (resumed by hand, a submitit job going on after the sweep's
process was stopped, a record of a machine that is gone) is no sweep that will start more jobs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from litlab.run_lock import holds, is_running, running_elsewhere
from litlab.sweeps.sweep_table import Job


def running_sweep(sweep_dir: Path) -> str | None:
    """Words for a sweep whose process still runs (``the sweep is running, pid P on host H``): another
    process holds its folder. None otherwise: no process holds it, this one does (a sweep it ran
    itself, over by the time it is summarized), its lock cannot be read (``sweep_note`` says so),
    or it is a single run's folder (``is_run_folder``), held by that run."""
    sweep_dir = Path(sweep_dir)
    if is_run_folder(sweep_dir) or holds(sweep_dir) or not is_running(sweep_dir):
        return None
    pid = lock_holder(sweep_dir)
    if pid is None:  # a lock taken on another machine of a network file system, or not on Linux
        return "the sweep is running: a process holds its folder"
    return f"the sweep is running, pid {pid} on host {socket.gethostname()}"


def sweep_note(sweep_dir: Path, jobs: list[Job]) -> str | None:
    """Words for a sweep that is not known to run (``running_sweep`` is None) but may seem to, said
    next to the commands of its jobs that never started: its folder's lock cannot be read here (a
    file system without locks, no fcntl), or a job still runs (its status, ``sweep_table.as_ended``'s,
    begins with running) while no process holds the sweep's folder. A job whose record names another
    machine (``job_elsewhere``) leaves it untold: on a network file system the lock of a sweep working
    there may not be seen here. None where nothing needs saying."""
    sweep_dir = Path(sweep_dir)
    if is_run_folder(sweep_dir) or holds(sweep_dir):
        return None
    held = is_running(sweep_dir)
    if held is None:
        return ("whether the sweep's process still runs cannot be told here: its folder's lock cannot be read (a "
                "file system without locks); if it still runs, it starts these jobs itself")
    job = next((j for j in jobs if j.status.startswith("running")), None)
    if job is None or held:  # held: running_sweep's words
        return None
    elsewhere = job_elsewhere(jobs)
    if elsewhere:
        job, host = elsewhere
        return (f"job {job.name} runs, pid {job.metrics.get('pid', 'unknown')} on host {host}, so whether the sweep's "
                f"process still runs cannot be told here: the lock on its folder may be held on another machine "
                f"without this one seeing it (a network file system); if the sweep still runs, it starts these jobs "
                f"itself")
    host = job.metrics.get("host") or "unknown"
    return f"job {job.name} runs, pid {job.metrics.get('pid', 'unknown')} on host {host}; the sweep's process has ended"


# the status of a job folder without metrics.json while the sweep may still start jobs: a job writes
# its record only after preparing its data, so on a shared file system one starting on another
# machine looks like one killed before its record
MAYBE_STARTING = "killed, or starting on another machine"


# how long after its start a job folder without a record may still be preparing its data on another
# machine; an older one there is read as killed (a submitit_slurm record always names a compute node)
STARTING_FOR_S = 15 * 60


def may_still_start(sweep_dir: Path, records: list[dict], unrecorded: list[Path]) -> str | None:
    """Words for why a sweep may still be starting jobs (so a job folder without ``metrics.json``
    may be one starting, not one killed), or None where the sweep is known to be over: this
    process held it (the end-of-sweep paragraph), or no process holds its folder and no job's
    record (``records``: each job's metrics) tells of work on another machine, whose lock on a
    network file system this one may not see. A record naming another host tells of it only where
    that job still says ``running``, or a folder of ``unrecorded`` (the jobs without a record) began
    within ``STARTING_FOR_S``: with SLURM every record names a compute node, and a job killed there
    before its record must still get its rerun command."""
    sweep_dir = Path(sweep_dir)
    if holds(sweep_dir):
        return None
    held = is_running(sweep_dir)
    if held:
        return running_sweep(sweep_dir) or "the sweep is running: a process holds its folder"
    if held is None:
        return "whether the sweep's process still runs cannot be told here: its folder's lock cannot be read"
    here = socket.gethostname()
    others = [r for r in records if r.get("host") and str(r.get("host")) != here]
    running = next((r for r in others if str(r.get("status", "")).startswith("running")), None)
    if running is not None:
        return (f"a job runs on host {running['host']}: the sweep may run there, its lock unseen from this machine "
                f"(a network file system)")
    recent = [f for f in unrecorded if _started_within(f, STARTING_FOR_S)]
    if others and recent:
        return (f"a job's record names host {others[0]['host']} and {recent[0].name} began less than "
                f"{STARTING_FOR_S // 60} minutes ago: the sweep may run there, its lock unseen from this machine "
                f"(a network file system)")
    return None


def _started_within(folder: Path, seconds: float) -> bool:
    """Whether job ``folder`` was started (its ``.hydra/``, else the folder, last written) within
    ``seconds`` from now; False where neither can be read."""
    import time

    for path in (Path(folder) / ".hydra", Path(folder)):
        try:
            return time.time() - path.stat().st_mtime < seconds
        except OSError:
            continue
    return False


def starting_or_killed(sweep_dir: Path, jobs: list[Job]) -> list[Job]:
    """``jobs`` with those killed before their record (``sweep_table.KILLED_BEFORE_RECORD``) read
    ``MAYBE_STARTING`` where the sweep may still start jobs (``may_still_start``): no rerun
    command is given for them (``grid_points.killed_lines``), which would run a job twice into one
    folder. Unchanged where the sweep is known to be over."""
    from litlab.sweeps.sweep_table import KILLED_BEFORE_RECORD

    killed = [j for j in jobs if j.metrics.get("error") == KILLED_BEFORE_RECORD]
    why = may_still_start(sweep_dir, [dict(j.metrics) for j in jobs if j not in killed],
                          [Path(sweep_dir) / j.name for j in killed]) if killed else None
    if why is None:
        return jobs
    for job in killed:
        job.metrics = {"status": MAYBE_STARTING, "error": f"no metrics.json yet ({why})"}
    return jobs


def job_elsewhere(jobs: list[Job]) -> tuple[Job, str] | None:
    """The first job still running (its status begins with running) whose record names another
    machine (``run_lock.running_elsewhere``), with that machine; None where no job does. The sweep
    that started it may be running there, which no lock read from here can rule out."""
    for job in jobs:
        host = running_elsewhere(job.metrics) if job.status.startswith("running") else None
        if host:
            return job, host
    return None


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a single run's own (its ``metrics.json`` or ``.hydra/`` at the top), not a
    sweep's: a sweep writes those only into its job folders, and a grid sweep's own record is its
    ``multirun.yaml``. A run holds its folder as a sweep does, and was taken for a running sweep.
    ``os.path``'s tests, unlike Path's, never raise (a name too long is no run's folder)."""
    if os.path.exists(os.path.join(folder, "multirun.yaml")):
        return False
    return os.path.exists(os.path.join(folder, "metrics.json")) or os.path.isdir(os.path.join(folder, ".hydra"))


def wait_for_a_job(sweep_dir: Path, what: str, running: str) -> str:
    """summarize's refusal for a running sweep none of whose jobs has ended yet: ``DIR: <sweep_dir>
    <what> (<running>)``, then that there is nothing to rank and when to run it again."""
    return (f"DIR: {sweep_dir} {what} ({running}): no job has results to rank. Run this command again once a job "
            f"has ended.")


def lock_holder(folder: Path) -> int | None:
    """The process id that holds ``folder``'s exclusive lock, from Linux's ``/proc/locks``, whose
    lines name a lock's kind, holder and file by device and inode
    (``1: FLOCK  ADVISORY  WRITE 4711 fe:00:2147762 0 EOF``; a waiting lock's line has ``->``
    after the number and is skipped). None where it cannot be told: another system, a lock taken
    on another machine, a holder outside this process's pid namespace (shown as 0)."""
    try:
        st = os.stat(folder)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5] == inode:
            return int(fields[4]) if fields[4].isdigit() and int(fields[4]) > 0 else None
    return None
