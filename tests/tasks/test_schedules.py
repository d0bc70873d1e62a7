"""Schedules stepped per optimizer step (model.scheduler_interval=step) and the linear warm-up
(model.warmup_epochs): the rate each optimizer step applies, the rate the monitor logs, resumes.

Runs are tiny: model=mlp on 6 training batches an epoch (6 optimizer steps), one validation batch.
"""

from __future__ import annotations

import csv
import functools
import math

import lightning.pytorch as L
import pytest
import torch

from litlab.errors import LitlabError

BASE = 3e-3  # model.optimizer.lr
STEPS = 6  # optimizer steps per epoch
TINY = ["model=mlp", "test=false", "+trainer.limit_train_batches=6", "+trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1"]


class AppliedRates(L.Callback):
    """The rate of the first parameter group at each optimizer step, read inside the step (after
    the gradients are there, before the parameters change): the rate the step applies."""

    def __init__(self):
        self.rates: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates[trainer.global_step] = optimizer.param_groups[0]["lr"]


def _train(cfg_factory, monkeypatch, overrides: list[str], name: str = "run") -> dict[int, float]:
    """Trains in-process and returns the applied rate of every optimizer step."""
    from litlab import build
    from litlab.training import train

    probe = AppliedRates()
    real = build.build_callbacks
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), probe])
    train(cfg_factory([*TINY, *overrides], name=name))
    monkeypatch.setattr("litlab.training.build_callbacks", real)
    return probe.rates


def _logged(run_dir) -> dict[int, float]:
    """``lr-AdamW`` of the run's metrics.csv by step."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["lr-AdamW"]) for r in csv.DictReader(f) if r.get("lr-AdamW")}


def _cosine(step: float, period: float) -> float:
    return BASE * (1 + math.cos(math.pi * step / period)) / 2


def test_step_interval_follows_the_cosine_over_optimizer_steps_and_warmup_hands_over(cfg_factory, tmp_path,
                                                                                      monkeypatch):
    """The cosine (T_max = trainer.max_epochs = 2 epochs) decays over the run's 12 optimizer steps;
    a warm-up of 0.5 epochs (3 steps) scales its first steps by (step + 1) / 3 and then gives the
    schedule's own rates, bit for bit; the monitor logs the rate each step applied."""
    plain = _train(cfg_factory, monkeypatch, ["model.scheduler_interval=step"], name="plain")
    assert sorted(plain) == list(range(2 * STEPS))
    for step, rate in plain.items():
        assert rate == pytest.approx(_cosine(step, 2 * STEPS), rel=1e-9), step
    warmed = _train(cfg_factory, monkeypatch, ["model.scheduler_interval=step", "model.warmup_epochs=0.5"],
                    name="warmed")
    assert [warmed[s] for s in range(3)] == pytest.approx([plain[s] * (s + 1) / 3 for s in range(3)], rel=1e-12)
    assert [warmed[s] for s in range(3, 2 * STEPS)] == [plain[s] for s in range(3, 2 * STEPS)]
    # the monitor follows model.scheduler_interval: every logging step here
    assert _logged(tmp_path / "plain") == plain
    assert _logged(tmp_path / "warmed") == warmed


