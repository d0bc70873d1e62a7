"""Which rank this process is, without importing torch: the command-line checks run before it."""

from __future__ import annotations

import os
import sys

from litlab.errors import LitlabError


def launched_rank() -> int:
    """This process's global rank as its launcher announced it in the environment (0 when none did)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "LOCAL_RANK" in env:  # Lightning's own children: one node's processes
        return int(env.get("NODE_RANK", 0)) * int(env.get("LOCAL_WORLD_SIZE", 1)) + int(env["LOCAL_RANK"])
    if int(env.get("SLURM_NTASKS", 1)) > 1:
        return int(env.get("SLURM_PROCID", 0))
    return 0


def is_rank_zero() -> bool:
    """True in the one process that writes files (also before the process group exists)."""
    dist = sys.modules.get("torch.distributed")  # a process group needs torch.distributed imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return launched_rank() == 0


def started_by_launcher() -> bool:
    """Whether torchrun or SLURM started this process as one of several, each of which composes its
    own config (Lightning's own child ranks are told rank 0's run directory instead)."""
    env = os.environ
    if "LOCAL_WORLD_SIZE" in env and "TORCHELASTIC_RUN_ID" not in env:
        return False  # one of litlab's RunDirLauncher children
    return launched_rank() != 0 or int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", 1))) > 1


def check_run_dir_given(argv: list[str]) -> None:
    """Every rank that torchrun or SLURM starts needs ``hydra.run.dir=`` on its command line.

    Checked before Hydra starts, on every rank: without the key each rank would make (and leave
    behind) its own timestamped folder before any later check could refuse the run.
    """
    if not started_by_launcher():
        return
    if any(a.lstrip("+").startswith("hydra.run.dir=") for a in argv):
        return
    raise LitlabError(
        "hydra.run.dir: this process is one rank of a multi-process run started by torchrun or SLURM, "
        "and every rank must write into the same run directory. Pass the same literal "
        "hydra.run.dir=outputs/runs/<name> to every rank (see docs/scaling.md).")
