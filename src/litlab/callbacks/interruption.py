"""Runs that are stopped keep their finished work and can be resumed exactly.

``EpochSeed`` makes all randomness of an epoch (shuffling, dropout, augmentation) a function of
(seed, epoch) alone, so a run resumed from an end-of-epoch checkpoint continues exactly as the
uninterrupted run would have. ``Interruption`` stops a run on Ctrl-C or SIGTERM at the end of a
batch, on all ranks at the same step, and records the stop in ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litlab.callbacks.checkpoints import epoch_finished
from litlab.data.resumable_loader import start_at_checkpoint_position
from litlab.reporting.run_files import update_metrics
from litlab.run_commands import resume_command
from litlab.run_folders import recorded_start
from litlab.seeding import seed_everything

log = logging.getLogger(__name__)


class EpochSeed(L.Callback):
    """Reseeds Python, NumPy and torch at the start of every training epoch, and makes a run that
    resumes within an epoch start at its checkpoint's batch.

    Both make a resume continue as the uninterrupted run would have, whatever the LightningModule,
    so the callback every run keeps (``callbacks=none`` included) does them.

    Args:
        seed: the run's ``seed``.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # gives the checkpoint's position to a training loader built before the restore (Lightning
        # #20550), which would serve the resumed epoch from its first batch; before the module's own
        # on_train_start, which Lightning calls after every callback's
        start_at_checkpoint_position(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a different stream per epoch and per rank; the data loader's shuffle draws from it
        seed = (self.seed + 100_003 * trainer.current_epoch + trainer.global_rank) % 2**32
        # on a CPU run, without torch.manual_seed's queued seedings of unused devices (each with a
        # formatted stack trace: ~0.25 MiB of source lines read at every epoch)
        seed_everything(seed, cpu_only=isinstance(trainer.accelerator, CPUAccelerator), verbose=False)


def _skip_lightnings_sigterm_broadcast(trainer: L.Trainer) -> None:
    """Lightning broadcasts rank 0's SIGTERM flag before every training step: a collective and a
    host sync (``.item()``) per step, ~15 % of a small model's ddp_cpu throughput and a stall of
    the GPU's queue every step. Under ``Interruption`` that flag is never raised with several
    processes (its own all-reduce every ``CHECK_EVERY`` batches decides), so the broadcast is
    skipped. A Lightning without it is left as it is."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if hasattr(loop, "_broadcast_sigterm_tensor"):
        loop._broadcast_sigterm_tensor = _nothing


def _nothing() -> None:
    return None


def started_from(trainer: L.Trainer, run_dir: Path) -> Path | None:
    """The checkpoint the training of ``trainer`` started from, absolute (the command's folder is
    the process's: ``hydra.job.chdir`` is refused): its ``ckpt_path`` once Lightning restored it,
    and before that, or while testing (where ``ckpt_path`` names the tested checkpoint), the one
    ``train`` recorded in the run's ``metrics.json`` as the run began. Without that record a stop
    while the data was set up, before the restore, advised starting over. None for a new run."""
    path = getattr(trainer, "ckpt_path", None)
    if path and not getattr(trainer, "testing", False):
        return Path(path).absolute()
    recorded = recorded_start(run_dir)
    return None if recorded is None else Path(recorded)


def epochs_trained(trainer: L.Trainer) -> dict:
    """``epochs``: the training epochs that ran all their batches, and ``cut_epoch_batches``: the
    batches run of the epoch after them where a stop cut it short (``trainer.max_steps``, early
    stopping at a validation within it, a signal), for metrics.json. Lightning's ``current_epoch``
    counts an epoch that max_steps or early stopping ended as finished and one a signal cut as not:
    a run cut within its first epoch recorded ``epochs: 1`` or ``0`` for the same batches."""
    progress = trainer.fit_loop.epoch_progress.current
    if progress.started == 0 or epoch_finished(trainer):
        return {"epochs": progress.completed}
    return {"epochs": progress.started - 1,
            "cut_epoch_batches": trainer.fit_loop.epoch_loop.batch_progress.current.completed}


class Interruption(L.Callback):
    """Ctrl-C (SIGINT) and SIGTERM (sent by schedulers before pre-emption, or ``kill``) stop the
    run at the end of a batch, never in the middle of one; a second signal stops at once.

    Nothing is raised inside the signal handler: an exception thrown at an arbitrary bytecode
    can leave a lock held (the TensorBoard writer's, a data loader's) and hang the shutdown, and
    a collective started there deadlocks with the all-reduce the other ranks are in (Lightning's
    own SIGTERM handler broadcasts from inside it). So this callback replaces Lightning's handler
    each time Lightning installs one (Lightning restores the previous handlers at the end of every
    ``fit`` and ``test``), and the handler only notes the signal:

    * one process: it raises Lightning's stop flag, which Lightning checks after every training
      and evaluation batch;
    * several processes: every ``CHECK_EVERY`` training batches, at an epoch's last one and at
      the end of every validation and test epoch, all ranks take the maximum of their notes (one
      small all-reduce), and if any rank was signalled all stop at the same point. Lightning's
      flag is not used there: each rank checks it on its own, so rank 0 could stop one step
      before the others and leave them waiting in the next all-reduce; and Lightning's broadcast
      of it before every step is skipped.

    On a stop this callback marks ``metrics.json`` ``status: interrupted`` with how to resume, and
    the process exits with 128 + the signal number (130 after Ctrl-C, 143 after SIGTERM).
    ``checkpoints/last.ckpt`` (written atomically) holds the last point a resume continues exactly:
    an epoch's end, or a validation within an epoch (``trainer.val_check_interval``) that did not
    fall in the middle of a ``trainer.accumulate_grad_batches`` window; a resume from it retrains
    the batches trained since. A run started from another run's checkpoint and stopped before it
    wrote one of its own resumes from that checkpoint again, in its folder (``started_from``).

    Args:
        run_dir: the run's directory.
    """

    CHECK_EVERY = 16

    def __init__(self, run_dir: str, task: str = "train"):
        self.run_dir = Path(run_dir)
        self.task = task
        self._trainer: L.Trainer | None = None
        self._signum: int | None = None
        self._pid: int | None = None  # the process that installed the handler (data loader workers inherit it)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # a signal between fit and the test that follows it stops the test
            self._signum = None

    def _take_over_signals(self, trainer: L.Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._trainer = trainer
        self._pid = os.getpid()  # also where a forked DDP rank finds its parent's handler installed
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) != self._on_signal:
                signal.signal(signum, self._on_signal)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals(trainer)
        if trainer.world_size > 1:
            _skip_lightnings_sigterm_broadcast(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals(trainer)

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._signum is not None:
            raise KeyboardInterrupt(f"signal {name}, a second time")
        self._signum = signum
        if self._pid is not None and os.getpid() != self._pid:
            # A data loader worker, forked with this handler, got the signal too (Ctrl-C and a
            # scheduler's SIGTERM reach the whole process group): it notes it silently and serves
            # on. Each worker had logged "SIGINT received" (5 lines for one Ctrl-C with 2 workers),
            # and one that exited, as torch's do on Ctrl-C, would starve the batches its process
            # still takes before the stop (a validation's first, up to CHECK_EVERY under DDP):
            # "DataLoader worker exited unexpectedly". The process shuts its workers down as it
            # stops; a second signal raises KeyboardInterrupt above, which torch's worker loop ends
            # quietly, as in the process itself.
            return
        if self._trainer is not None and self._trainer.world_size > 1:
            log.warning("%s received: stopping within %d batches, on all ranks at the same one (send it "
                        "again to stop at once)", name, self.CHECK_EVERY)
            return
        connector = getattr(self._trainer, "_signal_connector", None)
        if connector is None or not hasattr(connector, "received_sigterm"):
            raise KeyboardInterrupt(f"signal {name}")  # a Lightning without the flag: stop now
        connector.received_sigterm = True
        log.warning("%s received: stopping at the end of this batch (send it again to stop at once)", name)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.world_size > 1 and ((batch_idx + 1) % self.CHECK_EVERY == 0 or trainer.is_last_batch):
            self._stop_if_any_rank_was_signalled(pl_module)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._stop_evaluation_if_signalled(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._stop_evaluation_if_signalled(trainer)

    def _stop_evaluation_if_signalled(self, trainer: L.Trainer) -> None:
        """Lightning checks the stop flag after training batches only: a signal during a validation
        or the test was acknowledged, then the whole evaluation ran and the run ended "completed"
        (several processes stop at the evaluation's end, which they all reach)."""
        if self._signum is not None and trainer.world_size == 1:
            raise SIGTERMException()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # evaluation batches may differ in number between ranks; the epoch end is reached by all
        if trainer.world_size > 1:
            self._stop_if_any_rank_was_signalled(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            self._stop_if_any_rank_was_signalled(pl_module)

    def _stop_if_any_rank_was_signalled(self, pl_module: L.LightningModule) -> None:
        """A collective: every rank must call it at the same point."""
        note = torch.tensor([self._signum or 0], dtype=torch.int32, device=pl_module.device)
        torch.distributed.all_reduce(note, op=torch.distributed.ReduceOp.MAX)
        signum = int(note.item())
        if signum:
            self._signum = signum
            raise SIGTERMException()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if isinstance(exception, SIGTERMException):
            exception.signum = self._signum or signal.SIGTERM  # the exit status (litlab.entry)
            what = f"signal {signal.Signals(exception.signum).name}"
        else:
            what = str(exception) or "Ctrl-C"
        if not trainer.is_global_zero:
            return
        if self.task != "train":  # an evaluation: nothing to resume, the same command starts it again
            update_metrics(self.run_dir, status="interrupted", error=f"interrupted ({what})", task=self.task)
            log.warning("Interrupted during the %s; nothing was recorded as its result.", self.task)
            return
        last = self.run_dir / "checkpoints" / "last.ckpt"
        started = started_from(trainer, self.run_dir)
        # stopped before a checkpoint of its own: the one it started from starts it again in its
        # folder, which takes that command (run_folders._resumes_unfinished_start)
        again = started is not None and not any(last.parent.glob("*.ckpt"))
        if last.is_file():
            resume = resume_command(self.run_dir)
        elif again:
            resume = resume_command(self.run_dir, started)
        else:  # stopped before its first checkpoint: nothing to resume from, the folder may start over
            resume = (f"no checkpoint yet, nothing to resume; start over in a new folder (or delete {self.run_dir} "
                      f"first)")
        # the best checkpoint so far and its score (val/acc by default), as a finished run records them
        best = trainer.checkpoint_callback
        so_far = ({best.monitor: float(best.best_model_score), "best_ckpt": best.best_model_path}
                  if best is not None and best.monitor and best.best_model_score is not None else {})
        # before Lightning restored the checkpoint the run started from, the trainer's counts are not the run's
        restored = started is None or bool(getattr(trainer, "ckpt_path", None) or getattr(trainer, "testing", False))
        counts = {**epochs_trained(trainer), "global_step": trainer.global_step} if restored else {}
        update_metrics(self.run_dir, status="interrupted", error=f"interrupted ({what})",
                       last_ckpt=str(last) if last.is_file() else None, resume=resume,
                       started_from=None if started is None else str(started), **counts, **so_far)
        log.warning("Interrupted %s. %s: %s", _where(trainer, counts),
                    "Resume with" if last.is_file() or again else "Not resumable", resume)


def _where(trainer: L.Trainer, counts: dict) -> str:
    """Where the run stopped, for the log: epochs counted from 1, as the progress lines do."""
    if not counts:
        return "before the checkpoint it started from was restored"
    done, step = counts["epochs"], counts["global_step"]
    if getattr(trainer, "testing", False):
        return f"while testing, after {done} epoch(s) of training, step {step}"
    cut = counts.get("cut_epoch_batches")
    batches = "" if cut is None else f" and {cut} batch(es) of it"
    return f"in epoch {done + 1} after {done} finished epoch(s){batches}, step {step}"
