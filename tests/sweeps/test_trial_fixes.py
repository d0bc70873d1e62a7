"""Sweep and summarize findings of a user trial: keys appended below a group's nested node, the
separate sweeps advised for a key some choices lack, ``+`` in a sweep over the key's group, a
swept ``sweep_fails_on``, a folder of lr_find runs, a job killed before its record, and a single
run's folder given to summarize; then a review of those: nested keys a swept choice lacks, the
``++`` advice, a class that takes a key for some choices only, the advised sweeps' folders and
keys, a job folder without a record while the sweep may still run, and an Optuna trial's rerun."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from litlab import run_lock
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.summarize import main, rank_sweep
from litlab.sweeps.outcome import statuses_by_job
from tests.helpers import sweeper_params, write_search, write_sweep_record
from tests.scale.tiny_run import TINY


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
    own = write_search(tmp_path / "searches", "compressions", sweeper_params("compress: none,prune"))
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
    own = write_search(tmp_path / "searches", "fails", sweeper_params("sweep_fails_on: all,any"))
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


# ---- review: a nested key a swept choice lacks ----

def test_a_nested_key_a_swept_choice_lacks_is_refused_with_separate_sweeps(tmp_path):
    """compress=quantize has settings but no finetune: ++compress.finetune.epochs would crash its job."""
    folder = tmp_path / "s"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "compress=prune,quantize", "++compress.finetune.epochs=1", f"hydra.sweep.dir={folder}"])
    message = str(e.value)
    assert "the job with compress=quantize has no key finetune.epochs" in message
    first, second = _advised(message)
    assert "compress=prune" in first and "++compress.finetune.epochs=1" in first
    assert "compress=quantize" in second and not any("finetune" in o for o in second)
    assert not folder.exists()


def test_a_searched_nested_key_a_choice_lacks_is_refused(tmp_path):
    own = write_search(tmp_path / "searches", "compressions", sweeper_params("compress: choice(prune,quantize)"))
    with pytest.raises(LitlabError, match=r"the job with compress=quantize has no key finetune\.epochs"):
        check_overrides(["-m", "--config-dir", str(own), "hparams_search=compressions", "++compress.finetune.epochs=1",
                         f"hydra.sweep.dir={tmp_path / 's'}"])


# ---- review: real lr_find runs (their .hydra/config.yaml names train's optimized_metric) ----

@pytest.mark.slow
def test_real_lr_find_runs_are_listed_by_their_suggested_rates(tmp_path, capsys):
    runs = tmp_path / "runs"
    # one real run (an MLP, the fewest steps); "b" is its folder copied with half its rate: same
    # files, and a rate below a's, so that a table sorted by rate (not in job order) is told apart
    done = subprocess.run([sys.executable, "-m", "litlab.lr_find", "data=synthetic", "model=mlp",
                           "lr_find.num_steps=20", f"hydra.run.dir={runs / 'a'}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shutil.copytree(runs / "a", runs / "b")
    record = json.loads((runs / "b" / "metrics.json").read_text())
    (runs / "b" / "metrics.json").write_text(json.dumps(record | {"suggested_lr": record["suggested_lr"] / 2}))
    assert "optimized_metric: val/acc" in (runs / "a" / ".hydra" / "config.yaml").read_text()
    rates = [json.loads((runs / n / "metrics.json").read_text())["suggested_lr"] for n in ("a", "b")]
    table = rank_sweep(runs)
    assert table["metric"] == "suggested_lr"
    assert [(r["job"], r["suggested_lr"]) for r in table["rows"]] == [("a", rates[0]), ("b", rates[1])]
    main([str(runs)])
    assert "2 jobs by suggested_lr (no direction: listed in job order)" in capsys.readouterr().out


# ---- review: the ++ advice names only the swept choices that have the key ----

@pytest.mark.parametrize("swept, typed, having, lacking", [
    ("compress=prune,quantize", "+compress.finetune.epochs=1", "prune", "quantize"),
    ("averaging=ema,swa", "+averaging.decay=0.9", "ema", "swa"),
])
def test_a_plus_key_some_swept_choices_lack_is_told_to_sweep_them_separately(tmp_path, swept, typed, having,
                                                                              lacking):
    folder = tmp_path / "s"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", swept, typed, f"hydra.sweep.dir={folder}"])
    message = str(e.value)
    group = swept.split("=")[0]
    assert "already have" not in message and f"Write it as +{typed}" not in message
    assert f"{group}={having} of the sweep has {typed.lstrip('+').split('=')[0]}" in message
    assert f"{group}={lacking} has settings but not that key" in message
    first, second = _advised(message)
    assert f"{group}={having}" in first and f"+{typed}" in first
    assert f"{group}={lacking}" in second and not any(o.startswith(f"+{group}.") for o in second)
    assert check_overrides(first) is None and check_overrides(second) is None
    assert not folder.exists()


def test_the_plus_plus_advice_names_the_swept_choices_that_have_the_key(tmp_path):
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "compress=prune,lowrank,none", "+compress.finetune.epochs=1",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    assert "the swept choices compress=prune,lowrank already have compress.finetune.epochs" in str(e.value)
    assert "Write it as ++compress.finetune.epochs=1" in str(e.value)


# ---- review: a job folder without a record while the sweep may still start jobs ----

# another process holding the sweep's folder (as a running sweep does), until its stdin closes
_HOLDER = ("import sys\nfrom litlab import run_lock\nrun_lock.hold_run_dir(sys.argv[1], None)\n"
           "print('held', flush=True)\nsys.stdin.read()\n")


def _starting_checks(sweep, capsys):
    table = rank_sweep(sweep)
    assert [(r["job"], r["status"]) for r in table["rows"]] == [
        ("0", "completed"), ("1", "killed, or starting on another machine")]
    assert not any("hydra.run.dir=" in n for n in table["notes"])  # no rerun command into its folder
    assert any("killed, or starting on another machine" in n and "(1)" in n for n in table["notes"])
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed, or starting on another machine"}
    main([str(sweep)])
    out = capsys.readouterr().out
    assert "litlab.train seed=2" not in out and "killed before they wrote metrics.json" not in out


def test_a_job_without_a_record_of_a_sweep_on_another_host_may_be_starting(tmp_path, capsys):
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train", "host": "node-17"})
    _job(sweep / "1", ["seed=2"])  # on node-17 preparing its data, or killed there
    _starting_checks(sweep, capsys)


def test_a_job_without_a_record_of_a_running_sweep_may_be_starting(tmp_path, capsys):
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train"})
    _job(sweep / "1", ["seed=2"])
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(sweep)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        _starting_checks(sweep, capsys)
    finally:
        proc.kill()
        proc.wait()
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed"}  # its process has ended: over


def test_at_the_end_of_a_sweep_this_process_ran_a_job_without_a_record_is_killed(tmp_path):
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train", "host": "node-17"})
    _job(sweep / "1", ["seed=2"])
    run_lock.hold_run_dir(sweep, None)  # as on_multirun_start does
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed"}


# ---- review: the rerun command of an Optuna trial killed before its record ----

@pytest.mark.slow
def test_a_killed_optuna_trial_gets_no_command_but_its_overrides_and_search_file(tmp_path, capsys):
    own = write_search(tmp_path / "own", "tiny",
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: optuna\noptimized_metric: val/loss\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    direction: minimize\n    n_trials: 1\n    n_jobs: 1\n"
        "    study_name: tiny\n    sampler:\n      seed: 1\n    params:\n"
        "      model.optimizer.lr: interval(0.001, 0.01)\n")
    sweep = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "litlab.train", "--config-dir", str(own), "hparams_search=tiny",
                           *TINY, f"hydra.sweep.dir={sweep}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (sweep / "multirun.yaml").exists()
    sampled = [o for o in (sweep / "0" / ".hydra" / "overrides.yaml").read_text().split("\n- ")
               if "model.optimizer.lr=" in o][0].strip("- \n")
    (sweep / "0" / "metrics.json").unlink()  # as if SIGKILLed before its record
    table = rank_sweep(sweep)
    assert [(r["job"], r["status"]) for r in table["rows"]] == [("0", "killed")]
    # no command: one without hparams_search lost the file's settings (optimized_metric here), one with it
    # started a new search; the note points at the trial's overrides and the search file instead
    assert not any("hydra.run.dir=" in n or "litlab.train" in n for n in table["notes"])
    line = [n for n in table["notes"] if n.startswith("  job 0: ")][0]
    assert str(sweep / "0" / ".hydra" / "overrides.yaml") in line and "hparams_search=tiny" in line
    assert sampled in (sweep / "0" / ".hydra" / "overrides.yaml").read_text()
    assert any("settings came from the search file" in n for n in table["notes"])


def test_a_killed_grid_job_of_a_search_file_gets_no_command_without_the_files_settings(tmp_path):
    """A grid sweep run from a search file: the job's command would have dropped the file's settings."""
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["hparams_search=mine", "seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train"})
    _age(_job(sweep / "1", ["hparams_search=mine", "seed=2"]), 3600)
    notes = rank_sweep(sweep)["notes"]
    assert not any(f"hydra.run.dir={sweep}/1" in n for n in notes)
    assert any(n.startswith("  job 1: ") and "hparams_search=mine" in n for n in notes)


# ---- review: a key the class of only some swept choices takes ----

def test_a_key_only_some_swept_classes_take_is_told_to_sweep_them_separately(tmp_path):
    """CNN takes net.hidden_size, MLP not: "fix the key" was wrong for the CNN jobs."""
    folder = tmp_path / "s"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "model=cnn,mlp", "++model.net.hidden_size=64", f"hydra.sweep.dir={folder}"])
    message = str(e.value)
    assert "fix the key" not in message
    assert "only model=cnn of the sweep takes net.hidden_size" in message
    first, second = _advised(message)
    assert "model=cnn" in first and "++model.net.hidden_size=64" in first
    assert "model=mlp" in second and not any("hidden_size" in o for o in second)
    assert check_overrides(first) is None and check_overrides(second) is None
    assert not folder.exists()


def test_a_sweep_start_whose_default_has_the_plus_key_does_not_say_it_lacks_it(tmp_path):
    """model=cnn (the default) has net.hidden_size: + cannot append it there."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "model=cnn,mlp", "+model.net.hidden_size=64", f"hydra.sweep.dir={tmp_path / 's'}"])
    assert "lacks the key" not in str(e.value)
    assert "already has the key" in str(e.value) and "++model.net.hidden_size=64" in str(e.value)


