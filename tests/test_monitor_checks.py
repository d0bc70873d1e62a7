"""What checkpointing and early stopping monitor (litlab.monitor_checks): val/acc_top<k> is logged
by callbacks.eval_report for its top_k only, and only where the data has more than k classes."""

from __future__ import annotations

import sys

import pytest

from litlab.build import build_callbacks
from litlab.errors import LitlabError
from litlab.training import train

# a tiny synthetic run (10 classes of 1x16x16 images)
TINY = ["model=mlp", "data=synthetic", "data.num_train=64", "data.num_val=32", "data.num_test=32", "logger=none",
        "trainer.max_epochs=1"]


@pytest.mark.parametrize("overrides, message", [
    (["callbacks.model_checkpoint.monitor=val/acc_top5", "callbacks.eval_report.top_k=3"],
     "callbacks.model_checkpoint.monitor=val/acc_top5, but callbacks.eval_report.top_k=3 logs val/acc_top3, so "
     "val/acc_top5 would never be logged. Use callbacks.eval_report.top_k=5, or monitor val/acc_top3."),
    (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/acc_top5", "callbacks.eval_report.top_k=0"],
     "callbacks.early_stopping.monitor=val/acc_top5, but callbacks.eval_report.top_k=0 logs no top-k accuracy, so "
     "val/acc_top5 would never be logged. Use callbacks.eval_report.top_k=5, or monitor val/acc."),
    (["~callbacks.eval_report", "callbacks.model_checkpoint.monitor=val/acc_top5"],
     "callbacks.model_checkpoint.monitor=val/acc_top5 is logged by callbacks.eval_report, which this run leaves "
     "out: nothing would be monitored. Keep callbacks.eval_report with callbacks.eval_report.top_k=5 "
     "(callbacks=default or callbacks=early_stopping), or monitor val/loss or val/acc."),
])
def test_a_top_k_accuracy_the_run_does_not_log_is_refused_before_the_data(cfg_factory, tmp_path, monkeypatch,
                                                                           overrides, message):
    """Lightning failed after the first epoch: "could not find the monitored key" (checkpointing)
    or a RuntimeError traceback (early stopping)."""
    cfg = cfg_factory([*TINY, *overrides])
    prepared = []
    monkeypatch.setattr("litlab.training.build_data", lambda *a, **k: prepared.append(1) or pytest.fail("prepared"))
    with pytest.raises(LitlabError) as info:
        train(cfg)
    assert str(info.value) == message
    assert prepared == []


