"""Sweep and summarize findings of a user trial: keys appended below a group's nested node, the
separate sweeps advised for a key some choices lack, ``+`` in a sweep over the key's group, a
swept ``sweep_fails_on``, a folder of lr_find runs, a job killed before its record, and a single
run's folder given to summarize."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from litlab import run_lock
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.summarize import main, rank_sweep
from litlab.sweeps.outcome import statuses_by_job
from tests.helpers import write_sweep_record


@pytest.fixture(autouse=True)
def let_go():
    """The folders a test's checks took for this process are let go after it (as at a process's end)."""
    before = set(run_lock._held)
    yield
    for path in set(run_lock._held) - before:
        os.close(run_lock._held.pop(path))


def _job(folder, overrides, metrics=None):
    """A job folder as Hydra leaves it (``.hydra/``), with ``metrics`` as its metrics.json, or none."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / ".hydra" / "config.yaml").write_text("optimized_metric: val/acc\n")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


# ---- 1. a key appended below a node the choice has ----

def test_a_sweep_appends_a_nested_key_the_choice_does_not_have(tmp_path):
    """+model.optimizer.amsgrad: model=cnn sets optimizer (not its amsgrad), and a single run composes it."""
    assert check_overrides(["-m", "seed=1,2", "+model.optimizer.amsgrad=true",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_a_searched_option_that_sets_the_nested_key_still_refuses_the_plus(tmp_path):
    """compress=prune sets finetune.epochs: appended there, Hydra would fail every prune trial."""
    own = tmp_path / "searches"
    (own / "hparams_search").mkdir(parents=True)
    (own / "hparams_search" / "compressions.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      compress: none,prune\n")
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "--config-dir", str(own), "hparams_search=compressions", "+compress.finetune.epochs=1",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    assert str(e.value).startswith("+compress.finetune.epochs=1 appends compress.finetune.epochs to every job of the "
                                   "sweep, but compress=prune of the sweep already sets finetune.epochs")


# ---- 2. the separate sweeps advised for a key some choices lack ----

def _advised(message: str) -> list[list[str]]:
    """The overrides of the two commands a "Sweep them separately" paragraph gives."""
    advice = message.split("Sweep them separately: ", 1)[1].rstrip(".")
    return [shlex.split(c)[3:] for c in advice.split(", then ")]  # after python -m litlab.train


def test_the_advised_separate_sweeps_each_pass_after_the_other_ran(tmp_path):
    folder = tmp_path / "x"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "averaging=none,ema,swa", "++averaging.decay=0.9", f"hydra.sweep.dir={folder}"])
    first, second = _advised(str(e.value))
    assert first[0] == "-m" and second[0] == "-m"
    assert check_overrides(first) is None
    ran = [o.split("=", 1)[1] for o in first if o.startswith("hydra.sweep.dir=")][0]
    (tmp_path / ran / "multirun.yaml").parent.mkdir(exist_ok=True)  # the first sweep has run in its folder
    (tmp_path / ran / "multirun.yaml").write_text("hydra: {}\n")
    _job(tmp_path / ran / "0", ["averaging=ema"], {"status": "completed", "val/acc": 0.5})
    assert check_overrides(second) is None  # the same folder: "already holds a sweep"


# ---- 5. + in a sweep over the key's group ----

def test_a_plus_key_in_a_sweep_over_its_group_is_told_to_use_plus_plus_only(tmp_path):
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "compress=prune,lowrank", "+compress.finetune.epochs=1",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    message = str(e.value)
    assert "Drop the +" not in message
    assert "Write it as ++compress.finetune.epochs=1" in message
    assert check_overrides(["-m", "compress=prune,lowrank", "++compress.finetune.epochs=1",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_a_single_runs_plus_key_still_may_drop_the_plus(tmp_path):
    with pytest.raises(LitlabError, match=r"Drop the \+ to set it"):
        check_overrides(["compress=prune", "+compress.finetune.epochs=1", f"hydra.run.dir={tmp_path / 'r'}"])


# ---- 7. a swept sweep_fails_on ----

@pytest.mark.parametrize("value", ["any,all", "choice(all,any)"])
def test_a_swept_sweep_fails_on_is_refused(tmp_path, value):
    folder = tmp_path / "s"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "seed=1,2", f"sweep_fails_on={value}", f"hydra.sweep.dir={folder}"])
    assert str(e.value).startswith("sweep_fails_on must be all or any, got ")
    assert "applies to the whole sweep" in str(e.value)
    assert not folder.exists()


