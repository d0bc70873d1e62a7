"""summarize while a grid sweep still runs: the grid's jobs without a folder are waiting for their
turn, not "never started", and no command that would start them a second time is given; once the
sweep's process has ended they never started, with the commands that run them. The sweep's process
holds its folder (``SweepOutcome.on_multirun_start``), which is how summarize tells the two apart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from litlab.errors import LitlabError
from litlab.summarize import main, rank_sweep
from tests.helpers import write_sweep_record


# the sweep's process: holds the sweep folder as a sweep's start does, and the folder of the job
# it runs now, if one is given, as a running job does (an exclusive flock on the folder), then
# waits to be killed
SWEEP_PROCESS = """
import fcntl, os, sys
from omegaconf import OmegaConf
from litlab.sweeps.outcome import SweepOutcome

SweepOutcome().on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": sys.argv[1]}}}))
for job in sys.argv[2:]:
    fcntl.flock(os.open(job, os.O_RDONLY), fcntl.LOCK_EX)
print("started", flush=True)
sys.stdin.read()
"""


def _job(sweep, name, overrides, record):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps({"task": "train", "optimized_metric": "val/acc", **record}))
    return folder


@pytest.fixture
def running_grid(tmp_path):
    """A grid of 3 jobs (model=mlp,cnn,rnn): job 0 completed, job 1 running in the sweep's live
    process, job 2 not reached yet. Yields the folder and that process."""
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn,rnn"])
    _job(sweep, "0", ["model=mlp"], {"status": "completed", "val/acc": 0.9})
    running = _job(sweep, "1", ["model=cnn"], {"status": "running", "host": socket.gethostname()})
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_PROCESS, str(sweep), str(running)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        record = json.loads((running / "metrics.json").read_text())
        (running / "metrics.json").write_text(json.dumps({**record, "pid": proc.pid}))
        yield sweep, proc
    finally:
        proc.kill()
        proc.wait()


def test_jobs_a_running_sweep_has_not_reached_are_waiting_without_commands(running_grid, capsys):
    """summarize during the sweep said job 2 "never started" and gave the command that starts it,
    which the sweep would then start a second time into the same folder."""
    sweep, proc = running_grid
    table = rank_sweep(sweep)
    running = f"the sweep is running, pid {proc.pid} on host {socket.gethostname()}"
    head = f"1 of the grid's 3 jobs not started yet ({running})"
    assert table["unstarted"] == (head, [])
    assert {row["job"]: row["status"] for row in table["rows"]} == {"0": "completed", "1": "running"}
    main([str(sweep)])
    out = capsys.readouterr().out
    assert head in out and "never started" not in out and "hydra.run.dir=" not in out
    markdown = (sweep / "summary.md").read_text()
    assert markdown.endswith(f"\n\n{head}\n") and "- job 2" not in markdown


def test_once_the_sweep_ended_its_unreached_jobs_never_started(running_grid, capsys):
    """The same folder after the sweep's process ended (killed here): job 1 reads killed, and job 2
    never started, with the command that runs it."""
    sweep, proc = running_grid
    proc.kill()
    proc.wait()
    table = rank_sweep(sweep)
    assert {row["job"]: row["status"] for row in table["rows"]} == {"0": "completed", "1": "killed"}
    head, commands = table["unstarted"]
    assert head.startswith("1 of the sweep's 3 grid jobs never started (no job folder)")
    assert commands == [("job 2 (model=rnn)", f"python -m litlab.train model=rnn hydra.run.dir={sweep}/2")]
    main([str(sweep)])
    assert f"  job 2 (model=rnn): python -m litlab.train model=rnn hydra.run.dir={sweep}/2" in capsys.readouterr().out


def test_a_running_sweep_before_its_first_job_is_not_to_be_run_again(tmp_path, capsys):
    """No job folder yet: "stopped before its first job started ... Run the sweep again" was wrong
    for a sweep whose first job is starting."""
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn"])
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_PROCESS, str(sweep)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        with pytest.raises(SystemExit) as exit_info:
            main([str(sweep)])
    finally:
        proc.kill()
        proc.wait()
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert (f"is a grid sweep of 2 jobs that has not started its first job yet (the sweep is running, pid "
            f"{proc.pid} on host {socket.gethostname()})") in err and "Run the sweep again" not in err
    assert not (sweep / "summary.md").exists()


def test_the_lock_holder_is_the_process_that_holds_the_folder(tmp_path):
    """/proc/locks names the holder by pid; a folder nobody holds has none."""
    from litlab.sweeps.running_sweep import lock_holder

    if not os.path.exists("/proc/locks"):
        pytest.skip("no /proc/locks on this system")
    folder = tmp_path / "held"
    folder.mkdir()
    assert lock_holder(folder) is None
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_PROCESS, str(tmp_path / "sweep"), str(folder)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        assert lock_holder(folder) == proc.pid == lock_holder(tmp_path / "sweep")
    finally:
        proc.kill()
        proc.wait()
    assert lock_holder(folder) is None


def test_a_sweep_folder_another_command_holds_ends_the_command_before_any_job(tmp_path, capsys, monkeypatch):
    """Two sweeps started in the same second share a timestamped folder. The second's hold raised a
    LitlabError inside Hydra's callback wrapper, which catches every Exception and only warns (hidden
    under PYTHONWARNINGS=ignore): the sweep then ran its jobs into the folder the first one holds."""
    from hydra._internal.callbacks import Callbacks
    from omegaconf import OmegaConf

    from litlab.sweeps import outcome

    monkeypatch.setattr(outcome, "current_sweep_dir", None)
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn"])
    before = sorted(p.name for p in sweep.iterdir())
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "callbacks": {
        "sweep_outcome": {"_target_": "litlab.sweeps.outcome.SweepOutcome"}}}})
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_PROCESS, str(sweep)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        with pytest.raises(SystemExit) as exit_info:
            Callbacks(cfg).on_multirun_start(config=cfg)  # as Hydra calls it, in its try/except Exception
    finally:
        proc.kill()
        proc.wait()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"Error: hydra.sweep.dir={sweep} is in use: another litlab command is running "
                                       f"in it now. Wait for it to end, or choose another folder.\n")
    assert sorted(p.name for p in sweep.iterdir()) == before


def _job_holder(folder):
    """Another process that holds a job's folder as its running job does, while the sweep folder is
    held by no one (the sweep's process has ended)."""
    proc = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], "
                             "os.O_RDONLY), fcntl.LOCK_EX); print('started', flush=True); sys.stdin.read()",
                             str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_a_job_running_on_after_its_sweep_ended_leaves_the_commands_given(tmp_path):
    """A job still running here (resumed by hand, a submitit job going on after the sweep's process
    was stopped) read as "the sweep is running", and the never-started jobs' commands were withheld
    although nothing would ever start them."""
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn,rnn"])
    _job(sweep, "0", ["model=mlp"], {"status": "completed", "val/acc": 0.9})
    host = socket.gethostname()
    running = _job(sweep, "1", ["model=cnn"], {"status": "running", "host": host, "pid": 4242})
    proc = _job_holder(running)
    try:
        table = rank_sweep(sweep)
    finally:
        proc.kill()
        proc.wait()
    assert {row["job"]: row["status"] for row in table["rows"]} == {"0": "completed", "1": "running"}
    assert table["unstarted"] == (
        f"1 of the sweep's 3 grid jobs never started (no job folder; job 1 runs, pid 4242 on host {host}; the sweep's "
        f"process has ended); run each in its own folder of the sweep with:",
        [("job 2 (model=rnn)", f"python -m litlab.train model=rnn hydra.run.dir={sweep}/2")])


