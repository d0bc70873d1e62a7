"""Early stopping that says whether it ended the run, with the command's settings on a resume."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping as _EarlyStopping

from litlab.callbacks.checkpoints import gradients_pending


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

    A check that stops in the middle of a ``trainer.accumulate_grad_batches`` window (at a
    validation within an epoch) lets the window finish first. The window's first gradients wait in
    ``.grad``, which no checkpoint holds, so last.ckpt is never written within a window
    (``checkpoints.gradients_pending``): a run stopped there left last.ckpt older than its final
    weights (none at all in the first epoch) and dropped those batches. After the window's
    optimizer step Lightning validates once more, and last.ckpt holds the final weights with the
    training data's position, from which a resume with a larger patience goes on as the run that
    never stopped.
    """

    stopped = False

    def _run_early_stopping_check(self, trainer) -> None:
        before = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and not before:
            if not _at_the_end(trainer):
                self.stopped = True
            if gradients_pending(trainer):  # the same on every rank, as the stop itself
                trainer.should_stop = False
                # set only while a stop waits (Lightning calls a hook once it is callable): the
                # batches before pay no per-batch call to early stopping
                self.on_train_batch_end = self._stop_at_window_end

    def _stop_at_window_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Stops after the batch that ends the accumulation window (the epoch's last at the latest)."""
        if not gradients_pending(trainer):
            trainer.should_stop = True
            self.on_train_batch_end = None

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
