"""The children of a sweep's process that run its jobs (submitit's local job controllers), read
from /proc: the end line of an interrupted sweep waits for these alone."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from multiprocessing import resource_tracker
from pathlib import Path

import pytest
from submitit.local.local import start_controller

from litlab.sweeps import job_processes

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="children are read from Linux's /proc")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not been reaped (a zombie still has its /proc entry)."""
    return Path(f"/proc/{pid}").exists()


def test_the_job_controllers_are_the_children_that_run_submitits_controller(tmp_path):
    """The resource tracker and a process of this one's are children too, and not job processes."""
    resource_tracker.ensure_running()
    go = tmp_path / "go"
    waits = f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)"
    other = subprocess.Popen([sys.executable, "-c", waits])
    controller = start_controller(tmp_path / ".submitit" / "%j", shlex.join([sys.executable, "-c", waits]))
    try:
        assert job_processes.job_controllers() == [controller.pid]
        found = job_processes.children()
        assert found[other.pid] == [sys.executable, "-c", waits]
        assert resource_tracker._resource_tracker._pid in found
        go.touch()
        job_processes.wait_for_job_processes(deadline=time.monotonic() + 60)
        assert not _alive(controller.pid) and job_processes.job_controllers() == []
    finally:
        go.touch()
        for proc in (other, controller):
            proc.wait(timeout=60)


def test_a_controller_started_through_a_shell_is_a_job_process(tmp_path):
    """With submitit's ``setup`` lines the child is the shell that runs them, then the controller."""
    shell = subprocess.Popen(f"read line && {sys.executable} -m {job_processes.CONTROLLER} {tmp_path}", shell=True,
                             stdin=subprocess.PIPE)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert job_processes.job_controllers() == [shell.pid]
        assert job_processes.children()[other.pid] == [sys.executable, "-c", "import time; time.sleep(30)"]
    finally:
        for proc in (shell, other):
            proc.kill()
            proc.wait()


def test_without_proc_every_child_is_waited_for(tmp_path, monkeypatch):
    """macOS: nothing tells a job controller from another child, so every child is waited for, as
    before (up to the deadline, when one lives on)."""
    monkeypatch.setattr(job_processes, "PROC", tmp_path / "no-proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert job_processes.job_controllers() is None
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped yet
    assert _alive(child.pid)
    job_processes.wait_for_job_processes(deadline=time.monotonic() + 0.5)
    assert not _alive(child.pid)