def test_a_job_running_on_another_machine_leaves_the_sweeps_end_untold(tmp_path, capsys):
    """A job whose record names another machine was said to run after "the sweep's process has
    ended": the sweep folder's lock, taken there, may not be seen here (a network file system), and
    the sweep may go on there and start the jobs the commands start too. That it cannot be told is
    said, and the commands are for once the sweep there has ended."""
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn,rnn"])
    _job(sweep, "0", ["model=mlp"], {"status": "completed", "val/acc": 0.9})
    _job(sweep, "1", ["model=cnn"], {"status": "running", "host": "node-7", "pid": 4242})
    table = rank_sweep(sweep)
    assert {row["job"]: row["status"] for row in table["rows"]} == {"0": "completed", "1": "running (on node-7)"}
    head, commands = table["unstarted"]
    assert head == (
        "1 of the sweep's 3 grid jobs has not started (no job folder; job 1 runs, pid 4242 on host node-7, so "
        "whether the sweep's process still runs cannot be told here: the lock on its folder may be held on another "
        "machine without this one seeing it (a network file system); if the sweep still runs, it starts these jobs "
        "itself); if the sweep on node-7 has ended, run each in its own folder of the sweep with:")
    assert commands == [("job 2 (model=rnn)", f"python -m litlab.train model=rnn hydra.run.dir={sweep}/2")]
    assert "process has ended" not in head
    main([str(sweep)])
    assert "if the sweep on node-7 has ended, run each" in capsys.readouterr().out
    assert "if the sweep on node-7 has ended, run each" in (sweep / "summary.md").read_text()


