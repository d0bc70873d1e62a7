"""The task's own values (model.*) are refused before the data is prepared: decoding an image
folder or an npz archive can take minutes, and the value was wrong from the start."""

from __future__ import annotations

import pytest

from litlab import training
from litlab.errors import LitlabError


@pytest.mark.parametrize("override,message", [
    ("model.label_smoothing=1.0", "model.label_smoothing must be a number in [0, 1), got 1.0"),
    ("model.fused_optimizer=maybe", "model.fused_optimizer must be true, false or auto, got 'maybe'"),
    ("model.scheduler.T_max=-1", "model.scheduler.T_max=-1: the cosine schedule needs a number of epochs"),
    ("+model.optimizer.betas=[0.9]", "model.optimizer: IndexError"),
    ("model.scheduler._target_=torch.optim.lr_scheduler.StepLR", "model.scheduler: TypeError"),
    ("model.scheduler_interval=batch", "model.scheduler_interval must be epoch or step, got 'batch'"),
    ("model.warmup_epochs=-1", "model.warmup_epochs must be a number of epochs >= 0"),
    ("model.scheduler_interval=step model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau "
     "~model.scheduler.T_max", "cannot step with model.scheduler_interval=step"),
])
def test_task_values_are_refused_before_the_data_is_prepared(cfg_factory, monkeypatch, override, message):
    def prepared(*args, **kwargs):
        raise AssertionError("the data was prepared before the model's values were checked")

    monkeypatch.setattr(training, "build_data", prepared)
    with pytest.raises(LitlabError) as info:
        training.train(cfg_factory(override.split()))
    assert message in str(info.value) and "\n" not in str(info.value)


class _Reached(Exception):
    pass


def test_a_model_config_without_these_keys_goes_on_to_the_data(cfg_factory, monkeypatch):
    """A task of the user's own may not have litlab's keys: the early check reads only those there."""
    def prepared(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(training, "build_data", prepared)
    with pytest.raises(_Reached):
        training.train(cfg_factory(["~model.scheduler", "~model.label_smoothing", "~model.fused_optimizer",
                                    "~model.scheduler_interval", "~model.warmup_epochs"]))


@pytest.mark.parametrize("override,message", [
    ("model.scheduler_interval=steps", "model.scheduler_interval must be epoch or step, got 'steps'"),
    ("model.warmup_epochs=-1", "model.warmup_epochs must be a number of epochs >= 0"),
])
def test_schedule_values_are_refused_before_hydra_makes_the_folder(override, message, tmp_path):
    """Refused only when the run started, its folder then held a failed run that refused the
    corrected command in the same hydra.run.dir."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=message):
        check_overrides([override, f"hydra.run.dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()
