"""``made_once`` (tests/conftest.py): a module fixture's folder made once per test session, also
when ``pytest -n N`` spreads the module's tests over several worker processes."""

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
