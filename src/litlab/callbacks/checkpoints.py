"""Checkpoints: best.ckpt and last.ckpt, written atomically."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from litlab.atomic_files import atomic_write
from litlab.errors import LitlabError


class _Checkpoints(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``last.ckpt`` at the end of every epoch, and whose
    ``state_key`` (the name of its state in checkpoints) is built once (Lightning formats it on
    every hook call, several times per training step).

    Since Lightning 2.6, ``save_last=True`` writes ``last.ckpt`` only when a best checkpoint is
    written at the same step: with ``save_top_k=1``, an epoch that does not improve the monitored
    value left ``last.ckpt`` at the last improving epoch, so an interrupted run resumed from there
    and lost the epochs since; and where validation does not run at every epoch's end, Lightning
    saves only after validation. Here an epoch's end always leaves ``last.ckpt`` holding it, and so
    does a validation within an epoch where the training loader's position goes into checkpoints
    (``data/resumable_loader.py``) and no gradients wait for the rest of an accumulation window
    (``gradients_pending``; see ``on_validation_end``).
    """

    _last_written_step: int | None = None
    _later_wins_ties = False  # after restart_best (SWA): a tie with the best replaces best.ckpt

    _keep_last = False
    """last.ckpt stays as it is (a checkpoint within an epoch that a resume could not continue exactly)"""

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        if self._keep_last:
            return
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _keep_last_current(self, trainer) -> None:
        # Lightning's own conditions for an epoch-end save (at validation's end trainer.training is False)
        if (not self.save_last or trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING
                or trainer.sanity_checking or self._last_written_step == trainer.global_step):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # an epoch cut in the middle of an accumulation window (trainer.max_time, Ctrl-C; early
        # stopping waits for the window's end): last.ckpt keeps the last checkpoint that a resume
        # continues exactly (gradients_pending)
        self._keep_last = gradients_pending(trainer)
        try:
            super().on_train_epoch_end(trainer, pl_module)
            # also where Lightning saves only after validation (validation every n-th epoch, or within
            # epochs): an epoch that ends without one, or after one inside it, would leave last.ckpt
            # behind (runs after the epoch's validation; a save at the same step is not repeated)
            self._keep_last_current(trainer)
        finally:
            self._keep_last = False

    def on_validation_end(self, trainer, pl_module) -> None:
        # A validation within a training epoch (val_check_interval) writes last.ckpt only where the
        # checkpoint holds the training loader's position (data_position_saved): elsewhere a resume
        # from the middle of an epoch restarts the epoch's data at its first batch while Lightning
        # counts the batches already done, so some are trained twice and the rest never. last.ckpt
        # then keeps what it held (an epoch's end or an earlier such validation), and a resume
        # redoes the rest. So it does in the middle of an accumulation window (gradients_pending):
        # last.ckpt keeps the last validation that ended a window, or the last epoch's end.
        keep = self._keep_last = _epoch_unfinished(trainer) and not (
            data_position_saved(trainer) and not gradients_pending(trainer))
        try:
            super().on_validation_end(trainer, pl_module)
        finally:
            self._keep_last = False
        if not keep and not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Marks in each checkpoint whether it was taken within an epoch (``within_epoch``), which a
        resume can continue only from the loader's position (``resume.open_resume``).

        A run that stops before its epoch's end (``trainer.max_steps``, ``trainer.max_time``, early
        stopping at a validation within the epoch) ends the epoch there: Lightning runs the epoch's end and
        writes last.ckpt counting the epoch as done, so a resume went on with the next epoch and
        never trained the rest of this one. With the loader's position saved, the checkpoint is
        written as one from within the epoch (the epoch is not counted as processed), which
        Lightning resumes at the next batch. (The epoch-end hooks of the cut epoch have run; they
        run again when the resumed epoch ends.)

        Taken in the middle of an accumulation window, it holds no loader position
        (``gradients_pending``): a resume from it is refused (``resume.check_continuable``)."""
        within = _epoch_unfinished(trainer)
        pending = gradients_pending(trainer)
        if pending:
            _drop_data_position(checkpoint)
        progress = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress")
        if within and progress and _at_epoch_end_hooks(progress["current"]):
            if data_position_saved(trainer) and not pending:
                for part in ("total", "current"):
                    progress[part]["processed"] -= 1
            elif not pending:  # resumed at the next epoch, as one that finished (trainer.overfit_batches): as before
                within = False
        state = (checkpoint.get("callbacks") or {}).get(self.state_key)
        if isinstance(state, dict):
            state["within_epoch"] = within

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            # the temporary files of writes that a kill -9 cut short (AtomicCheckpointIO): never complete
            for leftover in Path(self.dirpath).glob(".*.ckpt.*.tmp"):
                leftover.unlink(missing_ok=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning restores the best score only when the checkpoint's folder is unchanged; in a
        run folder that was moved or copied, the first epoch of the resume then wrote over a better
        best.ckpt. Where the folder's own best.ckpt is there, its state is taken as moved with it."""
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.normpath(old) != os.path.normpath(self.dirpath):
            moved = _relocated(state_dict, old, self.dirpath)
            if moved.get("best_model_path") and Path(moved["best_model_path"]).is_file():
                state_dict = moved
        super().load_state_dict(state_dict)
        self._later_wins_ties = bool(state_dict.get("later_wins_ties", False))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "later_wins_ties": self._later_wins_ties}

    def check_monitor_top_k(self, trainer, current=None) -> bool:
        """Lightning's rule (a strictly better score replaces best.ckpt), except after ``restart_best``:
        there a score equal to the best also replaces it, as a later average holds more epochs."""
        if (not self._later_wins_ties or current is None or self.save_top_k == -1
                or len(self.best_k_models) < self.save_top_k):
            return super().check_monitor_top_k(trainer, current)
        at_least = {"min": torch.le, "max": torch.ge}[self.mode]
        return trainer.strategy.reduce_boolean_decision(
            bool(at_least(current, self.best_k_models[self.kth_best_model_path])))

    def restart_best(self) -> None:
        """Forgets the best checkpoint so far: the next validation writes best.ckpt whatever its score,
        and later ones compete with it. Weight averaging calls it when validation first measures an
        average that starts after training does (SWA), so that best.ckpt is the best average, not a
        checkpoint of weights from before the average whose score the average's cannot beat. From
        then on a tie replaces best.ckpt too (``check_monitor_top_k``): the later average holds more
        epochs. last.ckpt is written as before."""
        self._later_wins_ties = True
        self.best_k_models, self.kth_best_model_path, self.best_model_path = {}, "", ""
        self.best_model_score = self.current_score = None
        self.kth_value = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = super().state_key
        return key

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Saving only at epoch ends (no every_n_train_steps, no train_time_interval), Lightning's
        # per-batch check always returns without saving, after reading the trainer's state (~6 µs
        # per step); it has no side effect to keep.
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def taken_within_epoch(ckpt: dict) -> bool:
    """Whether litlab's checkpoint callback wrote ``ckpt`` before the end of a training epoch (at a
    validation within it, or where the run stopped within it)."""
    return any(isinstance(state, dict) and state.get("within_epoch") for state in (ckpt.get("callbacks") or {}).values())


