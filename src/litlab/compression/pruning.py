"""Global magnitude pruning, raised gradually during fine-tuning, then made permanent."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litlab.compression.base import Compressor, Context
from litlab.compression.finetune import FineTune, train_loop
from litlab.errors import LitlabError, check_choice, check_fraction

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN)


def prunable_weights(net: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of Linear, Conv and LSTM/GRU layers by name; biases and norm layers excluded."""
    found = {}
    for mod_name, module in net.named_modules():
        if not isinstance(module, PRUNABLE):
            continue
        for p_name, p in module.named_parameters(recurse=False):
            if p_name.startswith("weight"):
                found[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    return found


def sparsity_at(step: int, total: int, amount: float, schedule: str, ramp: float) -> float:
    """Target share of zero weights after ``step`` of ``total`` fine-tuning steps.

    ``cubic``: amount * (1 - (1 - t)^3) with t the share of the ramp done (fast at first, when
    many weights are near zero, slow near the end); ``linear``: amount * t; ``oneshot``: amount.
    The ramp spans the first ``ramp`` share of the steps; the rest recovers at full sparsity.
    """
    if schedule == "oneshot":
        return amount
    t = min(1.0, step / max(1.0, ramp * total))
    return amount * (1 - (1 - t) ** 3) if schedule == "cubic" else amount * t


def global_masks(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """Masks keeping the largest-magnitude weights over all layers together (zeros stay zero)."""
    if sparsity <= 0:
        return {k: w != 0 for k, w in weights.items()}
    magnitudes = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    k = int(round(sparsity * magnitudes.numel()))
    if k < 1:
        return {name: w != 0 for name, w in weights.items()}
    threshold = magnitudes.kthvalue(k).values
    return {name: w.detach().abs() > threshold for name, w in weights.items()}


class MagnitudePrune(Compressor):
    """Unstructured global L1 pruning of ``amount`` of the Linear/Conv/LSTM/GRU weights.

    Args:
        amount: share of those weights set to zero at the end (``compress.amount``), in (0, 1).
        schedule: ``cubic``, ``linear`` or ``oneshot`` (``compress.schedule``).
        ramp: share of the fine-tuning steps over which sparsity rises to ``amount``.
        finetune: fine-tuning settings.
    """

    name = "prune"

    def __init__(self, amount: float = 0.9, schedule: str = "cubic", ramp: float = 0.7,
                 finetune: FineTune | None = None, **kwargs):
        super().__init__(finetune=finetune or FineTune(), **kwargs)
        self.amount = check_fraction("compress.amount", amount, allow_zero=False)
        self.schedule = check_choice("compress.schedule", schedule, ("cubic", "linear", "oneshot"))
        self.ramp = check_fraction("compress.ramp", ramp, allow_zero=False) if ramp != 1 else 1.0

    def settings(self) -> dict:
        return {"amount": self.amount, "schedule": self.schedule, "ramp": self.ramp, **vars(self.finetune)}

    def check(self, net: nn.Module, dm) -> None:
        if not prunable_weights(net):
            raise LitlabError(f"compress=prune needs Linear, Conv or LSTM/GRU layers; {type(net).__name__} has none. "
                              f"Pick another model or compress method.")

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        weights = prunable_weights(net)
        masks = global_masks(weights, 0.0)

        def update(step: int, total: int) -> None:
            # recompute the masks as the target rises, then hold every pruned weight at zero
            nonlocal masks
            target = sparsity_at(step, total, self.amount, self.schedule, self.ramp)
            masks = global_masks(weights, target)
            for name, w in weights.items():
                w.data.mul_(masks[name])

        train_loop(net, dm, self.finetune, ctx.seed, after_step=update)
        update(1, 1)  # the final cut at exactly ``amount``: weights are plain zeros, no masks remain
        return net