def test_epoch_interval_is_unchanged_and_warmup_composes_with_it(cfg_factory, tmp_path, monkeypatch):
    """The default steps the cosine once per epoch: 3e-3 through epoch 1, 1.5e-3 through epoch 2,
    and the monitor logs once per epoch. A warm-up of one epoch ramps the first epoch's steps; the
    monitor then logs every step's rate (once per epoch it logged 3e-3 / 6 for the whole ramp)."""
    rates = _train(cfg_factory, monkeypatch, [])
    assert rates == {s: _cosine(s // STEPS, 2) for s in range(2 * STEPS)}
    assert _logged(tmp_path / "run") == {0: BASE, STEPS: rates[STEPS]}  # once per epoch, as it steps
    warmed = _train(cfg_factory, monkeypatch, ["model.warmup_epochs=1"], name="warm")
    assert [warmed[s] for s in range(STEPS)] == pytest.approx([BASE * (s + 1) / STEPS for s in range(STEPS)])
    assert [warmed[s] for s in range(STEPS, 2 * STEPS)] == [rates[s] for s in range(STEPS, 2 * STEPS)]
    assert _logged(tmp_path / "warm") == warmed


def test_the_monitor_logs_per_step_only_where_the_rate_changes_per_step(cfg_factory):
    """logging_interval: null is litlab's pick from the model's keys; a value the user gives is kept."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from litlab.build import build_callbacks

    def interval(overrides: list[str]) -> str:
        monitors = [c for c in build_callbacks(cfg_factory(overrides)) if isinstance(c, LearningRateMonitor)]
        assert len(monitors) == 1
        return monitors[0].logging_interval

    assert interval([]) == "epoch"
    assert interval(["model.warmup_epochs=0.5"]) == "step"
    assert interval(["model.scheduler_interval=step"]) == "step"
    assert interval(["model.warmup_epochs=0.5", "callbacks.learning_rate_monitor.logging_interval=epoch"]) == "epoch"
    assert interval(["callbacks.learning_rate_monitor.logging_interval=step"]) == "step"


def test_warmup_before_a_plateau_schedule_and_without_a_schedule(cfg_factory, monkeypatch):
    """The plateau (threshold=1: val/loss never improves enough) halves the schedule's own rate after
    epochs 1 and 2, within a warm-up of 2.5 epochs (15 steps), not the warmed one; with
    model.scheduler=null the warm-up rises to the constant rate."""
    plateau = ["model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau", "~model.scheduler.T_max",
               "+model.scheduler.patience=0", "+model.scheduler.threshold=1.0", "+model.scheduler.factor=0.5",
               "trainer.max_epochs=3", "model.warmup_epochs=2.5"]
    rates = _train(cfg_factory, monkeypatch, plateau, name="plateau")
    scheduled = [BASE] * STEPS + [BASE / 2] * STEPS + [BASE / 4] * STEPS
    assert [rates[s] for s in range(3 * STEPS)] == pytest.approx(
        [rate * min(1.0, (s + 1) / 15) for s, rate in enumerate(scheduled)], rel=1e-12)
    rates = _train(cfg_factory, monkeypatch, ["model.scheduler=null", "model.warmup_epochs=1"], name="constant")
    assert [rates[s] for s in range(2 * STEPS)] == pytest.approx([BASE * min(1.0, (s + 1) / STEPS)
                                                                  for s in range(2 * STEPS)], rel=1e-12)


def test_a_step_run_cut_by_max_steps_resumes_on_the_same_curve(cfg_factory, tmp_path, monkeypatch):
    """Cut within the first epoch, during the warm-up, and resumed from last.ckpt: the same rates
    and the same weights as the run trained through (the schedule converted to steps once)."""
    run = ["model.scheduler_interval=step", "model.warmup_epochs=1"]
    whole = _train(cfg_factory, monkeypatch, run, name="whole")
    cut = _train(cfg_factory, monkeypatch, [*run, "+trainer.max_steps=4"], name="cut")
    resumed = _train(cfg_factory, monkeypatch, [*run, "ckpt_path=last"], name="cut")
    assert sorted(cut) == [0, 1, 2, 3] and sorted(resumed) == list(range(4, 2 * STEPS))
    assert {**cut, **resumed} == whole
    a, b = (torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True) for name in ("whole", "cut"))
    assert a["global_step"] == b["global_step"] == 2 * STEPS
    assert a["lr_schedulers"][0]["T_max"] == b["lr_schedulers"][0]["T_max"] == 2 * STEPS
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0)


def test_a_resume_with_the_other_interval_is_refused(cfg_factory, monkeypatch):
    """A schedule stepped per optimizer step, resumed per epoch (or the other way round), would
    decay over the wrong length."""
    _train(cfg_factory, monkeypatch, ["model.scheduler_interval=step", "trainer.max_epochs=1"], name="steps")
    with pytest.raises(LitlabError, match=r"model\.scheduler_interval step in the checkpoint, epoch here"):
        _train(cfg_factory, monkeypatch, ["trainer.max_epochs=2", "ckpt_path=last"], name="steps")


def test_a_step_resume_whose_epochs_have_other_step_counts_is_refused(cfg_factory, tmp_path, monkeypatch):
    """The schedule kept the checkpoint's 6 steps per epoch (a cosine over 12 steps) while an epoch
    of the resume had 3 (here trainer.limit_train_batches; also data.batch_size, trainer.devices,
    trainer.accumulate_grad_batches): the rate reached 0 mid-run and climbed again. Refused at
    training start, before any step, naming both counts and the keys."""
    run = ["model.scheduler_interval=step", "model.warmup_epochs=0.5"]
    _train(cfg_factory, monkeypatch, [*run, "+trainer.max_steps=6"], name="cut")
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    before, record = last.read_bytes(), (tmp_path / "cut" / "metrics.json").read_bytes()
    with pytest.raises(LitlabError) as info:
        _train(cfg_factory, monkeypatch, [*run, "trainer.limit_train_batches=3", "ckpt_path=last"], name="cut")
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"ckpt_path={last} holds a learning-rate schedule stepped per optimizer step "
                       "(model.scheduler_interval=step), whose periods count the run's epochs of 6 optimizer steps; "
                       "here an epoch would have another number of optimizer steps (trainer.limit_train_batches 6 "
                       "in the checkpoint, 3 here), so the schedule would end at another point of the run. Resume "
                       "with the run's own data.batch_size, trainer.devices, trainer.num_nodes, "
                       "trainer.accumulate_grad_batches and trainer.limit_train_batches, on the same data, or train "
                       "a new run.")
    assert last.read_bytes() == before and (tmp_path / "cut" / "metrics.json").read_bytes() == record
    # the same counts resume
    assert sorted(_train(cfg_factory, monkeypatch, [*run, "ckpt_path=last"], name="cut")) == list(range(6, 2 * STEPS))


@pytest.mark.parametrize("schedule", [["model.scheduler=null"], []], ids=["warmup-only", "warmup-then-cosine"])
def test_a_resume_within_the_warmup_whose_epochs_have_other_step_counts_is_refused(cfg_factory, tmp_path,
                                                                                   monkeypatch, schedule):
    """A warm-up of one epoch (6 steps) cut at step 4 and resumed with 3 steps per epoch was taken:
    its length was counted again (3 steps), so it ended at step 4 instead of 6. Refused before
    anything is written; past the warm-up the count may change (the cosine here steps per epoch),
    and the run stays past it: resumed with 12 steps per epoch, its warm-up was counted again as 12
    steps, and steps 6 to 11 were warmed once more (the rate fell to 7/12 and climbed again)."""
    run = ["model.warmup_epochs=1", *schedule]
    _train(cfg_factory, monkeypatch, [*run, "+trainer.max_steps=4"], name="cut")
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    before, record = last.read_bytes(), (tmp_path / "cut" / "metrics.json").read_bytes()
    with pytest.raises(LitlabError) as info:
        _train(cfg_factory, monkeypatch, [*run, "trainer.limit_train_batches=3", "ckpt_path=last"], name="cut")
    assert last.read_bytes() == before and (tmp_path / "cut" / "metrics.json").read_bytes() == record
    # past the warm-up (at the end of the first epoch, step 6 of 6) a change resumes, on the
    # schedule's own rates, and the checkpoint keeps the warm-up's length and its count
    _train(cfg_factory, monkeypatch, [*run, "+trainer.max_steps=6", "ckpt_path=last"], name="cut")
    rates = _train(cfg_factory, monkeypatch, [*run, "trainer.limit_train_batches=12", "ckpt_path=last"], name="cut")
    # the second epoch's 12 batches
    assert rates == pytest.approx({s: BASE if schedule else _cosine(1, 2) for s in range(6, 18)}, rel=1e-12)
    assert _warmup_state(last) == [{"litlab_warmup_steps": 6, "litlab_steps_per_epoch": 6}]
    message = str(info.value)
    assert "\n" not in message
    assert ("was taken at optimizer step 4 of the run's learning-rate warm-up of 6 steps (model.warmup_epochs), "
            "whose length counts the run's epochs of 6 optimizer steps; here an epoch would have another number "
            "of optimizer steps (trainer.limit_train_batches 6 in the checkpoint, 3 here), so the warm-up would "
            "end at another point of the run." in message), message
    assert "on the same data (from a checkpoint past the warm-up they may change), or train a new run." in message


def test_a_warmup_resumed_on_data_with_other_step_counts_is_refused_when_training_starts(cfg_factory, tmp_path,
                                                                                        monkeypatch):
    """The run's data in another place (allowed: the same classes and sample shape) with twice the
    samples gave its epochs 12 steps instead of 6: a resume within the warm-up of 2 epochs counted
    it again as 24 steps. No setting tells before the data is there; training start refuses it."""
    from tests.helpers import write_npz

    small, large = write_npz(tmp_path / "small.npz", n=48), write_npz(tmp_path / "large.npz", n=96)
    run = ["data=npz", "data.batch_size=8", "trainer.limit_train_batches=1.0", "model.scheduler=null",
           "model.warmup_epochs=2", "logger=none"]  # every batch of the data (TINY takes 6)
    _train(cfg_factory, monkeypatch, [*run, f"data.path={small}", "trainer.max_epochs=1"], name="warm")
    last = tmp_path / "warm" / "checkpoints" / "last.ckpt"
    with pytest.raises(LitlabError, match=rf"^ckpt_path={last} was taken at optimizer step 6 of the run's "
                                          r"learning-rate warm-up of 12 steps \(model\.warmup_epochs\), whose length "
                                          r"counts the run's epochs of 6 optimizer steps; here an epoch would have 12 "
                                          r"optimizer steps, so the warm-up would end at another point of the run\. "
                                          r"Resume with the run's own data\.batch_size, .* on the same data \(from a "
                                          r"checkpoint past the warm-up they may change\), or train a new run\.$"):
        _train(cfg_factory, monkeypatch, [*run, f"data.path={large}", "ckpt_path=last"], name="warm")
    # what the checkpoint holds of the warm-up: its length, and the steps per epoch it counts
    assert _warmup_state(last) == [{"litlab_warmup_steps": 12, "litlab_steps_per_epoch": 6}]


def _warmup_state(path) -> list[dict]:
    """The learning-rate clock's state in the checkpoint at ``path``."""
    states = torch.load(path, weights_only=True)["callbacks"].values()
    return [s for s in states if "litlab_warmup_steps" in s]


def _schedule(cls, **keywords):
    return functools.partial(cls, **keywords)


def test_every_known_schedule_is_rebuilt_with_its_periods_in_steps():
    """The periods of torch's schedules count epochs in the config; under step they count 4x as many
    optimizer steps at 4 steps per epoch (defaults too: LinearLR's total_iters=5)."""
    from torch.optim import lr_scheduler as S

    from litlab.tasks.schedules import LearningRateClock

    cases = [(S.CosineAnnealingLR, {"T_max": 3}, "T_max", 12), (S.StepLR, {"step_size": 2}, "step_size", 8),
             (S.LinearLR, {}, "total_iters", 20), (S.ExponentialLR, {"gamma": 0.5}, "gamma", 0.5 ** 0.25),
             (S.CosineAnnealingWarmRestarts, {"T_0": 2}, "T_0", 8),
             (S.OneCycleLR, {"max_lr": 0.1, "epochs": 3, "steps_per_epoch": 1}, "total_steps", 12)]
    for cls, keywords, key, expected in cases:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        clock = LearningRateClock("step", 0, _schedule(cls, **keywords))
        scheduler = clock.factory(optimizer=optimizer)
        clock.bind(optimizer, scheduler)
        clock._count_steps(4)
        assert getattr(scheduler, key) == pytest.approx(expected), cls.__name__
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    clock = LearningRateClock("step", 0, _schedule(S.MultiStepLR, milestones=[1, 3]))
    scheduler = clock.factory(optimizer=optimizer)
    clock.bind(optimizer, scheduler)
    clock._count_steps(4)
    assert sorted(scheduler.milestones.elements()) == [4, 12]


@pytest.mark.parametrize("interval,warmup,scheduler,message", [
    ("steps", 0, None, r"model\.scheduler_interval must be epoch or step, got 'steps'"),
    ("epoch", -1, None, r"model\.warmup_epochs must be a number of epochs >= 0 .*got -1"),
    ("epoch", True, None, r"model\.warmup_epochs must be a number"),
    ("step", 0, _schedule(torch.optim.lr_scheduler.ReduceLROnPlateau),
     r"_target_=torch\.optim\.lr_scheduler\.ReduceLROnPlateau cannot step with model\.scheduler_interval=step: it "
     r"steps on val/loss"),
    ("step", 0, _schedule(torch.optim.lr_scheduler.CyclicLR, base_lr=0.01, max_lr=0.1),
     r"_target_=torch\.optim\.lr_scheduler\.CyclicLR cannot step with model\.scheduler_interval=step: litlab "
     r"converts the periods of torch's CosineAnnealingLR.*model\.scheduler_interval=epoch"),
])
def test_bad_settings_are_refused_naming_the_key(interval, warmup, scheduler, message):
    from litlab.models.mlp import MLP
    from litlab.tasks.classification import Classifier

    with pytest.raises(LitlabError, match=message):
        Classifier(MLP(input_shape=(4,), num_classes=2), functools.partial(torch.optim.SGD, lr=0.1),
                   scheduler, scheduler_interval=interval, warmup_epochs=warmup)
