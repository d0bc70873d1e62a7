"""The gradient norm of every optimizer step, logged as ``grad/norm``."""

from __future__ import annotations

import lightning.pytorch as L
import torch

from litlab.callbacks.log_steps import is_logging_step
from litlab.errors import LitlabError


class GradNorm(L.Callback):
    """Logs the norm of all gradients together (before any clipping) as ``grad/norm``.

    One fused norm over all gradients, computed only on the steps where Lightning writes
    scalars (every ``trainer.log_every_n_steps``) and kept as a device tensor. Under mixed
    precision Lightning has unscaled the gradients before this hook runs.

    Args:
        norm_type: 2 for the Euclidean norm, ``inf`` for the largest absolute gradient
            (``callbacks.grad_norm.norm_type``).
    """

    def __init__(self, norm_type: float = 2.0):
        if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or norm_type <= 0:
            raise LitlabError(f"callbacks.grad_norm.norm_type must be a positive number or inf, got {norm_type!r}.")
        self.norm_type = float(norm_type)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not is_logging_step(trainer):
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads, norm_type=self.norm_type)
        pl_module.log("grad/norm", norm, on_step=True, on_epoch=False)
