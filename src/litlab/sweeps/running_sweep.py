"""Whether a sweep is still running, and which process runs it.

The sweep's process holds its folder from the sweep's start to the process's end
(``outcome.SweepOutcome.on_multirun_start``, ``run_lock.hold_run_dir``), as a run holds its own.
While it does, a grid job without a folder is waiting for its turn: summarize must not hand out a
command that starts it, which the sweep would then start a second time into the same folder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from litlab.run_lock import holds, is_running
from litlab.sweeps.sweep_table import Job


def running_sweep(sweep_dir: Path, jobs: list[Job]) -> str | None:
    """Words for a sweep that is still running (``the sweep is running, pid P on host H``), or
    None once it ended. Running means: another process holds the sweep folder, or a job still
    runs (its status, ``sweep_table.as_ended``'s, is running: its folder is held, or its machine
    is another whose lock cannot be seen from here). A folder this process holds is a sweep it
    ran itself, over by the time it is summarized."""
    sweep_dir = Path(sweep_dir)
    if not holds(sweep_dir) and is_running(sweep_dir):
        pid = lock_holder(sweep_dir)
        if pid is None:  # a lock taken on another machine of a network file system, or not on Linux
            return "the sweep is running: a process holds its folder"
        return f"the sweep is running, pid {pid} on host {socket.gethostname()}"
    job = next((j for j in jobs if j.status.startswith("running")), None)
    if job is None:
        return None
    host = job.metrics.get("host") or "unknown"
    return f"the sweep is running: its job {job.name} runs, pid {job.metrics.get('pid', 'unknown')} on host {host}"


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
