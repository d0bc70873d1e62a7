"""A run killed before it could record its end (SIGKILL, the out-of-memory killer, a power cut)
kept ``status: running`` in its metrics.json for good: summarize listed it as running, and a start
from another run's checkpoint killed before its own first one could not be resumed in its folder.
A folder whose record says running but which no command holds (``run_lock.hold_run_dir``'s
lock) reads as ``killed``; one that a command holds still reads as running."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from litlab import run_lock
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.run_folders import FolderRecord, _unfinished_start
from litlab.summarize import rank_sweep
from litlab.sweeps.outcome import statuses_by_job

IN_USE = r"hydra\.run\.dir=.*run is in use: another litlab command is running in it now"
KILLED_MEANS = "ended without recording its end: killed, out of memory or a power cut"  # the table's error column


@pytest.fixture(autouse=True)
def let_go():
    """The folders a test's checks took for this process are let go after it (as at a process's end)."""
    before = set(run_lock._held)
    yield
    for path in set(run_lock._held) - before:
        os.close(run_lock._held.pop(path))
        if path in getattr(run_lock, "_taken_for_runs", []):
            run_lock._taken_for_runs.remove(path)


@pytest.fixture
def holder():
    """``holder(folder)``: another process takes the folder's lock, as a running litlab command
    does (hold_run_dir's exclusive flock), and holds it until the test ends."""
    procs = []

    def hold(folder: Path) -> None:
        proc = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
                                 "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
                                 str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def unfinished_start(run: Path) -> str | None:
    """The checkpoint that the run in ``run`` started from, where that start ended before its own
    first checkpoint, as the folder checks read it."""
    return _unfinished_start(FolderRecord(run))


def _folder(path: Path, record: dict, overrides: list[str] = ()) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (path / "metrics.json").write_text(json.dumps(record))
    return path


def test_summarize_lists_a_job_killed_before_its_end_as_killed(tmp_path, holder):
    """A job whose record says running, with no command in its folder, was listed as running."""
    sweep = tmp_path / "sweep"
    _folder(sweep / "0", {"status": "completed", "val/acc": 0.9, "optimized_metric": "val/acc"},
            ["model.optimizer.lr=0.001"])
    _folder(sweep / "1", {"status": "running", "val/acc": 0.95}, ["model.optimizer.lr=0.01"])
    _folder(sweep / "2", {"status": "running"}, ["model.optimizer.lr=0.1"])
    holder(sweep / "2")  # still working
    rows = rank_sweep(sweep)["rows"]
    assert [(r["rank"], r["job"], r["status"], r.get("error")) for r in rows] == [
        (1, "0", "completed", None), ("-", "1", "killed", KILLED_MEANS), ("-", "2", "running", None)]
    assert statuses_by_job(sweep) == {"0": "completed", "1": "killed", "2": "running"}
    assert json.loads((sweep / "1" / "metrics.json").read_text())["status"] == "running"  # read, never written


def test_a_start_killed_before_its_first_checkpoint_resumes_from_the_one_it_started_from(tmp_path):
    """Killed before its own first checkpoint, a start from another run's checkpoint kept "running":
    the command that resumes it was refused as another run's checkpoint, and the advice said it
    could not be resumed at all."""
    start = tmp_path / "s0" / "checkpoints" / "last.ckpt"
    start.parent.mkdir(parents=True)
    start.write_bytes(b"not read by the checks")
    run = _folder(tmp_path / "run", {"status": "running", "task": "train", "started_from": str(start)},
                  ["model=mlp", f"ckpt_path={start}"])
    assert unfinished_start(run) == str(start)
    with pytest.raises(LitlabError) as info:
        check_overrides(["model=mlp", f"hydra.run.dir={run}"])
    assert str(info.value) == (
        f"hydra.run.dir={run} already holds a run. It was killed (its metrics.json still says running, and no "
        f"command runs in it) before its first checkpoint; resume it from the checkpoint it started from with "
        f"ckpt_path={start} (the command it was started with, in its .hydra/overrides.yaml), or choose a new "
        f"folder; litlab does not write over a run.")
    with pytest.raises(LitlabError, match=rf"^ckpt_path=last: {run} holds no checkpoint: its run started from "
                                          rf"ckpt_path={start} and was killed \(.*\) before it wrote one of its own\. "
                                          rf"Resume it from there with ckpt_path={start} "):
        check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"])
    assert check_overrides(["model=mlp", f"ckpt_path={start}", f"hydra.run.dir={run}"]) is not None  # taken
    assert (run_lock.is_running(run), run_lock.recorded_status(run)) == (True, "running")  # held here now


def test_a_running_start_is_refused_as_in_use(tmp_path, holder):
    """The same folder while its command still runs: running, and refused as in use (not "already holds
    a run ... cannot be resumed", nor taken as a resume)."""
    start = tmp_path / "s0.ckpt"
    start.write_bytes(b"x")
    run = _folder(tmp_path / "run", {"status": "running", "task": "train", "started_from": str(start)})
    holder(run)
    for args in ([], [f"ckpt_path={start}"], ["ckpt_path=last"]):
        with pytest.raises(LitlabError, match=IN_USE):
            check_overrides([*args, f"hydra.run.dir={run}"])
    assert json.loads((run / "metrics.json").read_text())["status"] == "running"
    assert unfinished_start(run) is None
    assert (run_lock.is_running(run), run_lock.recorded_status(run)) == (True, "running")


def test_a_lock_of_this_process_from_another_open_file_counts_as_held(tmp_path):
    """flock locks belong to an open file: a second open in the same process is refused too, so the
    probe sees a sweep job this process runs (hold_for_run) as held; its own lock is let go at once."""
    import fcntl

    run = _folder(tmp_path / "run", {"status": "running"})
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_lock.is_running(run) is True and run_lock.recorded_status(run) == "running"
    finally:
        os.close(fd)
    assert run_lock.is_running(run) is False and run_lock.recorded_status(run) == "killed"
    assert run_lock.is_running(run) is False  # the probe kept no lock


def _held_elsewhere(folder: Path) -> bool:
    """What a summarize in another process finds: whether a process holds ``folder``'s lock."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# each entrypoint that writes status running: its run_entrypoint work and the module of its real work
RUNNING_WRITERS = {"train": ("litlab.train", "_train", "litlab.training", "train"),
                   "lr_find": ("litlab.lr_find", "_lr_find", "litlab.tuning.lr_range", "lr_find")}


def _entrypoint_work(name: str, monkeypatch, work: Callable) -> Callable:
    """The work ``run_entrypoint`` runs for entrypoint ``name``, its real work replaced by ``work``
    (the training or range test itself is not the point here)."""
    import importlib

    module, function, inner_module, inner = RUNNING_WRITERS[name]
    monkeypatch.setitem(sys.modules, inner_module, types.SimpleNamespace(**{inner: work}))
    return getattr(importlib.import_module(module), function)


@pytest.mark.parametrize("name", sorted(RUNNING_WRITERS))
def test_every_command_that_records_running_holds_its_folder_while_it_works(tmp_path, monkeypatch, name):
    """The default timestamped folders and a sweep's job folders were never locked: each would read
    as killed while it trained, and lr_find's folder was never held at all. Each job's folder is held
    while it works; an earlier job's is let go."""
    from omegaconf import OmegaConf

    from litlab.entry import run_entrypoint

    seen = []
    work = _entrypoint_work(name, monkeypatch, lambda cfg: seen.append(_held_elsewhere(Path(cfg.paths.output_dir))))
    jobs = [tmp_path / "sweep" / str(n) for n in range(3)]
    for job in jobs:
        job.mkdir(parents=True)  # as Hydra makes it
        run_entrypoint(work, OmegaConf.create({"paths": {"output_dir": str(job)}}))
    assert seen == [True, True, True]
    assert [_held_elsewhere(job) for job in jobs] == [False, False, True]  # one folder held at a time


def test_a_folder_named_through_dot_dot_or_a_link_is_held_once(tmp_path, monkeypatch):
    """hydra.run.dir=outputs/../outputs/runs/g: the checks held the folder by that path, the run by
    Hydra's normalised one, and its second lock was refused by its own first: "is in use", and a
    failed record in a folder that could not be used again. A symbolic link to it likewise."""
    from omegaconf import OmegaConf

    from litlab.entry import run_entrypoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "runs").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "outputs" / "runs", target_is_directory=True)
    seen = []
    work = _entrypoint_work("train", monkeypatch, lambda cfg: seen.append(_held_elsewhere(Path(cfg.paths.output_dir))))
    for given, normalised in (("outputs/../outputs/runs/g", tmp_path / "outputs" / "runs" / "g"),
                              (f"{tmp_path}/link/h", tmp_path / "outputs" / "runs" / "h")):
        assert check_overrides(["model=mlp", f"hydra.run.dir={given}"]) is not None  # holds it by the given path
        assert run_lock.is_running(normalised) is True
        run_entrypoint(work, OmegaConf.create({"paths": {"output_dir": str(normalised)}}))
        assert not (normalised / "metrics.json").exists()  # no failed record
    assert seen == [True, True]