# ---- review: the separate sweeps' folders where the command or an experiment names one ----

def _own_experiment(tmp_path):
    own = tmp_path / "own"
    (own / "experiment").mkdir(parents=True)
    (own / "experiment" / "fixed.yaml").write_text(
        f"# @package _global_\nhydra:\n  sweep:\n    dir: {tmp_path / 'fixed'}\n")
    return own


@pytest.mark.parametrize("how", ["++hydra.sweep.dir", "experiment"])
def test_each_advised_sweep_has_a_folder_of_its_own(tmp_path, how):
    words = (["--config-dir", str(_own_experiment(tmp_path)), "experiment=fixed"] if how == "experiment"
             else [f"{how}={tmp_path / 'fixed'}"])
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", *words, "averaging=none,ema,swa", "++averaging.decay=0.9"])
    first, second = _advised(str(e.value))
    dirs = [[o.split("=", 1)[1] for o in cmd if o.lstrip("+").startswith("hydra.sweep.dir=")] for cmd in
            (first, second)]
    assert dirs == [[f"{tmp_path / 'fixed'}-ema"], [f"{tmp_path / 'fixed'}-none-swa"]]


# ---- review: each advised sweep gets only the keys its choices take ----

def test_each_advised_sweep_gets_the_keys_its_choices_take(tmp_path):
    """ema has decay, swa start_epoch: each sweep with the other's key would fail again."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "averaging=ema,swa", "++averaging.decay=0.9", "++averaging.start_epoch=0.5",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    first, second = _advised(str(e.value))
    assert [o for o in first if o.startswith(("averaging", "++averaging"))] == ["averaging=ema",
                                                                                "++averaging.decay=0.9"]
    assert [o for o in second if o.startswith(("averaging", "++averaging"))] == ["averaging=swa",
                                                                                 "++averaging.start_epoch=0.5"]
    assert check_overrides(first) is None and check_overrides(second) is None


def test_the_advised_sweeps_of_a_search_take_only_its_options(tmp_path):
    """A search of averaging: choice(ema,swa) runs no job of the default averaging=none."""
    own = write_search(tmp_path / "searches", "averages",
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: optuna\nhydra:\n  mode: MULTIRUN\n"
        "  sweeper:\n    direction: maximize\n    n_trials: 2\n    n_jobs: 1\n"
        "    params:\n      averaging: choice(ema,swa)\n")
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "--config-dir", str(own), "hparams_search=averages", "++averaging.decay=0.9",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    first, second = _advised(str(e.value))
    assert "averaging=ema" in first and "averaging=swa" in second
    assert not any("none" in o for o in first + second)
    assert check_overrides(first) is None and check_overrides(second) is None


# ---- review 2: keys the class of a swept choice takes though its file does not set them ----

@pytest.mark.parametrize("typed", [["++trainer.num_nodes=1"], ["++trainer.strategy=auto"],
                                   ["++trainer.strategy._target_=lightning.pytorch.strategies.DDPStrategy",
                                    "++trainer.strategy.process_group_backend=gloo"]])
def test_a_key_the_class_of_a_swept_choice_takes_is_not_refused(tmp_path, typed):
    """trainer=cpu sets no num_nodes or strategy, but lightning.Trainer takes both; a strategy given
    its own _target_ is built before the Trainer gets it."""
    check_overrides(["-m", "trainer=cpu,ddp_cpu", *typed, f"hydra.sweep.dir={tmp_path / 's'}"])  # no refusal


def test_a_nested_key_under_an_argument_with_no_target_is_still_refused(tmp_path):
    """Without a _target_ the cpu job's Trainer would get strategy as a plain dict."""
    with pytest.raises(LitlabError, match=r"the job with trainer=cpu has no key strategy\.process_group_backend"):
        check_overrides(["-m", "trainer=cpu,ddp_cpu", "++trainer.strategy.process_group_backend=gloo",
                         f"hydra.sweep.dir={tmp_path / 's'}"])


