"""Which rank this process is, without importing torch: the command-line checks run before it."""

from __future__ import annotations

import os
import sys


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
