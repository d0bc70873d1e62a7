"""Early stopping that says whether it ended the run, with the command's settings on a resume."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping as _EarlyStopping


class EarlyStopping(_EarlyStopping):
    """Lightning's ``EarlyStopping``, resumed as the command line asks, with ``stopped``.

    Lightning's own restores ``patience`` from the checkpoint, so ``callbacks.early_stopping.
    patience=10`` on a resume of an early-stopped run was recorded but never applied (it stopped
    again after one epoch), and it keeps ``stopped_epoch``, so a resumed run that trained to its
    end still reported ``stopped_early``. Here the configured patience stays, and a resumed run has
    not stopped yet; the count of checks without improvement and the best score carry on.

    ``stopped`` is whether this callback ended the run: ``stopped_epoch`` is 0 both when it did
    not and when it stopped in the first epoch (after a mid-epoch validation).
    """

    stopped = False

    def _run_early_stopping_check(self, trainer) -> None:
        before = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        self.stopped = self.stopped or (trainer.should_stop and not before)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience, self.stopped_epoch, self.stopped = patience, 0, False
        if hasattr(self, "stopping_reason"):  # Lightning 2.6 records why it stopped
            self.stopping_reason = type(self.stopping_reason)(0)  # NOT_STOPPED
            self.stopping_reason_message = None