def test_an_in_use_folder_is_refused_without_a_record(tmp_path, monkeypatch, holder, capsys):
    """Two starts at once into one folder (the same second's timestamped one): the second was
    refused as in use, then wrote "failed" into the first one's folder before that run's own record."""
    from omegaconf import OmegaConf

    from litlab.entry import run_entrypoint

    run = tmp_path / "run"
    run.mkdir()
    holder(run)  # the first start, before its record
    seen = []
    work = _entrypoint_work("train", monkeypatch, seen.append)
    with pytest.raises(SystemExit) as info:
        run_entrypoint(work, OmegaConf.create({"paths": {"output_dir": str(run)}, "task_name": "train"}))
    assert info.value.code == 2 and seen == []
    assert re.search(IN_USE, capsys.readouterr().err)
    assert sorted(p.name for p in run.iterdir()) == []  # the first start's folder as it was


def test_a_running_record_names_its_machine_and_process(tmp_path):
    """The record's host is what tells whose lock the folder's is (``running_elsewhere``)."""
    from litlab.reporting.run_files import start_metrics

    record = start_metrics(tmp_path, status="running", task="lr_find")
    assert json.loads((tmp_path / "metrics.json").read_text()) == record == {
        "status": "running", "task": "lr_find", "host": socket.gethostname(), "pid": os.getpid()}
    assert "host" not in start_metrics(tmp_path, status="completed")