def data_position(ckpt: dict) -> dict | None:
    """The training loader's position within its epoch that ``ckpt`` holds (the fit loop's
    ``combined_loader`` state of ``ResumableLoader``: epoch, batches served, batches, world size),
    from which a resume continues the epoch; None where it holds none."""
    fit_loop = (ckpt.get("loops") or {}).get("fit_loop") or {}
    states = (fit_loop.get("state_dict") or {}).get("combined_loader") or []
    if states and all(isinstance(s, dict) and s.get("epoch") is not None for s in states):
        return states[0]
    return None


def holds_data_position(ckpt: dict) -> bool:
    """Whether ``ckpt`` holds the training loader's position within its epoch (``data_position``)."""
    return data_position(ckpt) is not None


def data_position_saved(trainer) -> bool:
    """Whether the checkpoints of this fit hold the training loader's position within an epoch:
    every training loader is a ``ResumableLoader`` whose order follows the epoch."""
    combined = getattr(trainer.fit_loop, "_combined_loader", None)
    return (combined is not None and all(getattr(dl, "resumable", False) for dl in combined.flattened)
            and hasattr(trainer.fit_loop, "_restart_stage"))  # Lightning's restart within an epoch (2.6 here)


def resumes_within_epoch(trainer) -> bool:
    """Whether a checkpoint taken now is resumed within the training epoch in progress: the epoch
    has batches left and the loader's position goes into checkpoints. A resume then trains the
    epoch's rest and runs its end again (also where a run stops before it: ``on_save_checkpoint``;
    in the middle of an accumulation window, from the earlier last.ckpt: ``gradients_pending``)."""
    return _epoch_unfinished(trainer) and data_position_saved(trainer)