# ---- review 2: a job without a record, long after it began, on a sweep whose records name compute nodes ----

def _age(folder, seconds):
    """Dates ``folder`` and its ``.hydra/`` back by ``seconds``, as a job started that long ago."""
    import time

    for path in (folder / ".hydra", folder):
        os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_an_old_job_without_a_record_next_to_another_hosts_ended_job_is_killed_with_its_command(tmp_path, capsys):
    """With submitit_slurm every record names a compute node: a job killed there before its record
    was "may be starting" forever, and never got its rerun command."""
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "completed", "val/acc": 0.5, "task": "train", "host": "node-17"})
    _age(_job(sweep / "1", ["seed=2"]), 3600)
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed"}
    table = rank_sweep(sweep)
    assert [(r["job"], r["status"]) for r in table["rows"]] == [("0", "completed"), ("1", "killed")]
    assert any("seed=2" in n and f"hydra.run.dir={sweep}/1" in n for n in table["notes"])


def test_an_old_job_without_a_record_while_a_job_runs_on_another_host_may_be_starting(tmp_path, capsys):
    sweep = write_sweep_record(tmp_path / "my_sweep", ["seed=1,2"])
    _job(sweep / "0", ["seed=1"], {"status": "running", "task": "train", "host": "node-17", "pid": 4711})
    _age(_job(sweep / "1", ["seed=2"]), 3600)
    assert statuses_by_job(sweep)["1"] == "killed, or starting on another machine"
    assert not any(f"hydra.run.dir={sweep}/1" in n for n in rank_sweep(sweep)["notes"])