def test_a_run_of_another_machine_stays_running(tmp_path):
    """On NFS or Lustre a flock may be local to a machine: a run working on a compute node read as
    killed from a login node, and its folder was offered for a resume while it ran. Only the
    machine a record names reads it as killed; a record without a host is read as before."""
    start = tmp_path / "a.ckpt"
    start.write_bytes(b"x")
    sweep = tmp_path / "sweep"
    elsewhere = {"status": "running", "task": "train", "started_from": str(start), "host": "node-7", "pid": 1}
    _folder(sweep / "0", elsewhere, ["model.optimizer.lr=0.1"])
    _folder(sweep / "1", {**elsewhere, "host": socket.gethostname()}, ["model.optimizer.lr=0.2"])
    _folder(sweep / "2", {k: v for k, v in elsewhere.items() if k not in ("host", "pid")}, ["model.optimizer.lr=0.3"])
    assert statuses_by_job(sweep) == {"0": "running", "1": "killed", "2": "killed"}
    assert [unfinished_start(sweep / j) for j in "012"] == [None, str(start), str(start)]
    assert [(r["job"], r["status"]) for r in rank_sweep(sweep)["rows"]] == [
        ("0", "running (on node-7)"), ("1", "killed"), ("2", "killed")]
    with pytest.raises(LitlabError, match=r"is in use by another machine: .* running on node-7 \(pid 1\)"):
        check_overrides([f"ckpt_path={start}", f"hydra.run.dir={sweep / '0'}"])  # not taken for a resume


