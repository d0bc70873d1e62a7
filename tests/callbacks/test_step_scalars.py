"""Step scalars go straight to the loggers, at Lightning's step numbers, flushed sparingly."""

from __future__ import annotations

from unittest import mock

import pytest

from litlab.tensorboard_logger import TensorBoardLogger
from litlab.training import train


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


def test_gradient_accumulation_writes_one_loss_per_optimizer_step(cfg_factory, tmp_path):
    """Each micro-batch wrote its own loss at the optimizer step's number: three points per step."""
    import csv

    # 19 batches per epoch, 4 per optimizer step: 5 steps per epoch (the last of 3 batches)
    train(cfg_factory(["model=mlp", "logger=csv", "trainer.log_every_n_steps=1", "test=false",
                       "+trainer.accumulate_grad_batches=4"]))
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as f:
        losses = [(int(r["step"]), float(r["train/loss_step"])) for r in csv.DictReader(f) if r["train/loss_step"]]
    assert [step for step, _ in losses] == list(range(10))
    assert all(0 < value < 5 for _, value in losses)


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


def _scalar_events(folder) -> list[tuple[int, dict[str, float]]]:
    """(step, {tag: value}) of every event holding scalars, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():  # as written, not migrated to tensors
            values = {v.tag: v.simple_value for v in event.summary.value if v.HasField("simple_value")}
            if values:
                out.append((event.step, values))
    return out


def test_one_event_per_step_holds_all_its_scalars(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", flush_every_s=3600)
    logger.log_metrics({"train/loss_step": 0.5}, step=4)
    logger.log_metrics({"grad/norm": 2.0}, step=4)  # same step: the same event
    logger.log_metrics({"val/acc": 0.75, "val/loss": 1.25}, step=9)
    logger.log_metrics({"lr": {"group0": 0.1, "group1": 0.2}}, step=9)  # a dict: Lightning's grouped curves
    with pytest.raises(ValueError, match=r"bad=.*not a number"):
        logger.log_metrics({"bad": "text"}, step=9)
    logger.finalize("success")
    assert _scalar_events(tmp_path / "tb") == [(4, {"train/loss_step": 0.5, "grad/norm": 2.0}),
                                               (9, {"val/acc": 0.75, "val/loss": 1.25})]
    assert {p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()} == {"lr_group0", "lr_group1"}


def test_a_training_step_writes_one_event_for_its_loss_and_gradient_norm(cfg_factory, tmp_path):
    train(cfg_factory(["model=mlp", "logger=tensorboard", "trainer.log_every_n_steps=5", "test=false"]))
    events = _scalar_events(tmp_path / "run" / "tensorboard")
    step_events = [(step, set(values)) for step, values in events if "train/loss_step" in values]
    assert [s for s, _ in step_events] == [4, 9, 14, 19, 24, 29, 34]
    # the gradient norm of each of those steps is in the same event (an epoch's first step also
    # carries the learning rate the LR monitor logged at that step)
    assert all({"grad/norm", "train/loss_step"} <= tags for _, tags in step_events)
    assert sum("grad/norm" in values for _, values in events) == 7
