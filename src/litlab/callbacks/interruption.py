"""Runs that are stopped keep their finished work and can be resumed exactly.

``EpochSeed`` makes all randomness of an epoch (shuffling, dropout, augmentation) a function of
(seed, epoch) alone, so a run resumed from an end-of-epoch checkpoint continues exactly as the
uninterrupted run would have. ``Interruption`` turns SIGTERM into the same graceful stop as
Ctrl-C and records the stop in ``metrics.json``.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning.pytorch as L

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


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


class Interruption(L.Callback):
    """SIGTERM (sent by schedulers before pre-emption, or ``kill``) stops training like Ctrl-C.

    On either, Lightning stops; this callback marks ``metrics.json`` ``status: interrupted``
    with how to resume. ``checkpoints/last.ckpt`` holds the last finished epoch (written
    atomically at each epoch end), and resuming from it restarts the unfinished epoch.

    Args:
        run_dir: the run's directory.
    """

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self._previous = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            try:
                self._previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            except ValueError:  # not the main thread
                self._previous = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        last = self.run_dir / "checkpoints" / "last.ckpt"
        resume = f"python -m litlab.train ckpt_path=last hydra.run.dir={self.run_dir} <same overrides>"
        update_metrics(self.run_dir, status="interrupted", error=f"interrupted ({exception or 'Ctrl-C'})",
                       epochs=trainer.current_epoch, global_step=trainer.global_step,
                       last_ckpt=str(last) if last.is_file() else None, resume=resume)
        log.warning("Interrupted at epoch %d, step %d. Resume with: %s", trainer.current_epoch,
                    trainer.global_step, resume)
