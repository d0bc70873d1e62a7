"""Random overrides of known keys: each gets a working config or one clear paragraph, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litlab.build import build_callbacks, build_data, build_loggers, build_model, build_trainer
from litlab.config_check import compose_checked
from litlab.errors import LitlabError

BASE = ["data=synthetic", "data.num_train=64", "data.num_val=16", "data.num_test=16", "data.shape=[1,8,8]",
        "model=mlp", "trainer.accelerator=cpu", "logger=none", "callbacks=none"]
KEYS = ["data.batch_size", "data.noise", "data.num_classes", "data.kind", "data.num_train", "data.shape",
        "model.optimizer.lr", "model.label_smoothing", "model.net.hidden_sizes", "model.net.dropout",
        "trainer.max_epochs", "trainer.precision", "trainer.devices", "trainer.accelerator",
        "trainer.log_every_n_steps", "seed", "data.augment.shift", "model.scheduler_interval", "model.warmup_epochs"]
GROUPS = ["model", "data", "trainer", "logger", "callbacks"]

values = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "null", "abc", "''", "[]", "[1,2]", "{a:1}", "-1", "0", "1e9", "16-mixed",
                     "bf16-mixed", "64", "auto", "gpu", "[1,8,8]", "[0]", "image", "sequence", "step", "epoch"]),
    st.text(alphabet="abc019.-_[]{},:= ", max_size=8),
)
key_override = st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}")
group_override = st.tuples(st.sampled_from(GROUPS), st.sampled_from(["mlp", "cnn", "nope", "cpu", "none", "csv",
                                                                      "synthetic", "x y"])).map(lambda kv: f"{kv[0]}={kv[1]}")


def _build(overrides: list[str], tmp_path) -> None:
    from omegaconf import open_dict

    cfg = compose_checked(BASE + overrides + [f"paths.data_dir={tmp_path}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    dm = build_data(cfg)
    build_model(cfg.model, dm.input_shape, dm.num_classes)
    build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))


@pytest.mark.slow
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.one_of(key_override, group_override), min_size=1, max_size=3))
def test_random_overrides_work_or_fail_clearly(overrides, tmp_path):
    try:
        _build(overrides, tmp_path)
    except LitlabError as e:
        message = str(e)
        assert message and "\n" not in message, message
        assert "Traceback" not in message


@pytest.mark.parametrize("overrides,match", [
    (["callbacks.model_checkpoint.monitor=val/accuracy"], r"callbacks\.model_checkpoint\.monitor=val/accuracy is not a "
                                                          r"metric that training logs; use one of val/acc, val/loss"),
    (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/acc_top"], r"early_stopping\.monitor=val/acc_top"),
    (["trainer.check_val_every_n_epoch=0"], r"trainer\.check_val_every_n_epoch must be an integer >= 1, got 0"),
    # the default mode=max kept the worst epoch of a loss, silently
    (["callbacks.model_checkpoint.monitor=val/loss"], r"callbacks\.model_checkpoint\.monitor=val/loss is best at its "
                                                      r"lowest, but callbacks\.model_checkpoint\.mode=max keeps the "
                                                      r"highest: the worst epoch\. Add callbacks\.model_checkpoint\.mode=min"),
    (["callbacks=early_stopping", "callbacks.early_stopping.mode=min"], r"early_stopping\.monitor=val/acc is best at "
                                                                        r"its highest"),
    (["+trainer.accumulate_grad_batches=0"], r"trainer\.accumulate_grad_batches must be an integer >= 1, got 0"),
    # Lightning took it as "no clipping", silently
    (["trainer.gradient_clip_val=-1"], r"trainer\.gradient_clip_val must be a number >= 0 \(0 or null: no clipping\), got -1"),
    (["+trainer.gradient_clip_algorithm=l2"], r"trainer\.gradient_clip_algorithm must be norm or value, got 'l2'"),
])
def test_settings_lightning_would_fail_on_mid_run_are_named_before_any_work(overrides, match, cfg_factory):
    """These ended in tracebacks after training had begun (a monitor found missing at the first
    validation, a division by zero in Lightning's loop)."""
    cfg = cfg_factory(overrides)
    with pytest.raises(LitlabError, match=match):
        build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))


@pytest.mark.parametrize("override,match", [
    ("model.scheduler._target_=torch.optim.lr_scheduler.Nope",
     r"model\.scheduler\._target_=torch\.optim\.lr_scheduler\.Nope cannot be imported: torch\.optim\.lr_scheduler "
     r"has no Nope\. Check the spelling"),
    ("model.net._target_=litlab.models.cnn.CNNN", r"model\.net\._target_=.* litlab\.models\.cnn has no CNNN"),
    ("model.optimizer._target_=torchx.optim.Adam", r"model\.optimizer\._target_=.* there is no module torchx"),
    ("callbacks.model_checkpoint._target_=a b", r"callbacks\.model_checkpoint\._target_=a b .* not a dotted Python path"),
])
def test_a_misspelt_target_is_named_by_its_key_before_the_data_is_prepared(override, match, cfg_factory, monkeypatch):
    """It was found when its turn came to be built, after data preparation, and the error named
    the group ("model: could not build ...Classifier: ImportError")."""
    from litlab import training

    monkeypatch.setattr(training, "build_data", lambda *a, **k: pytest.fail("the data was prepared"))
    with pytest.raises(LitlabError, match=match):
        training.train(cfg_factory([override]))