def test_top_k_accuracy_of_as_many_classes_as_k_is_refused_once_the_data_is_known(cfg_factory, tmp_path):
    """With 5 classes every sample's class is among the top 5: the report logs no val/acc_top5."""
    cfg = cfg_factory([*TINY, "data.num_classes=5", "callbacks.model_checkpoint.monitor=val/acc_top5"])
    with pytest.raises(LitlabError, match=r"^callbacks\.model_checkpoint\.monitor=val/acc_top5, but the data has 5 "
                                          r"classes, and top-5 accuracy is logged only with more than 5"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_top_k_accuracy_the_report_logs_is_monitored(cfg_factory, tmp_path):
    cfg = cfg_factory([*TINY, "test=false", "callbacks.model_checkpoint.monitor=val/acc_top3",
                       "callbacks.eval_report.top_k=3"])
    train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_a_report_of_the_users_own_without_top_k_is_not_second_guessed(cfg_factory, tmp_path):
    """An eval report entry without top_k logs the class's default: the name alone is checked, by
    the command-line checks, the checks before training and the build alike."""
    from litlab.config_check import check_overrides
    from litlab.monitor_checks import check_monitored
    from litlab.trainer_checks import check_validation_runs

    overrides = [*TINY, "~callbacks.eval_report", "callbacks.model_checkpoint.monitor=val/acc_top5",
                 "+callbacks.mine._target_=litlab.callbacks.eval_report.EvalReport"]
    check_overrides([*overrides, f"hydra.run.dir={tmp_path / 'cli'}"], "train")
    cfg = cfg_factory(overrides)
    check_monitored(cfg, num_classes=10)
    check_validation_runs(cfg)
    monitored = {getattr(c, "monitor", None) for c in build_callbacks(cfg)} - {None}
    assert monitored == {"val/acc_top5"}


@pytest.mark.parametrize("monitor, mode", [("val/ece", "min"), ("val/acc_top5", "max")])
def test_a_subclass_of_the_eval_report_of_the_users_own_is_not_refused(cfg_factory, tmp_path, monkeypatch,
                                                                       monitor, mode):
    """callbacks.eval_report._target_=my_reports.MyReport monitoring val/ece was refused ("which this run
    leaves out"): the config checks matched litlab's class by its path. A class of the user's own
    may be a report: the build, which has the callbacks themselves, tells."""
    from litlab.config_check import check_overrides
    from litlab.trainer_checks import check_validation_runs

    (tmp_path / "my_reports.py").write_text(MY_REPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_reports", raising=False)
    overrides = [*TINY, "callbacks.eval_report._target_=my_reports.MyReport",
                 f"callbacks.model_checkpoint.monitor={monitor}", f"callbacks.model_checkpoint.mode={mode}"]
    check_overrides([*overrides, f"hydra.run.dir={tmp_path / 'cli'}"], "train")
    cfg = cfg_factory(overrides)
    check_validation_runs(cfg)
    monitored = {getattr(c, "monitor", None) for c in build_callbacks(cfg)} - {None}
    assert monitored == {monitor}
    # a class of the user's own that is no report: the build refuses the monitor, naming the key
    cfg = cfg_factory([*overrides, "callbacks.eval_report._target_=my_reports.NotAReport"], name="other")
    with pytest.raises(LitlabError, match=rf"^callbacks\.model_checkpoint\.monitor={monitor} is logged by "
                                          rf"callbacks\.eval_report, which this run leaves out"):
        build_callbacks(cfg)


# a user's own eval report (a subclass of litlab's) and a callback that is none
MY_REPORT = """import lightning.pytorch as L

from litlab.callbacks.eval_report import EvalReport


class MyReport(EvalReport):
    pass


class NotAReport(L.Callback):
    def __init__(self, **kwargs):
        pass
"""


def test_litlab_has_no_other_eval_report_class():
    """The config checks tell litlab's eval report by its dotted path alone (monitor_checks
    .KNOWN_PACKAGES): no other class of litlab's callbacks is one."""
    import importlib
    import pkgutil

    import litlab.callbacks
    from litlab.callbacks.eval_report import EvalReport
    from litlab.monitor_checks import EVAL_REPORT

    found = set()
    for info in pkgutil.walk_packages(litlab.callbacks.__path__, "litlab.callbacks."):
        module = importlib.import_module(info.name)
        found |= {f"{v.__module__}.{v.__qualname__}" for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, EvalReport)}
    assert found == {EVAL_REPORT}


@pytest.mark.parametrize("monitor, top_k", [("val/acc_top05", 5), ("val/acc_top0", 0), ("val/acc_top0", 5)])
def test_a_top_k_name_the_report_never_logs_is_refused(tmp_path, monitor, top_k):
    """val/acc_top05 (the report logs val/acc_top5) and val/acc_top0 (top_k=0 logs no top-k
    accuracy) were accepted and failed after the first epoch."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=rf"^callbacks\.model_checkpoint\.monitor={monitor} is not a metric that "
                                          rf"training logs; .*val/acc_top<k>, k from 1 without leading zeros"):
        check_overrides([*TINY, f"callbacks.model_checkpoint.monitor={monitor}", f"callbacks.eval_report.top_k={top_k}",
                         f"hydra.run.dir={tmp_path / 'run'}"], "train")
    assert not (tmp_path / "run").exists()


def test_the_command_line_refuses_such_a_monitor_before_the_run_folder(tmp_path):
    """The same refusal from the command-line checks: exit 2, no run folder, no failure record."""
    from litlab.config_check import check_overrides

    run_dir = tmp_path / "run"
    with pytest.raises(LitlabError, match=r"val/acc_top3, so val/acc_top5 would never be logged"):
        check_overrides([*TINY, "callbacks.model_checkpoint.monitor=val/acc_top5", "callbacks.eval_report.top_k=3",
                         f"hydra.run.dir={run_dir}"], "train")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "litlab.train", *TINY, "callbacks.model_checkpoint.monitor=val/acc_top5",
                           "callbacks.eval_report.top_k=3", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "would never be logged" in proc.stderr
    assert not run_dir.exists()