def test_an_interrupted_sweep_names_its_killed_jobs(tmp_path, monkeypatch, capsys):
    """The end line of an interrupted sweep named interrupted and running jobs; a killed one was in neither."""
    import signal

    from litlab.sweeps import interrupted, outcome

    sweep = tmp_path / "sweep"
    _folder(sweep / "0", {"status": "interrupted"}, ["seed=1"])
    _folder(sweep / "1", {"status": "running"}, ["seed=2"])
    monkeypatch.setattr(outcome, "current_sweep_dir", sweep)
    with pytest.raises(SystemExit) as info:
        interrupted.exit_interrupted(signal.SIGINT)
    assert info.value.code == 130
    assert f"in {sweep}; interrupted jobs: 0; killed before recording their end: 1. " in capsys.readouterr().err


def test_without_locks_a_running_record_stays_running(tmp_path, monkeypatch):
    """A file system without flock (ENOLCK) or no fcntl (Windows): nothing tells a running run from a
    killed one, so the record is taken as it is, and a run starts there unlocked (ENOLCK was "in use")."""
    run = _folder(tmp_path / "run", {"status": "running", "task": "train", "started_from": str(tmp_path / "a.ckpt")})

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock, "fcntl", types.SimpleNamespace(flock=no_locks, LOCK_EX=2, LOCK_SH=1, LOCK_NB=4))
    held = dict(run_lock._held)
    run_lock.hold_run_dir(tmp_path / "new", "hydra.run.dir")  # not "in use"
    assert run_lock._held == held and unfinished_start(run) is None
    assert (run_lock.is_running(run), run_lock.recorded_status(run)) == (None, "running")
    monkeypatch.setattr(run_lock, "fcntl", None)
    assert (run_lock.is_running(run), run_lock.recorded_status(run), unfinished_start(run)) == (
        None, "running", None)


def test_a_resume_of_a_run_running_on_another_machine_is_refused(tmp_path):
    """ckpt_path=last resumed a run whose record says running on another machine: its lock there
    cannot be seen from here (NFS), so the run read as killed and was resumed while it went on."""
    run = _folder(tmp_path / "run", {"status": "running", "task": "train", "host": "node-7", "pid": 4242})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(LitlabError) as info:
        check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"])
    assert str(info.value) == (
        f"hydra.run.dir={run} is in use by another machine: its metrics.json says its run is running on node-7 (pid "
        f"4242), and a lock there cannot be seen from {socket.gethostname()}. Run this command on node-7, which can "
        f"tell whether that run still works there or was killed, or choose another folder. If node-7 is gone for "
        f"good and the run ended with it, set \"status\": \"killed\" in {run / 'metrics.json'} and run this command "
        f"again.")
    assert not run_lock.holds(run)  # refused before it took the folder
    for record in ({"status": "running", "task": "train", "host": socket.gethostname(), "pid": 4242},  # killed here
                   {"status": "killed", "task": "train", "host": "node-7", "pid": 4242}):  # the way out, by hand
        (run / "metrics.json").write_text(json.dumps(record))
        assert check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"]) is not None  # resumes
        os.close(run_lock._held.pop(run_lock._folder_id(run)))  # as at the process's end


def test_a_second_sweep_into_one_sweep_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, holder):
    """Two sweeps at once with the same hydra.sweep.dir both passed the checks, and the second wrote
    its multirun.yaml and jobs' records over the running one's. The sweep's checks hold the folder;
    its own jobs (in this process, or submitit's processes) hold only their job folders inside it."""
    from omegaconf import OmegaConf

    from litlab.entry import run_entrypoint

    sweep, taken = tmp_path / "sweep", tmp_path / "taken"
    taken.mkdir()
    holder(taken)  # a sweep running there
    with pytest.raises(LitlabError, match=rf"^hydra\.sweep\.dir={taken} is in use: another litlab command is running"):
        check_overrides(["-m", "model=mlp", "seed=1,2", f"hydra.sweep.dir={taken}"])
    assert list(taken.iterdir()) == []
    assert check_overrides(["-m", "model=mlp", "seed=1,2", f"hydra.sweep.dir={sweep}"]) is None
    assert _held_elsewhere(sweep)  # a second sweep into it is refused as in use
    seen = []
    work = _entrypoint_work("train", monkeypatch, lambda cfg: seen.append(_held_elsewhere(Path(cfg.paths.output_dir))))
    (sweep / "0").mkdir()
    run_entrypoint(work, OmegaConf.create({"paths": {"output_dir": str(sweep / "0")}}))  # a job in this process
    (sweep / "1").mkdir()
    holder(sweep / "1")  # a job in submitit's process: it takes its own folder
    assert seen == [True]