def gradients_pending(trainer) -> bool:
    """Whether the last training batches' gradients wait in ``.grad`` for the rest of their
    ``trainer.accumulate_grad_batches`` window (Lightning steps after every n-th batch of an epoch
    and after its last). No checkpoint holds them: one taken now and resumed at the next batch
    stepped the window with its later batches only, and ended with other weights than the
    uninterrupted run. Such a checkpoint gets no loader position and is never written as
    last.ckpt, which keeps the last checkpoint at a window's end or an epoch's end (early stopping
    stops at the window's end instead: ``early_stopping.py``). The same on every rank (it counts
    batches)."""
    return (_epoch_unfinished(trainer) and trainer.accumulate_grad_batches > 1
            and trainer.fit_loop.epoch_loop._should_accumulate())


def _drop_data_position(checkpoint: dict) -> None:
    """Takes the training loader's position (and random state) out of ``checkpoint``: what
    ``data_position`` reads, left as a loader that has served nothing yet saves it."""
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    for state in (fit_loop.get("state_dict") or {}).get("combined_loader") or []:
        if isinstance(state, dict) and "epoch" in state:
            state.update(epoch=None, served=0)
            state.pop("random", None)


def _epoch_unfinished(trainer) -> bool:
    """Whether a checkpoint now is taken within a training epoch (not all its batches run)."""
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not epoch_finished(trainer)


def _at_epoch_end_hooks(progress: dict) -> bool:
    """Whether the fit loop's epoch progress is that of its epoch-end hooks (the epoch counted as
    processed, not yet as completed): Lightning resumes such a checkpoint at the next epoch."""
    return (progress["ready"] == progress["started"] == progress["processed"]
            and progress["completed"] == progress["processed"] - 1)


def epoch_finished(trainer) -> bool:
    """Whether the training epoch in progress has run all its batches (at its last batch's
    validation too, which Lightning runs before the epoch's end)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return epoch_loop.batch_progress.current.ready >= trainer.num_training_batches or epoch_loop.batch_progress.is_last_batch



def _relocated(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``state`` with every path inside the folder ``old`` moved to the folder ``new``."""
    def move(path):
        if isinstance(path, str) and path.startswith(old.rstrip(os.sep) + os.sep):
            return os.path.join(new, os.path.relpath(path, old))
        return path

    moved = {k: move(v) for k, v in state.items()}
    moved["best_k_models"] = {move(k): v for k, v in (state.get("best_k_models") or {}).items()}
    moved["dirpath"] = new
    return moved


def checkpoint_callback(dirpath: str, monitor: str = "val/acc", mode: str = "max", save_last: bool = True
                        ) -> ModelCheckpoint:
    """``best.ckpt`` (by ``monitor``) and ``last.ckpt`` in ``dirpath``, one file each."""
    return _Checkpoints(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                           save_last=save_last, auto_insert_metric_name=False, enable_version_counter=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it over the
    old one: a crash at any moment leaves either the previous or the new complete file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        try:
            atomic_write(path, lambda f: torch.save(checkpoint, f), fsync=True)
        except (OSError, RuntimeError) as e:
            # torch's zip writer reports a full disk as a RuntimeError ("[enforce fail at inline_container.cc]
            # unexpected pos ..."): any write failure of the file is one
            if isinstance(e, RuntimeError) and not any(k in str(e) for k in ("inline_container", "PytorchStreamWriter")):
                raise
            kept = "the previous one is kept" if path.exists() else "no earlier one exists"
            full = isinstance(e, RuntimeError) or e.errno in (errno.ENOSPC, errno.EDQUOT)
            why = e.strerror if isinstance(e, OSError) and e.strerror else "the file could not be written"
            try:
                why += f"; {shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
            except OSError:
                pass
            advice = "Free space on that disk or choose" if full else "Choose"
            raise LitlabError(f"could not write the checkpoint {path} ({why}); {kept}. {advice} another output "
                              f"folder (hydra.run.dir=DIR).") from None
