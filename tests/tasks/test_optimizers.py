"""Fused optimizer kernels: chosen automatically where torch has them, never against the config."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from litlab.errors import LitlabError
from litlab.tasks.optimizers import build_optimizer, check_optimizer_settings
from tests.helpers import train_twins


def _params():
    return list(nn.Linear(4, 3).parameters())


def _fused(opt: torch.optim.Optimizer) -> bool:
    return bool(opt.defaults.get("fused"))


@pytest.mark.parametrize("cls", [torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD, torch.optim.Adagrad])
def test_auto_fuses_optimizers_that_have_a_fused_kernel(cls):
    opt = build_optimizer(functools.partial(cls, lr=0.01), _params(), "auto")
    assert type(opt) is cls and _fused(opt)


def test_auto_leaves_the_rest_as_configured():
    assert not _fused(build_optimizer(functools.partial(torch.optim.RMSprop, lr=0.01), _params(), "auto"))
    # the user chose an implementation: kept
    opt = build_optimizer(functools.partial(torch.optim.AdamW, lr=0.01, foreach=True), _params(), "auto")
    assert not _fused(opt) and opt.defaults["foreach"] is True
    # sharded parameters (FSDP) and integer parameters are left alone
    assert not _fused(build_optimizer(functools.partial(torch.optim.AdamW), _params(), "auto", sharded=True))
    assert not _fused(build_optimizer(functools.partial(torch.optim.AdamW), _params(), False))


def test_true_insists_and_names_the_key():
    with pytest.raises(LitlabError, match=r"model.fused_optimizer=true cannot be honoured: torch has no fused RMSprop"):
        build_optimizer(functools.partial(torch.optim.RMSprop, lr=0.01), _params(), True)
    with pytest.raises(LitlabError, match="model.fused_optimizer must be true, false or auto"):
        build_optimizer(functools.partial(torch.optim.AdamW), _params(), "yes")


def test_fused_and_plain_adamw_take_the_same_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    twin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    twin.load_state_dict(net.state_dict())
    make = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-4)
    fused, plain = build_optimizer(make, net.parameters(), "auto"), build_optimizer(make, twin.parameters(), False)
    assert _fused(fused) and not _fused(plain)
    train_twins(((net, fused), (twin, plain)), steps=50)
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_bad_setting_fails_when_the_model_is_built(cfg_factory):
    from litlab.build import build_data, build_model

    cfg = cfg_factory(["model=mlp", "model.fused_optimizer=sometimes"])
    dm = build_data(cfg)
    with pytest.raises(LitlabError, match="model.fused_optimizer must be true, false or auto, got 'sometimes'"):
        build_model(cfg.model, dm.input_shape, dm.num_classes)


def test_optimizer_and_scheduler_settings_are_checked_when_the_model_is_built():
    adamw = functools.partial(torch.optim.AdamW, lr=3e-3)
    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=20)
    check_optimizer_settings(adamw, cosine)  # the defaults pass
    check_optimizer_settings(adamw, functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=0))
    with pytest.raises(LitlabError, match=r"model.optimizer: ValueError: Invalid learning rate: -1\. Check"):
        check_optimizer_settings(functools.partial(torch.optim.AdamW, lr=-1), cosine)
    with pytest.raises(LitlabError, match="model.optimizer: TypeError: .*unexpected keyword argument 'momentum'"):
        check_optimizer_settings(functools.partial(torch.optim.AdamW, momentum=0.9))
    # a period that is not a number of epochs: torch accepts it, and the rate would jump between its
    # two ends every epoch (-1, Lightning's "no limit") or fail at the first epoch's end
    for period in ("abc", -1, None):
        with pytest.raises(LitlabError, match=rf"model.scheduler.T_max={period!r}: the cosine schedule needs"):
            check_optimizer_settings(adamw, functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR,
                                                              T_max=period))
    # other schedulers' settings still fail where torch fails, once stepped
    with pytest.raises(LitlabError, match="model.scheduler: TypeError"):
        check_optimizer_settings(adamw, functools.partial(torch.optim.lr_scheduler.StepLR, step_size="abc"))


def test_optimizers_are_probed_as_training_steps_them():
    """L-BFGS (its step takes a closure) was refused as a model.scheduler error; SparseAdam (no dense
    gradients) and betas=[0.9] (IndexError) failed as tracebacks or a generic message."""
    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=3)
    check_optimizer_settings(functools.partial(torch.optim.LBFGS), cosine)
    with pytest.raises(LitlabError, match=r"model\.optimizer: RuntimeError: SparseAdam does not support dense"):
        check_optimizer_settings(functools.partial(torch.optim.SparseAdam), cosine)
    with pytest.raises(LitlabError, match=r"model\.optimizer: IndexError: list index out of range\. Check"):
        check_optimizer_settings(functools.partial(torch.optim.Adam, betas=[0.9]), cosine)


def test_torch_compile_arguments_it_refuses_name_model_compile():
    """model.compile={mode: bogus} was a double traceback and exit 1."""
    from litlab.models.speed_switches import apply_speed_switches

    for args, reason in (({"mode": "bogus"}, "Unrecognized mode=bogus"),
                         ({"bogus_arg": 1}, "unexpected keyword argument 'bogus_arg'")):
        with pytest.raises(LitlabError, match=rf"model\.compile=.*: torch\.compile refused these arguments .*{reason}"):
            apply_speed_switches(torch.nn.Linear(2, 2), compile=args)


def test_mixed_precision_that_unscales_gradients_gets_an_unfused_optimizer(cfg_factory, tmp_path):
    """bf16-mixed with gradient clipping crashed at the first step: Lightning refuses to clip for
    an optimizer that unscales inside its step, as fused ones do."""
    assert not _fused(build_optimizer(functools.partial(torch.optim.AdamW), _params(), "auto", unscales=True))
    with pytest.raises(LitlabError, match=r"fused_optimizer=true cannot be honoured: mixed precision with gradient"):
        build_optimizer(functools.partial(torch.optim.AdamW), _params(), True, unscales=True)
    from litlab.training import train

    train(cfg_factory(["model=mlp", "trainer.max_epochs=1", "trainer.precision=bf16-mixed",
                       "trainer.gradient_clip_val=0.5", "callbacks=none", "test=false"]))
    import json

    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


def test_a_cosine_of_zero_epochs_is_named_when_training_starts(cfg_factory):
    """T_max=0 with epochs to train divided by zero at the first epoch's end."""
    from litlab.training import train

    with pytest.raises(LitlabError, match=r"model\.scheduler\.T_max=0 with trainer\.max_epochs=2: the cosine"):
        train(cfg_factory(["model=mlp", "model.scheduler.T_max=0", "callbacks=none", "test=false"]))