def test_a_run_folder_set_in_a_config_file_is_held_by_the_checks(tmp_path):
    """The checks held a run's folder early only for hydra.run.dir= on the command line: one set in
    an experiment file was held once Hydra had rewritten its .hydra/ record, so a second start at
    once replaced the first one's record before it was refused. A timestamped folder is not made."""
    conf, run = tmp_path / "my_conf", tmp_path / "fixed"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "fixed.yaml").write_text(f"# @package _global_\nhydra:\n  run:\n    dir: {run}\n")
    assert check_overrides(["--config-dir", str(conf), "model=mlp", "experiment=fixed"]) is not None
    assert _held_elsewhere(run)
    assert check_overrides(["model=mlp", f"paths.log_dir={tmp_path / 'logs'}"]) is not None
    assert not (tmp_path / "logs").exists()


def test_a_sweep_job_in_use_is_named_as_the_job_folder(tmp_path, monkeypatch, holder):
    """A job's folder held by another command was named hydra.sweep.dir=<the job's folder>: not a value
    to give hydra.sweep.dir."""
    from omegaconf import OmegaConf

    from litlab import entry

    job = tmp_path / "sweep" / "3"
    job.mkdir(parents=True)
    holder(job)
    monkeypatch.setattr(entry, "is_multirun", lambda: True)
    with pytest.raises(LitlabError, match=rf"^the job's folder {job} is in use: another litlab command is running"):
        entry._hold_run_folder(OmegaConf.create({"paths": {"output_dir": str(job)}}))


def test_a_training_resume_into_an_lr_find_folder_names_lr_find(tmp_path):
    """train ckpt_path=<other run's> into an lr_find folder said its run "stopped before its first
    checkpoint and cannot be resumed": it holds no training run at all."""
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"not read by the checks")
    run = _folder(tmp_path / "lr", {"status": "completed", "task": "lr_find"})
    with pytest.raises(LitlabError) as info:
        check_overrides(["model=mlp", f"ckpt_path={other}", f"hydra.run.dir={run}"])
    assert str(info.value) == (
        f"hydra.run.dir={run} already holds a run. It holds the results of python -m litlab.lr_find (its metrics.json "
        f"says task: lr_find), not a training run, so there is nothing to resume there: choose a new folder (or leave "
        f"hydra.run.dir out: each run gets its own); litlab does not write over a run.")


@pytest.mark.parametrize("task", ["eval", "predict"])
def test_a_retry_of_a_failed_eval_starts_its_record_afresh(tmp_path, monkeypatch, task):
    """A failed eval or predict retried in its folder kept the first try's error next to the retry's
    status: completed (records are merged into); a retry that failed again kept the first error."""
    from omegaconf import OmegaConf

    from litlab.entry import run_entrypoint
    from litlab.reporting.run_files import update_metrics

    run = _folder(tmp_path / "run", {"status": "failed", "task": task, "error": "the first try's"})
    cfg = OmegaConf.create({"paths": {"output_dir": str(run)}, "task_name": task})

    def fails(cfg):
        raise LitlabError("the second try's")

    with pytest.raises(SystemExit):
        run_entrypoint(fails, cfg)
    assert json.loads((run / "metrics.json").read_text()) == {"status": "failed", "task": task,
                                                               "error": "the second try's"}
    os.close(run_lock._held.pop(run_lock._folder_id(run)))  # as at the process's end
    run_lock._taken_for_runs.clear()
    run_entrypoint(lambda cfg: update_metrics(run, status="completed", task=task, predicted=3), cfg)
    assert json.loads((run / "metrics.json").read_text()) == {"status": "completed", "task": task, "predicted": 3}


def test_a_folder_that_cannot_be_identified_is_not_held_as_none(tmp_path, monkeypatch):
    """Where fstat failed, the folder was held under None, and every later folder without an
    identity read as held by this process."""
    monkeypatch.setattr(run_lock, "_folder_id", lambda folder: None)
    run_lock.hold_run_dir(tmp_path / "run", "hydra.run.dir")
    assert None not in run_lock._held
