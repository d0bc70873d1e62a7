"""The gradient norm of every optimizer step, logged as ``grad/norm``."""

from __future__ import annotations

import lightning.pytorch as L
import torch

from litlab.callbacks.log_steps import is_logging_step, log_step_scalars
from litlab.errors import LitlabError


class GradNorm(L.Callback):
    """Logs the norm of all gradients together (before any clipping) as ``grad/norm``.

    One fused norm over all gradients, computed only on the steps where Lightning writes
    scalars (every ``trainer.log_every_n_steps``) and written straight to the loggers. Under
    mixed precision Lightning has unscaled the gradients before this hook runs.

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
        norm = self.norm(optimizer)
        if norm is not None:
            log_step_scalars(trainer, {"grad/norm": norm})

    def norm(self, optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
        """The norm of all gradients of ``optimizer``'s parameters together (None without any)."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return None
        first = grads[0]
        if all(type(g) is torch.Tensor and not g.is_sparse and g.device == first.device and g.dtype == first.dtype
               for g in grads):
            # the usual case, plain dense tensors of one device and dtype: the same fused per-tensor
            # norms as get_total_norm without its regrouping by device and dtype (~40 -> ~15 µs in a
            # small MLP's step)
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, self.norm_type)), self.norm_type)
        return torch.nn.utils.get_total_norm(grads, norm_type=self.norm_type)
