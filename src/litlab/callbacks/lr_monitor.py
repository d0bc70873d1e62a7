"""Lightning's learning-rate monitor, with one curve for an optimizer whose groups share the rate."""

from __future__ import annotations

from collections import defaultdict

from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor
from torch.optim import Optimizer


class LearningRateMonitor(LightningLearningRateMonitor):
    """Logs ``lr-<Optimizer>`` (Lightning's monitor, same arguments) once per optimizer whose
    parameter groups all have the same value of everything it logs.

    litlab's optimizer has two groups where weight decay leaves biases and norms alone
    (``model.decay_biases_and_norms=false``); they differ in weight decay only. Lightning tags each
    group (``lr-AdamW/decay``, ``lr-AdamW/no_decay``): two identical curves, under other tags than a
    run with one group. Groups that differ in a logged value (the rate; momentum with
    ``log_momentum``, weight decay with ``log_weight_decay``) keep Lightning's tag per group.
    """

    def _check_duplicates_and_update_name(self, optimizer: Optimizer, name: str, seen_optimizers: list[Optimizer],
                                          seen_optimizer_types: defaultdict[type[Optimizer], int],
                                          lr_scheduler_config=None) -> list[str]:
        # Lightning names an optimizer's groups here, when training starts and at every logging
        names = super()._check_duplicates_and_update_name(optimizer, name, seen_optimizers, seen_optimizer_types,
                                                          lr_scheduler_config)
        if len(names) < 2 or not self._groups_agree(optimizer.param_groups):
            return names
        # one name: Lightning logs the first group's values under it (its prefix -1, -2 for a
        # second optimizer of the same class stays)
        return [self._add_prefix(name, type(optimizer), seen_optimizer_types)]

    def _groups_agree(self, groups: list[dict]) -> bool:
        """Whether every group has the first one's rate, and momentum and weight decay where logged."""
        keys = ["lr"] + ["betas", "momentum"] * self.log_momentum + ["weight_decay"] * self.log_weight_decay
        first = groups[0]
        # bool(): a rate may be a 0-d tensor (torch takes lr=torch.tensor(...)), compared by value
        return all(bool(group.get(key) == first.get(key)) for group in groups[1:] for key in keys)