def test_a_searched_sweep_fails_on_is_refused(tmp_path):
    own = tmp_path / "searches"
    (own / "hparams_search").mkdir(parents=True)
    (own / "hparams_search" / "fails.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      sweep_fails_on: all,any\n")
    with pytest.raises(LitlabError, match=r"^sweep_fails_on must be all or any, got 'all,any'\. It applies to the "
                                          r"whole sweep"):
        check_overrides(["-m", "--config-dir", str(own), "hparams_search=fails", f"hydra.sweep.dir={tmp_path / 's'}"])


def test_one_sweep_fails_on_for_the_sweep_passes(tmp_path):
    assert check_overrides(["-m", "seed=1,2", "sweep_fails_on=any", f"hydra.sweep.dir={tmp_path / 's'}"]) is None


# ---- 3. a folder of lr_find runs ----

def _lr_find_run(folder, lr):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "completed", "task": "lr_find", "suggested_lr": lr,
                                                     "min_loss_lr": lr * 3, "steps_run": 50}))


def test_a_folder_of_lr_find_runs_lists_their_suggested_rates(tmp_path, capsys):
    runs = tmp_path / "runs"
    _lr_find_run(runs / "a", 0.003)
    _lr_find_run(runs / "b", 0.02)
    table = rank_sweep(runs)
    assert table["metric"] == "suggested_lr"
    assert [(r["job"], r["suggested_lr"]) for r in table["rows"]] == [("a", 0.003), ("b", 0.02)]
    main([str(runs)])
    assert "2 jobs by suggested_lr (no direction: listed in job order)" in capsys.readouterr().out


def test_lr_find_runs_ranked_by_a_metric_they_lack_name_their_rates(tmp_path):
    runs = tmp_path / "runs"
    _lr_find_run(runs / "a", 0.003)
    with pytest.raises(LitlabError, match=r"no job of the sweep has the metric val/acc; they have min_loss_lr, "
                                          r"suggested_lr\. Pass one of them with --metric KEY"):
        rank_sweep(runs, metric="val/acc")


# ---- 4. a job killed before it wrote metrics.json ----

def test_a_job_killed_before_its_record_is_killed_with_its_rerun_command(tmp_path, capsys):
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train"})
    _job(sweep / "1", ["seed=2"])  # SIGKILLed before its record: .hydra/ only
    table = rank_sweep(sweep)
    assert [(r["job"], r["status"]) for r in table["rows"]] == [("0", "completed"), ("1", "killed")]
    command = f"python -m litlab.train seed=2 hydra.run.dir={sweep}/1"
    assert f"  job 1: {command}" in table["notes"]
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed"}
    main([str(sweep)])
    out = capsys.readouterr().out
    assert "killed before they wrote metrics.json" in out and command in out
    # the command runs the job in its folder: the folder checks let it through
    assert check_overrides(shlex.split(command)[3:]) is not None


def test_a_job_folder_a_command_holds_without_a_record_is_running(tmp_path):
    sweep = tmp_path / "s"
    _job(sweep / "0", ["seed=1"])
    run_lock.hold_run_dir(sweep / "0", "hydra.run.dir")
    assert rank_sweep(sweep)["rows"][0]["status"] == "running"
    assert statuses_by_job(sweep) == {"0": "running"}


# ---- 6. a single run's folder ----

def test_a_single_runs_folder_is_named_as_one(tmp_path):
    run = tmp_path / "runs" / "2026-01-01_00-00-00"
    _job(run, ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train"})
    done = subprocess.run([sys.executable, "-m", "litlab.summarize", str(run)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: DIR: {run} is the folder of one run (it holds the run's metrics.json)")
    assert f"the folder this run is in: {run.parent}" in done.stderr
    assert "outputs/multiruns/<time>" in done.stderr and "outputs/runs" in done.stderr
    assert "holds no job folders" not in done.stderr
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "metrics.json"]  # nothing written
