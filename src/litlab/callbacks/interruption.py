"""Runs that are stopped keep their finished work and can be resumed exactly.

``EpochSeed`` makes all randomness of an epoch (shuffling, dropout, augmentation) a function of
(seed, epoch) alone, so a run resumed from an end-of-epoch checkpoint continues exactly as the
uninterrupted run would have. ``Interruption`` stops a run on Ctrl-C or SIGTERM at the end of a
batch and records the stop in ``metrics.json``.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litlab.reporting.run_files import update_metrics

log = logging.getLogger(__name__)


class EpochSeed(L.Callback):
    """Reseeds Python, NumPy and torch at the start of every training epoch.

    Args:
        seed: the run's ``seed``.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a different stream per epoch and per rank; the data loader's shuffle draws from it
        L.seed_everything(self.seed + 100_003 * trainer.current_epoch + trainer.global_rank, workers=True,
                          verbose=False)


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interruption(L.Callback):
    """Ctrl-C (SIGINT) and SIGTERM (sent by schedulers before pre-emption, or ``kill``) stop
    training at the end of the current batch, never in the middle of one.

    Nothing is raised from inside a signal handler on the first signal: an exception thrown at an
    arbitrary bytecode can leave a lock held (the TensorBoard writer's queue, a data loader's) and
    the shutdown then waits on it forever. SIGTERM uses Lightning's own flag, which it checks after
    every batch (and, with several processes, broadcasts from rank 0 so all ranks stop at the same
    step). Ctrl-C sets this callback's flag, checked at the end of every training and validation
    batch; a second Ctrl-C stops at once, for a batch that never ends. With several processes,
    Ctrl-C keeps Python's immediate stop.

    On any of these this callback marks ``metrics.json`` ``status: interrupted`` with how to
    resume. ``checkpoints/last.ckpt`` holds the last finished epoch (written atomically at each
    epoch end), and resuming from it restarts the unfinished epoch.

    Args:
        run_dir: the run's directory.
    """

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self._previous = None
        self._signalled: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._signalled = None
        if stage != "fit" or trainer.world_size > 1:
            return
        try:
            self._previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
        except ValueError:  # not the main thread
            self._previous = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_ctrl_c(self, signum, frame) -> None:
        if self._signalled is not None:
            raise KeyboardInterrupt(f"signal {_signal_name(signum)}, twice")
        self._signalled = _signal_name(signum)
        log.warning("Ctrl-C: stopping after this batch (press Ctrl-C again to stop at once)")

    def _stop_if_signalled(self) -> None:
        if self._signalled is not None:
            raise KeyboardInterrupt(f"signal {self._signalled}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_if_signalled()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or not trainer.is_global_zero:
            return
        if isinstance(exception, SIGTERMException):
            exception = "signal SIGTERM"
        last = self.run_dir / "checkpoints" / "last.ckpt"
        resume = f"python -m litlab.train ckpt_path=last hydra.run.dir={self.run_dir} <same overrides>"
        update_metrics(self.run_dir, status="interrupted", error=f"interrupted ({exception or 'Ctrl-C'})",
                       epochs=trainer.current_epoch, global_step=trainer.global_step,
                       last_ckpt=str(last) if last.is_file() else None, resume=resume)
        log.warning("Interrupted at epoch %d, step %d. Resume with: %s", trainer.current_epoch,
                    trainer.global_step, resume)