# ---- review 2: the keys each advised sweep keeps ----

def test_the_advised_sweeps_for_a_key_only_some_classes_take_keep_the_keys_all_take(tmp_path):
    """MLP has no hidden_size but does have dropout: its sweep was given no key at all."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "model=cnn,mlp", "++model.net.hidden_size=64", "++model.net.dropout=0.3",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    first, second = _advised(str(e.value))
    assert [o for o in first if "model" in o] == ["model=cnn", "++model.net.hidden_size=64", "++model.net.dropout=0.3"]
    assert [o for o in second if "model" in o] == ["model=mlp", "++model.net.dropout=0.3"]


def test_a_key_no_choices_file_sets_but_their_class_takes_stays_in_both_advised_sweeps(tmp_path):
    """No trainer file sets gradient_clip_algorithm, but lightning.Trainer takes it in both sweeps."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "trainer=cpu,ddp_cpu", "++trainer.strategy.process_group_backend=gloo",
                         "+trainer.gradient_clip_algorithm=norm", f"hydra.sweep.dir={tmp_path / 's'}"])
    first, second = _advised(str(e.value))
    assert [o for o in first if "trainer" in o] == ["trainer=ddp_cpu", "++trainer.strategy.process_group_backend=gloo",
                                                     "+trainer.gradient_clip_algorithm=norm"]
    assert [o for o in second if "trainer" in o] == ["trainer=cpu", "+trainer.gradient_clip_algorithm=norm"]
    assert check_overrides(second) is None
