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

from litlab.summarize import main, rank_sweep

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"

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


def _sweep(path, task):
    """A grid sweep's folder as Hydra's basic sweeper writes it before its first job."""
    path.mkdir(parents=True)
    hydra = {"sweep": {"dir": str(path), "subdir": "${hydra.job.num}"},
             "sweeper": {"_target_": BASIC, "max_batch_size": None, "params": None},
             "overrides": {"hydra": [f"hydra.sweep.dir={path}", "hydra.mode=MULTIRUN"], "task": task},
             "job": {"name": "train"}}
    (path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "task_name": "train"}))
    return path


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
    sweep = _sweep(tmp_path / "sweep", ["model=mlp,cnn,rnn"])
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
    sweep = _sweep(tmp_path / "sweep", ["model=mlp,cnn"])
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
