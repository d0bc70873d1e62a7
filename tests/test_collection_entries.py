"""Entries of the logger and callbacks collections (litlab.build.check_entries): each is a
{_target_: ...} node that builds one logger or callback; anything else was passed over silently."""

from __future__ import annotations

import pytest

from litlab.build import build_callbacks, build_loggers, check_targets
from litlab.errors import LitlabError
from litlab.training import train

TINY = ["model=mlp", "data=synthetic", "data.num_train=64", "data.num_val=32", "data.num_test=32",
        "trainer.max_epochs=1"]


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "none"])
def test_a_plain_value_under_logger_is_refused_under_every_choice(cfg_factory, tmp_path, monkeypatch, logger):
    cfg = cfg_factory([*TINY, f"logger={logger}", "+logger.foo=1"])
    monkeypatch.setattr("litlab.training.build_data", lambda *a, **k: pytest.fail("the data was prepared"))
    with pytest.raises(LitlabError) as info:
        train(cfg)
    assert str(info.value) == (
        "logger.foo=1: each entry of logger is a {_target_: ...} node that builds one logger (as in "
        "conf/logger/csv.yaml), so this value would be passed over and nothing built. Add a logger as "
        "+logger.foo={_target_:CLASS,KEY:VALUE}, set a key of one this run has (e.g. "
        "logger.tensorboard.flush_every_s=10), or leave one out with logger.NAME=null. The one other key of logger "
        "is histograms (true or false).")


@pytest.mark.parametrize("callbacks", ["default", "early_stopping", "none"])
def test_a_plain_value_under_callbacks_is_refused_under_every_choice(cfg_factory, callbacks):
    cfg = cfg_factory([*TINY, f"callbacks={callbacks}", "+callbacks.foo=1"])
    with pytest.raises(LitlabError, match=r"^callbacks\.foo=1: each entry of callbacks is a \{_target_: \.\.\.\} node "
                                          r"that builds one callback .* or leave one out with callbacks\.NAME=null\.$"):
        check_targets(cfg)
    with pytest.raises(LitlabError, match=r"^callbacks\.foo=1: "):  # also where the run builds them
        build_callbacks(cfg)


def test_keys_of_an_entry_the_run_does_not_have_are_refused_with_the_choice_that_has_it(cfg_factory):
    """+callbacks.early_stopping.patience=3 under callbacks=default made {patience: 3}, which
    builds nothing: the run trained without early stopping, without a word."""
    cfg = cfg_factory([*TINY, "+callbacks.early_stopping.patience=3"])
    with pytest.raises(LitlabError, match=r"^callbacks\.early_stopping has no _target_ \(it holds patience\), so it "
                                          r"builds no callback and its keys would be passed over: this run has no "
                                          r"callback of that name to set\. conf/callbacks/early_stopping\.yaml has "
                                          r"one of that name: choose it with callbacks=early_stopping \(it keeps the "
                                          r"default ones\), then set its keys\."):
        check_targets(cfg)
    cfg = cfg_factory([*TINY, "logger=csv", "+logger.tensorboard.flush_every_s=2"])
    with pytest.raises(LitlabError, match=r"^logger\.tensorboard has no _target_ \(it holds flush_every_s\).* choose "
                                          r"it with logger=tensorboard \(logger=\[csv,tensorboard\] takes two\), then "
                                          r"set its keys\. .*or set a key of one this run has \(csv\)\.$"):
        check_targets(cfg)
    cfg = cfg_factory([*TINY, "callbacks=none", "+callbacks.model_checkpoint.monitor=val/acc"])
    with pytest.raises(LitlabError, match=r"choose it with callbacks=default, then set its keys\. Or give it a "
                                          r"_target_ \(callbacks\.model_checkpoint\._target_=CLASS, a callback class "
                                          r"by its dotted path\)\.$"):
        check_targets(cfg)


def test_an_eval_with_a_plain_logger_value_is_refused_where_its_loggers_are_built(cfg_factory):
    cfg = cfg_factory(["ckpt_path=x.ckpt", "+logger.foo=1"], config_name="eval", fast=False)
    with pytest.raises(LitlabError, match=r"^logger\.foo=1: each entry of logger"):
        build_loggers(cfg)


def test_entries_left_out_with_null_and_the_histogram_switch_build(cfg_factory):
    cfg = cfg_factory([*TINY, "callbacks.progress_bar=null", "logger=csv", "+logger.histograms=false",
                       "+callbacks.mine={_target_:litlab.callbacks.throughput.Throughput}"])
    check_targets(cfg)
    assert [type(logger).__name__ for logger in build_loggers(cfg)] == ["CSVLogger"]
    kinds = {type(c).__name__ for c in build_callbacks(cfg)}
    assert "Throughput" in kinds and "_ProgressBar" not in kinds and "ProgressBar" not in kinds


@pytest.mark.parametrize("overrides, message", [
    (["logger=csv", "+logger.histograms=true"],
     "logger.histograms=true writes weight histograms into TensorBoard, and this run has no TensorBoard logger: "
     "nothing would be written. Use logger=tensorboard (or logger=[csv,tensorboard] for both), or leave "
     "logger.histograms out."),
    (["logger=tensorboard", "callbacks=none", "logger.histograms=true"],
     "logger.histograms=true is written by callbacks.weight_histograms, which this run leaves out: nothing would be "
     "written. Use callbacks=default (or callbacks=early_stopping), or leave logger.histograms out."),
    (["logger=tensorboard", "logger.histograms=maybe"], "logger.histograms must be true or false, got 'maybe'."),
])
def test_weight_histograms_nothing_would_write_are_refused(cfg_factory, overrides, message):
    with pytest.raises(LitlabError) as info:
        check_targets(cfg_factory([*TINY, *overrides]))
    assert str(info.value) == message


def test_weight_histograms_into_tensorboard_beside_csv_build(cfg_factory):
    cfg = cfg_factory([*TINY, "logger=[csv,tensorboard]", "logger.histograms=true"])
    check_targets(cfg)
    assert sorted(type(logger).__name__ for logger in build_loggers(cfg)) == ["CSVLogger", "TensorBoardLogger"]
