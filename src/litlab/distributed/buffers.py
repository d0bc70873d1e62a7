"""Module buffers (BatchNorm running statistics) under DDP: shared once per evaluation, not per step.

PyTorch's DDP broadcasts every buffer from rank 0 before each training forward
(``broadcast_buffers=True``): one more collective per step, and one more point where the ranks
wait for each other. Training does not read the running statistics (BatchNorm normalizes by the
batch's own), so litlab's DDP configs turn that off and copy rank 0's buffers to the other ranks
where they are read: before each validation and test epoch, and when training ends. Rank 0's
buffers are never overwritten either way, so its model and checkpoints are the same as with the
per-step broadcast; the other ranks now evaluate exactly rank 0's model.
"""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import nn


def share_rank_zero_buffers(module: nn.Module, strategy) -> int:
    """Copies rank 0's floating and integer buffers to every rank; returns how many were sent
    (0 on one process and under strategies other than DDP, e.g. FSDP, which manage their own)."""
    if strategy.world_size == 1 or not isinstance(strategy, DDPStrategy) or not dist.is_initialized():
        return 0
    buffers = [b for b in module.buffers() if b is not None]
    for b in buffers:
        dist.broadcast(b, src=0)
    return len(buffers)
