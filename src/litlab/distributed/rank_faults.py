"""When one rank of a multi-process run dies or hangs: every rank stops, and the run says why.

gloo notices a rank that died as soon as another rank talks to it (its connection is reset), and a
rank that hangs once ``trainer.strategy.timeout`` has passed; either way the other ranks raise.
This module turns that low-level error into one paragraph that names the lost rank and says how
to resume, stops ranks that are left behind, and ends child ranks whose rank 0 is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from litlab.device_counts import known_device_count
from litlab.errors import LitlabError
from litlab.file_only_logs import FILE_ONLY

log = logging.getLogger(__name__)

# the environment variable that tells a child rank the pid of the rank 0 that started it
RANK0_PID_ENV = "LITLAB_RANK0_PID"
# how often the watcher threads look at the other processes
_POLL_S = 0.5


class LostRankError(LitlabError):
    """A rank of the run died or stopped answering. Not a user mistake, but a message for the user:
    one paragraph, no traceback, exit status 1."""

    exit_code = 1


def how_it_ended(returncode: int) -> str:
    """``killed by signal SIGKILL`` or ``exited with code 1``, for a finished process."""
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode} (its error is printed above)"


def resume_hint(run_dir: Path, entry: str) -> str:
    """What the user can do next: resume from ``last.ckpt`` when training wrote one, or, for a start
    from another run's checkpoint that wrote none of its own yet, from that one (``started_from`` of
    its record), as the Interruption callback advises; "no checkpoint can be resumed" was false there."""
    if entry != "train":
        return "No checkpoint of this run can be resumed; start it again."
    from litlab.run_commands import resume_command
    from litlab.run_folders import has_checkpoint, recorded_start

    checkpoints = Path(run_dir) / "checkpoints"
    if (checkpoints / "last.ckpt").is_file():
        return (f"checkpoints/last.ckpt holds the run's last epoch end or validation that a resume continues "
                f"exactly; resume with: {resume_command(Path(run_dir))}")
    started = recorded_start(Path(run_dir))
    if started is not None and not has_checkpoint(Path(run_dir)):
        return (f"This start wrote no checkpoint of its own; resume it from the one it started from with: "
                f"{resume_command(Path(run_dir), Path(started))}")
    return "No checkpoint of this run can be resumed; start it again."


# exit codes of a rank that finished, or that stopped on Ctrl-C or SIGTERM together with all the
# others (litlab.callbacks.interruption): not a lost rank
_STOPPED = (0, 128 + signal.SIGINT, 128 + signal.SIGTERM)


def first_failed(children: dict[int, subprocess.Popen], wait_s: float = 0.0) -> tuple[int, subprocess.Popen] | None:
    """The (rank, process) of a child rank that failed (exited with a code other than those of
    ``_STOPPED``, or was killed), waiting up to ``wait_s`` for one."""
    deadline = time.monotonic() + wait_s
    while True:
        failed = [(rank, p) for rank, p in sorted(children.items()) if p.poll() not in (None, *_STOPPED)]
        if failed or time.monotonic() >= deadline or not any(p.poll() is None for p in children.values()):
            return failed[0] if failed else None
        time.sleep(0.1)


def lost_rank_message(rank: int, proc: subprocess.Popen, run_dir: Path, entry: str) -> str:
    return (f"rank {rank} of this multi-process run (pid {proc.pid}) {how_it_ended(proc.returncode)}, so every "
            f"rank was stopped. {resume_hint(run_dir, entry)}")


def _is_collective_timeout(error: BaseException) -> bool:
    # gloo words it as "Timed out waiting 20000ms for recv" or "Application timeout caused pair closure"
    text = str(error).lower()
    return ("timed out" in text or "timeout" in text) and "dataloader" not in text


def is_rendezvous_timeout(error: BaseException) -> bool:
    """torch's store timing out while the process group is set up (``DistStoreError: Timed out after
    121 seconds waiting for clients. 1/2 clients joined``, or a client's ``DistNetworkError`` that
    timed out connecting): the other ranks never came. Other store errors (a port in use) are not."""
    import torch.distributed as dist

    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # a chain can loop back on itself
        seen.add(id(error))
        if isinstance(error, (dist.DistStoreError, dist.DistNetworkError)) and _is_collective_timeout(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _expected_ranks(trainer: Any) -> str:
    """``trainer.num_nodes=2 x trainer.devices=1 = 2 processes``, as far as the config tells."""
    num_nodes = (trainer.get("num_nodes") if trainer is not None else None) or 1
    devices = trainer.get("devices", 1) if trainer is not None else 1
    count = known_device_count(devices)  # 2, "2", "0,1" and [0, 1] are 2 per node; auto and -1 only the node counts
    known = count is not None and isinstance(num_nodes, int) and not isinstance(num_nodes, bool)
    world = f" = {num_nodes * count} processes" if known else " processes"
    return f"trainer.num_nodes={num_nodes} x trainer.devices={devices}{world}"


def ranks_never_joined_message(error: BaseException, trainer: Any) -> str:
    """Why a run's processes never all met, and the usual reasons, in one paragraph."""
    torch_says = " ".join(str(error).split())
    return (f"{_expected_ranks(trainer)} were expected to start this run together, but the others never joined "
            f"within trainer.strategy.timeout ({torch_says}). Usual causes: under "
            f"SLURM the command must be started with srun, one task per device (srun python -m litlab.train ...), "
            f"not run directly in the batch script; under torchrun it must be started on every node with the same "
            f"--nnodes, --master-addr and --master-port; or another node failed before training began: look at "
            f"that node's own output (a resume, for example, needs the run folder with checkpoints/last.ckpt on "
            f"every node).")


