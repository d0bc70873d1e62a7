"""Early stopping whose settings on a resume are the command's, not the checkpoint's."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping as _EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason


class EarlyStopping(_EarlyStopping):
    """Lightning's ``EarlyStopping``, resumed as the command line asks.

    Lightning's own restores ``patience`` from the checkpoint, so ``callbacks.early_stopping.
    patience=10`` on a resume of an early-stopped run was recorded but never applied (it stopped
    again after one epoch), and it keeps ``stopped_epoch``, so a resumed run that trained to its
    end still reported ``stopped_early``. Here the configured patience stays, and a resumed run has
    not stopped yet; the count of epochs without improvement and the best score carry on.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
        self.stopped_epoch = 0
        self.stopping_reason, self.stopping_reason_message = EarlyStoppingReason.NOT_STOPPED, None
