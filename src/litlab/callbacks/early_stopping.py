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

    ``stopped`` is whether this callback ended the run before its end: ``stopped_epoch`` is 0 both
    when it did not and when it stopped in the first epoch (after a mid-epoch validation), and a
    stop at the last check of the last epoch (or at ``trainer.max_steps``) ends nothing early: that
    run trained to the end it was given, and a resume with more epochs trains on.
    """

    stopped = False

    def _run_early_stopping_check(self, trainer) -> None:
        before = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and not before and not _at_the_end(trainer):
            self.stopped = True

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience, self.stopped_epoch, self.stopped = patience, 0, False
        if hasattr(self, "stopping_reason"):  # Lightning 2.6 records why it stopped
            self.stopping_reason = type(self.stopping_reason)(0)  # NOT_STOPPED
            self.stopping_reason_message = None


def _at_the_end(trainer) -> bool:
    """Whether training ends here anyway: ``max_steps`` reached, or the last epoch's last batch
    (``trainer.limit_train_batches`` counted) done."""
    loop = trainer.fit_loop.epoch_loop
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    # the epoch loop's own test (Lightning 2.x), else the data's end
    epoch_done = getattr(loop, "_num_ready_batches_reached", lambda: loop.batch_progress.is_last_batch)()
    return last_epoch and bool(epoch_done)
