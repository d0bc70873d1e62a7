"""EpochSeed seeds every generator a CPU run draws from exactly as Lightning's seed_everything."""

from __future__ import annotations

import random

import lightning.pytorch as L
import numpy as np
import torch

from litlab.callbacks.interruption import EpochSeed


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_epoch_seed_on_cpu_draws_the_same_numbers_as_seed_everything():
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit_loop.epoch_progress.current.completed = 3  # current_epoch == 3
    assert trainer.current_epoch == 3
    EpochSeed(seed=7).on_train_epoch_start(trainer, None)
    ours = _draws()
    L.seed_everything(7 + 100_003 * 3, workers=True, verbose=False)
    assert ours == _draws()
    EpochSeed(seed=7).on_train_epoch_start(trainer, None)
    assert ours == _draws()  # the same epoch always gives the same stream
    trainer.fit_loop.epoch_progress.current.completed = 4
    EpochSeed(seed=7).on_train_epoch_start(trainer, None)
    assert ours != _draws()  # and the next epoch another
