"""The children of a sweep's process that run its jobs: submitit's local job controllers.

Under ``hydra/launcher=submitit_local`` each job runs under a controller, ``python -m
submitit.local._local <folder>``, a child of the sweep's process, which starts the job and, on
Ctrl-C, stops it and prints its own KeyboardInterrupt traceback. The sweep's end line waits for
these to end, so that it comes last. Other children are not jobs and are never waited for:
multiprocessing's resource tracker and forkserver (started by torch or a DataLoader's workers) or
torch's compile workers live as long as the process that started them. Under the basic launcher
the jobs ran in this process, and there is nothing to wait for; SLURM's jobs run elsewhere.

The children are read from Linux's ``/proc``; where there is none (macOS), nothing tells them apart
and every child is waited for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
# the module that submitit's local executor runs each job's controller with (submitit.local.local.start_controller)
CONTROLLER = "submitit.local._local"


def children() -> dict[int, list[str]] | None:
    """This process's children that have not ended, each with its command line; None without ``/proc``."""
    if not PROC.is_dir():
        return None
    me, found = os.getpid(), {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended while the table was read
            continue
        # "pid (name) state ppid ...": the name may hold spaces and parentheses, the last ")" ends it
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == me and state != "Z":  # an ended child not reaped yet (zombie) needs no wait
            found[int(entry.name)] = [arg.decode(errors="replace") for arg in argv if arg]
    return found


def job_controllers() -> list[int] | None:
    """The children that run submitit's local job controller, directly or in the shell that runs
    the executor's ``setup`` lines first; None without ``/proc``."""
    found = children()
    if found is None:
        return None
    return [pid for pid, argv in found.items() if any(CONTROLLER in arg for arg in argv)]


def wait_for_job_processes(deadline: float) -> None:
    """Waits until ``job_controllers`` have ended (and reaps them), or ``time.monotonic()`` reaches
    ``deadline``; without ``/proc``, until no child is left."""
    pids = job_controllers()
    while time.monotonic() < deadline:
        if pids is None:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.1)
            except ChildProcessError:  # none left
                return
            continue
        pids = [pid for pid in pids if not _ended(pid)]
        if not pids:
            return
        time.sleep(0.1)


def _ended(pid: int) -> bool:
    """Whether child ``pid`` has ended, reaping it if so."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # already reaped (its Popen's poll)
        return True
