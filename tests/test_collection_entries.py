"""Entries of the logger and callbacks collections (litlab.build.check_entries): each is a
{_target_: ...} node that builds one logger or callback; anything else was passed over silently."""

from __future__ import annotations

import logging
import sys

import pytest

from litlab.build import build_callbacks, build_loggers, check_targets
from litlab.errors import LitlabError
from litlab.training import train
from tests.conftest import refused_before_torch

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


# a user's own loggers: a builder function of a TensorBoard logger, and a class that is none
MY_LOGGERS = """from lightning.pytorch.loggers import CSVLogger

from litlab.tensorboard_logger import TensorBoardLogger


def make_tb(save_dir):
    return TensorBoardLogger(save_dir=save_dir, name="tensorboard", version="")


class MyCSV(CSVLogger):
    pass
"""


def test_histograms_into_a_tensorboard_logger_of_a_builder_function_build_without_error_lines(
        cfg_factory, tmp_path, monkeypatch, caplog):
    """+logger.tb._target_=mymod.make_tb (a function that returns a TensorBoard logger) was refused
    ("this run has no TensorBoard logger"), and every run with logger.histograms=true logged two
    "[hydra.utils][ERROR] Error getting class" lines for litlab's own builder functions
    (litlab.callbacks.checkpoints.checkpoint_callback): a target that is not a class may build one."""
    with caplog.at_level(logging.DEBUG):
        check_targets(cfg_factory([*TINY, "logger=tensorboard", "logger.histograms=true"], name="default"))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (tmp_path / "my_loggers.py").write_text(MY_LOGGERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_loggers", raising=False)
    cfg = cfg_factory([*TINY, "logger=csv", "+logger.histograms=true", "+logger.tb._target_=my_loggers.make_tb",
                       f"+logger.tb.save_dir={tmp_path / 'run'}"])
    with caplog.at_level(logging.DEBUG):
        check_targets(cfg)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sorted(type(logger).__name__ for logger in build_loggers(cfg)) == ["CSVLogger", "TensorBoardLogger"]
    # a class of the user's own that is no TensorBoard logger is told as one that is none
    cfg = cfg_factory([*TINY, "logger=none", "+logger.histograms=true", "+logger.mine._target_=my_loggers.MyCSV",
                       f"+logger.mine.save_dir={tmp_path / 'run'}"], name="csv")
    with pytest.raises(LitlabError, match=r"^logger\.histograms=true writes weight histograms into TensorBoard, and "
                                          r"this run has no TensorBoard logger"):
        check_targets(cfg)


@pytest.mark.parametrize("module, args", [
    ("litlab.train", ["+logger.foo=1"]),
    ("litlab.train", ["+callbacks.foo=1"]),
    ("litlab.train", ["-m", "seed=1,2", "+logger.foo=1"]),
    ("litlab.lr_find", ["+logger.foo=1"]),
    ("litlab.eval", ["ckpt_path=missing.ckpt", "+logger.foo=1"]),
])
def test_a_plain_entry_value_is_refused_by_the_command_line_before_any_folder(tmp_path, module, args):
    """+logger.foo=1 was refused only inside the run, after Hydra made its folder (a failure record;
    every job of a sweep; lr_find after the whole range test, eval after fitting its temperature):
    now exit 2 before torch is imported, and no folder."""
    group = "callbacks" if "+callbacks.foo=1" in args else "logger"
    folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    stderr = refused_before_torch(module, [*args, *folders], cwd=tmp_path)
    assert f"Error: {group}.foo=1: each entry of {group} is a {{_target_: ...}} node" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_lr_find_checks_its_loggers_before_the_range_test(cfg_factory, monkeypatch):
    """lr_find builds its loggers after the whole range test (to log the curve): a plain value
    under logger was refused only then, called in-process as from the command line."""
    from litlab.tuning.lr_range import lr_find

    cfg = cfg_factory(["data=synthetic", "+logger.foo=1"], config_name="lr_find")
    monkeypatch.setattr("litlab.tuning.lr_range.build_data", lambda *a, **k: pytest.fail("the data was prepared"))
    with pytest.raises(LitlabError, match=r"^logger\.foo=1: each entry of logger is a \{_target_: \.\.\.\} node"):
        lr_find(cfg)