def explain(error: Exception, children: dict[int, subprocess.Popen], run_dir: Path, entry: str,
            wait_s: float = 3.0) -> LostRankError | None:
    """The error to report instead of ``error`` when it came from a lost or hung rank, else None.

    A rank that is killed resets its connections before the kernel reports its exit, so the
    error of rank 0 can come first: it waits up to ``wait_s`` for a child rank to be seen gone.
    """
    if isinstance(error, LitlabError):
        return None  # the user's own mistake (NaN loss, bad config) says more than its effect on the ranks
    timed_out = _is_collective_timeout(error)  # then the other ranks are most likely alive: no wait
    found = first_failed(children, 0.0 if timed_out else wait_s) if children else None
    if found is not None:
        return LostRankError(lost_rank_message(*found, run_dir, entry))
    if timed_out:
        gloo_says = str(error).strip().rsplit("] ", 1)[-1]  # gloo prefixes its source file: "[pair.cc:545] "
        return LostRankError(
            "a rank of this multi-process run stopped answering: rank 0 waited longer than "
            f"trainer.strategy.timeout for the others ({gloo_says}). A rank hung, was stopped, or is far "
            f"slower than the others. {resume_hint(run_dir, entry)}")
    return None


def stop_all_if_a_child_fails(children: dict[int, subprocess.Popen], job_ended: threading.Event,
                              run_dir: Path, entry: str, grace_s: float) -> None:
    """Watcher thread of rank 0 outside sweeps: a rank that dies is reported by gloo at rank 0's
    next collective; when rank 0 has not failed on its own ``grace_s`` later (it is not inside a
    collective, or waits for a rank that never joined), the failure is recorded and every rank
    stopped, as Lightning's own launcher does."""
    from litlab.reporting.run_files import update_metrics

    while not job_ended.wait(_POLL_S):
        found = first_failed(children)
        if found is None:
            if all(p.poll() in _STOPPED for p in children.values()):
                return  # every child finished its job, or stopped with rank 0 on Ctrl-C or SIGTERM
            continue
        if job_ended.wait(grace_s):
            return  # rank 0 failed on its own and reported the lost rank
        message = lost_rank_message(*found, run_dir, entry)
        log.error("%s", message, extra=FILE_ONLY)
        print(f"\nError: {message}", file=sys.stderr, flush=True)
        update_metrics(run_dir, status="failed", error=message)
        for p in children.values():
            p.kill()
        # at once, with LostRankError's status 1 (rank 0 may be inside a collective that never
        # returns); Lightning's own watcher kills its process with SIGKILL, status 137, which reads
        # as the kernel's out-of-memory kill
        os._exit(LostRankError.exit_code)
        return  # (where os._exit is replaced, in tests)


def exit_when_rank_zero_is_gone(rank: int) -> None:
    """In a child rank: exit when the rank 0 that started it is gone, so no rank is left running.

    A child whose parent died is handed to another parent; gloo would stop it at its next
    collective, but one busy elsewhere (data loading, a long validation) would run on.
    """
    rank0 = os.environ.get(RANK0_PID_ENV)
    if rank0 is None:
        return

    def watch() -> None:
        while os.getppid() == int(rank0):
            time.sleep(_POLL_S)
        print(f"rank {rank}: rank 0 (pid {rank0}) is gone; stopping this rank", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="litlab-rank0-watch", daemon=True).start()
