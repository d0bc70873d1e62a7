"""Ctrl-C or SIGTERM during a sweep: the sweep's process prints one line naming the interrupted
jobs and exits with the signal's status (130, 143), also where a launcher runs the jobs in other
processes (submitit_local ended in a 24-line UncompletedJobError traceback and exit status 1)."""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

import litlab.train as entry
from litlab.sweeps import interrupted, outcome
from tests.conftest import REPO


def _sweep_dir(tmp_path, **statuses):
    sweep = tmp_path / "sweep"
    for job, status in statuses.items():
        (sweep / job).mkdir(parents=True)
        (sweep / job / "metrics.json").write_text(json.dumps({"status": status}))
    return sweep


class _NotStopped(Exception):
    pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_sweep_waits_for_its_jobs_exits_with_its_status(tmp_path, monkeypatch, capsys, sig):
    """The launcher's wait (submitit's) is stopped with one line and the signal's status; before,
    submitit's UncompletedJobError traceback ended the sweep with status 1 (SIGINT), or the process
    died without a word (SIGTERM's default)."""
    sweep = _sweep_dir(tmp_path, **{"0": "interrupted", "1": "completed", "2": "interrupted"})

    def launch():  # the sweep started, then waits for jobs in other processes
        monkeypatch.setattr(outcome, "current_sweep_dir", sweep)
        os.kill(os.getpid(), sig)
        for _ in range(40):
            time.sleep(0.05)
        raise _NotStopped

    def not_stopped(signum, frame):
        raise _NotStopped

    previous = signal.signal(signal.SIGINT, not_stopped)
    signal.signal(signal.SIGTERM, not_stopped)  # where the old code left SIGTERM alone: a failure, not a dead pytest
    monkeypatch.setattr(sys, "argv", ["litlab-train", "-m", "model.optimizer.lr=1e-3,2e-3"])
    monkeypatch.setattr(entry, "check_cli", lambda argv: None)
    monkeypatch.setattr(entry, "_hydra_main", launch)
    try:
        with pytest.raises(SystemExit) as exit_info:
            entry.main()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert exit_info.value.code == 128 + sig
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"Sweep interrupted by signal {signal.Signals(sig).name} in {sweep}; interrupted jobs: 0, 2. ")
    assert f"python -m litlab.summarize {sweep}" in err
    # the handlers are those of before the sweep again
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_job_of_this_process_that_exits_on_the_signal_ends_the_sweep_with_the_line(tmp_path, monkeypatch, capsys):
    """Under the basic launcher the job itself stops on Ctrl-C and exits 130: the sweep said nothing."""
    sweep = _sweep_dir(tmp_path, **{"0": "completed", "1": "interrupted"})

    def launch():
        monkeypatch.setattr(outcome, "current_sweep_dir", sweep)
        raise SystemExit(130)

    monkeypatch.setattr(sys, "argv", ["litlab-train", "-m", "model.optimizer.lr=1e-3,2e-3"])
    monkeypatch.setattr(entry, "check_cli", lambda argv: None)
    monkeypatch.setattr(entry, "_hydra_main", launch)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:
            entry.main()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().startswith(f"Sweep interrupted by signal SIGINT in {sweep}; interrupted "
                                                      f"jobs: 1. ")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="children are told apart from Linux's /proc")
def test_the_end_line_waits_for_the_job_controllers_and_no_other_child(tmp_path, monkeypatch, capsys):
    """Children of the sweep's process: the resource tracker (for good), a process that ends by
    itself after 40 s, and a submitit job controller whose job ends once told. The line waited for
    every child up to its deadline (60 s here): it reaped the 40 s child, then waited on for the
    tracker. Now it comes once the controller ended, the other two still running (40 s leaves a
    loaded machine time to start the controller and its job)."""
    from multiprocessing import resource_tracker

    from submitit.local.local import start_controller

    resource_tracker.ensure_running()
    tracker = resource_tracker._resource_tracker._pid
    go = tmp_path / "go"
    job = f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(40)"])
    controller = start_controller(tmp_path / ".submitit" / "%j", shlex.join([sys.executable, "-c", job]))
    sweep = _sweep_dir(tmp_path, **{"0": "interrupted", "1": "completed"})
    monkeypatch.setattr(outcome, "current_sweep_dir", sweep)
    monkeypatch.setattr(interrupted, "_settled_statuses",
                        functools.partial(interrupted._settled_statuses, wait_s=60))
    try:
        go.touch()
        with pytest.raises(SystemExit) as exit_info:
            interrupted.exit_interrupted(signal.SIGINT)
        assert other.poll() is None, "the line waited for a child that runs no job"
        assert not os.path.exists(f"/proc/{controller.pid}"), "the job controller was not waited for"
        assert tracker is not None and os.path.exists(f"/proc/{tracker}")
    finally:
        other.kill()
        other.wait()
        controller.wait(timeout=60)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().startswith(f"Sweep interrupted by signal SIGINT in {sweep}; interrupted "
                                                      f"jobs: 0. ")


def test_a_sigint_the_shell_had_ignored_stays_ignored():
    """A sweep started in the background by a script ignores Ctrl-C meant for the script."""
    from litlab.sweeps.interrupted import sweep_stops_on_signals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sweep_stops_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_ctrl_c_during_a_submitit_local_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "litlab.train", "-m", "hydra/launcher=submitit_local", "model=mlp",
         "trainer.accelerator=cpu", "trainer.max_epochs=100", "model.optimizer.lr=1e-3,2e-3",
         f"hydra.sweep.dir={sweep}", f"paths.data_dir={tmp_path / 'data'}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as from a terminal: Ctrl-C's default action (pytest-xdist's workers ignore SIGINT, and a
        # child would inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # both jobs started
            metrics = [sweep / job / "metrics.json" for job in ("0", "1")]
            if all(m.is_file() and '"running"' in m.read_text() for m in metrics):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
        err = proc.communicate(timeout=90)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert "UncompletedJobError" not in err and "src/litlab/train.py" not in err
    assert err.strip().splitlines()[-1].startswith(f"Sweep interrupted by signal SIGINT in {sweep}; interrupted jobs: 0, 1.")
    assert [json.loads((sweep / j / "metrics.json").read_text())["status"] for j in ("0", "1")] == ["interrupted"] * 2