def test_where_the_sweep_folders_lock_cannot_be_read_the_commands_are_given(tmp_path, monkeypatch):
    """A file system without locks: a job's record saying running stays running (nothing tells it from
    a killed one), and that was taken for a running sweep, whose unstarted jobs got no command; with
    no job folder at all, "stopped before its first job" was said as if that were known."""
    from litlab import run_lock
    from litlab.sweeps import running_sweep

    monkeypatch.setattr(run_lock, "is_running", lambda folder: None)
    monkeypatch.setattr(running_sweep, "is_running", lambda folder: None)
    cannot = ("whether the sweep's process still runs cannot be told here: its folder's lock cannot be read (a file "
              "system without locks); if it still runs, it starts these jobs itself")
    sweep = write_sweep_record(tmp_path / "sweep", ["model=mlp,cnn"])
    with pytest.raises(LitlabError) as info:
        rank_sweep(sweep)
    assert str(info.value) == (f"DIR: {sweep} is a grid sweep of 2 jobs with no job folder yet: no job has results to "
                               f"rank ({cannot}). Once its process has ended, run the sweep again, into a new folder, "
                               f"with: python -m litlab.train -m model=mlp,cnn")
    _job(sweep, "0", ["model=mlp"], {"status": "running", "host": socket.gethostname(), "pid": 4242})
    table = rank_sweep(sweep)
    assert table["rows"][0]["status"] == "running"
    assert table["unstarted"] == (
        f"1 of the sweep's 2 grid jobs never started (no job folder; {cannot}); run each in its own folder of the "
        f"sweep with:", [("job 1 (model=cnn)", f"python -m litlab.train model=cnn hydra.run.dir={sweep}/1")])


def test_a_single_runs_folder_while_it_trains_is_not_a_running_sweep(tmp_path, capsys):
    """summarize of one training run's folder while it trains (it holds its folder as a sweep does)
    said the folder "holds no job folder yet (the sweep is running ...)" and to run it again once a
    job had ended, which never comes: it is the error for a single run's folder."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "metrics.json").write_text(json.dumps({"task": "train", "status": "running", "pid": 4242}))
    proc = _job_holder(run)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([str(run)])
    finally:
        proc.kill()
        proc.wait()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: DIR: {run} is the folder of one run (it holds the run's metrics.json), not of a "
                          f"sweep. summarize ranks the jobs of a sweep's folder (outputs/multiruns/<time>)")
    assert "running" not in err