@pytest.mark.parametrize("every", [
    ["trainer.check_val_every_n_epoch=2"],
    # by steps across epochs (19 batches an epoch): epochs 1 and 3 did not validate, and the rate
    # was halved after them too, on the val/loss of the validation before
    ["trainer.check_val_every_n_epoch=null", "+trainer.val_check_interval=38"],
])
def test_reduce_on_plateau_steps_with_the_validation_loss_of_each_validated_epoch(cfg_factory, tmp_path, every):
    """ReduceLROnPlateau was refused: its step needs the monitored value, which nothing passed."""
    import csv

    from litlab.training import train

    # threshold=1: val/loss never improves by 100 %, so every stepped epoch halves the rate
    plateau = ["model=mlp", "model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
               "~model.scheduler.T_max", "+model.scheduler.patience=0", "+model.scheduler.threshold=1.0",
               "+model.scheduler.factor=0.5", "trainer.max_epochs=5", *every]
    train(cfg_factory(plateau))
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as f:
        rates = [float(r["lr-AdamW"]) for r in csv.DictReader(f) if r.get("lr-AdamW")]
    # halved after epochs 2 and 4, the ones that validated; not after 1, 3 (stale val/loss) or 5
    assert rates == pytest.approx([3e-3, 3e-3, 1.5e-3, 1.5e-3, 7.5e-4])


def test_a_one_cycle_schedule_shorter_than_the_run_fails_before_training(cfg_factory, tmp_path):
    """It trained total_steps epochs, then failed with torch's 'Tried to step 3 times'."""
    from litlab.training import train

    cfg = cfg_factory(["model=mlp", "model.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR",
                       "~model.scheduler.T_max", "+model.scheduler.max_lr=0.01", "+model.scheduler.total_steps=2",
                       "trainer.max_epochs=3"])
    with pytest.raises(LitlabError, match=r"model\.scheduler\.total_steps=2 but trainer\.max_epochs=3: .*"
                                          r"would fail at epoch 3"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    cfg = cfg_factory(["model=mlp", "model.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR",
                       "~model.scheduler.T_max", "+model.scheduler.max_lr=0.01",
                       "+model.scheduler.total_steps=${trainer.max_epochs}", "trainer.max_epochs=3"], name="ok")
    train(cfg)


def test_a_cosine_period_shorter_than_the_run_is_named(cfg_factory, caplog):
    """T_max=2 over 4 epochs took the rate to 0 at epoch 3 and back up, without a word."""
    from litlab.training import train

    args = ["model=mlp", "logger=none", "test=false", "trainer.max_epochs=2"]
    with caplog.at_level("WARNING", logger="litlab.tasks.classification"):
        train(cfg_factory([*args, "model.scheduler.T_max=1"], name="short"))
        train(cfg_factory(args, name="default"))  # T_max follows max_epochs: no warning
    (record,) = [r for r in caplog.records if r.name == "litlab.tasks.classification"]
    assert record.getMessage().startswith("model.scheduler.T_max=1 is shorter than trainer.max_epochs=2: the cosine")
