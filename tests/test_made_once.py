"""``made_once`` (tests/conftest.py): a module fixture's folder made once per test session, also
when ``pytest -n N`` spreads the module's tests over several worker processes."""

import os
import time

import pytest

from tests.conftest import made_once


class _Factory:
    """``tmp_path_factory`` as a worker of ``pytest -n N`` has it: its own folder in the session's."""

    def __init__(self, base):
        self.base = base

    def getbasetemp(self):
        return self.base


def _maker(calls: list):
    def make(folder):
        calls.append(folder)
        (folder / "out.txt").write_text(str(len(calls)))

    return make


def test_the_workers_of_a_session_share_one_folder_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    calls = []
    first = made_once(_Factory(tmp_path / "popen-gw0"), "bench", _maker(calls))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = made_once(_Factory(tmp_path / "popen-gw1"), "bench", _maker(calls))
    assert first == second == tmp_path / "bench"
    assert calls == [tmp_path / "bench"] and (first / "out.txt").read_text() == "1"
    # another name is another folder, made by its own call
    assert made_once(_Factory(tmp_path / "popen-gw1"), "run", _maker(calls)) == tmp_path / "run"
    assert len(calls) == 2


def test_without_workers_the_folder_is_in_the_sessions_own(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    calls = []
    assert made_once(_Factory(tmp_path), "bench", _maker(calls)) == tmp_path / "bench"
    assert made_once(_Factory(tmp_path), "bench", _maker(calls)) == tmp_path / "bench"
    assert len(calls) == 1


def test_a_make_that_failed_is_not_tried_again(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    def broken(folder):
        raise RuntimeError("the benchmark crashed")

    with pytest.raises(RuntimeError, match="the benchmark crashed"):
        made_once(_Factory(tmp_path), "bench", broken)
    calls = []
    with pytest.raises(pytest.fail.Exception, match=r"bench was not made: the test that first needed it failed"):
        made_once(_Factory(tmp_path), "bench", _maker(calls))
    assert calls == []


def test_workers_asking_at_once_wait_for_the_one_that_makes_it(tmp_path):
    """Workers that ask while the folder is being made wait for it (the lock), rather than make
    it again or take it for one whose making failed: each worker is a forked process here."""
    log = tmp_path / "makes.log"

    def make(folder):
        with open(log, "a") as f:
            f.write(f"{os.environ['PYTEST_XDIST_WORKER']}\n")
        time.sleep(0.5)  # the others ask meanwhile
        (folder / "out.txt").write_text("made")

    children = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:  # the worker gw<i>: its exit status says whether it got the made folder
            status = 1
            try:
                os.environ["PYTEST_XDIST_WORKER"] = f"gw{i}"
                folder = made_once(_Factory(tmp_path / f"popen-gw{i}"), "bench", make)
                status = 0 if (folder / "out.txt").read_text() == "made" else 1
            except BaseException as e:  # pytest.fail raises a BaseException
                (tmp_path / f"gw{i}.err").write_text(repr(e))
            finally:
                os._exit(status)
        children.append(pid)
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    errors = {p.name: p.read_text() for p in tmp_path.glob("*.err")}
    assert statuses == [0, 0, 0, 0], errors
    assert len(log.read_text().splitlines()) == 1
