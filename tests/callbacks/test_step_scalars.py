"""Step scalars go straight to the loggers, at Lightning's step numbers, flushed sparingly."""

from __future__ import annotations

from unittest import mock

import pytest

from litlab.tensorboard_logger import TensorBoardLogger
from litlab.train import train


def test_step_scalars_land_every_log_every_n_steps(cfg_factory, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # digits: 19 training steps per epoch, 2 epochs; scalars every 5 steps
    train(cfg_factory(["model=mlp", "logger=tensorboard", "trainer.log_every_n_steps=5", "test=false"]))
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    losses = acc.Scalars("train/loss_step")
    # Lightning writes on_step values when (batches already stepped + 1) is a multiple of 5,
    # at the step number "batches already stepped"
    assert [e.step for e in losses] == [4, 9, 14, 19, 24, 29, 34]
    assert all(0 < e.value < 5 for e in losses)
    assert [e.step for e in acc.Scalars("grad/norm")] == [4, 9, 14, 19, 24, 29, 34]


def test_save_flushes_at_most_every_flush_every_s(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", flush_every_s=3600)
    with mock.patch.object(logger.experiment, "flush") as flush:
        for step in range(5):
            logger.log_metrics({"x": float(step)}, step=step)
            logger.save()
        assert flush.call_count == 1  # the first save; the next 4 fall within the hour
        logger.finalize("success")
        assert flush.call_count >= 2  # the end of the run always flushes


@pytest.mark.parametrize("status", ["success", "failed"])
def test_every_scalar_is_on_disk_after_finalize(tmp_path, status):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", flush_every_s=3600)
    for step in range(20):
        logger.log_metrics({"x": float(step)}, step=step)
        logger.save()
    logger.finalize(status)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("x")] == [float(s) for s in range(20)]


def test_other_ranks_neither_write_nor_sync():
    import torch

    from litlab.callbacks.log_steps import log_step_scalars

    class Rank1:
        is_global_zero = False

        @property
        def loggers(self):
            raise AssertionError("a rank other than 0 must not touch the loggers")

    assert log_step_scalars(Rank1(), {"train/loss_step": torch.tensor(0.5)}) == {}
