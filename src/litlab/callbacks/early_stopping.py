"""Early stopping that says whether it ended the run, with the command's settings on a resume."""

from __future__ import annotations

from typing import Any

import torch
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
    never stopped. Whether the stop ended the run early is told where it takes effect, at the
    window's end: a window that ends with the last epoch (or at ``trainer.max_steps``) trained all
    the run was given. A later check within the window (``trainer.val_check_interval`` below
    ``trainer.accumulate_grad_batches``) that does not call for a stop, as the score improved,
    cancels the waiting one.

    Under ``averaging=swa`` validation measures the live weights before SWA's first update and the
    average from then on. At the first validation of the average the best score and the count of
    checks without improvement start over (``restart_best``, as best.ckpt's competition does), so
    averages are compared with averages: a best of the live weights from before the start, which
    the average rarely beats, stopped the run after ``patience`` checks of averages however much
    they improved. This happens once per run (a resume after it carries on with the checkpoint's
    best and count); under ``averaging=ema``, which validates averages from the first step, nothing
    starts over. Only this class starts over (``callbacks=early_stopping``): Lightning's own
    ``EarlyStopping`` given as a ``_target_`` keeps comparing averages with the live weights' best.
    """

    stopped = False

    def _run_early_stopping_check(self, trainer) -> None:
        before, waiting = trainer.should_stop, self.on_train_batch_end == self._stop_at_window_end
        super()._run_early_stopping_check(trainer)
        if before or not (trainer.should_stop or waiting):
            return
        if not trainer.should_stop:  # an improvement within the window: the stop waiting for its end is off
            self.on_train_batch_end = None
            self._not_stopped()
        elif gradients_pending(trainer):  # the same on every rank, as the stop itself
            trainer.should_stop = False
            # set only while a stop waits (Lightning calls a hook once it is callable): the
            # batches before pay no per-batch call to early stopping
            self.on_train_batch_end = self._stop_at_window_end
        else:
            self._stop(trainer)

    def _stop_at_window_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Stops after the batch that ends the accumulation window (the epoch's last at the latest)."""
        if not gradients_pending(trainer):
            self.on_train_batch_end = None
            self._stop(trainer)

    def _stop(self, trainer) -> None:
        """Ends training here; ``stopped`` unless it ends here anyway (the last epoch's last batch,
        ``trainer.max_steps``)."""
        trainer.should_stop = True
        self.stopped = not _at_the_end(trainer)

    def _not_stopped(self) -> None:
        """The state of a run that early stopping has not stopped (yet)."""
        self.stopped_epoch, self.stopped = 0, False
        if hasattr(self, "stopping_reason"):  # Lightning 2.6 records why it stopped
            self.stopping_reason = type(self.stopping_reason)(0)  # NOT_STOPPED
            self.stopping_reason_message = None

    def restart_best(self) -> None:
        """Forgets the best score and the checks without improvement so far: the next check is an
        improvement whatever its score, and later ones compete with it. Weight averaging calls it at
        SWA's first validation of the average, before that validation's check."""
        # the best score Lightning's __init__ starts from (it has no function of its own to call)
        self.best_score = torch.tensor(torch.inf if self.monitor_op == torch.lt else -torch.inf)
        self.wait_count = 0

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
        self._not_stopped()


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
