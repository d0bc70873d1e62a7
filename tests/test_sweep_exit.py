"""A sweep's exit status and last paragraph when some of its jobs did not complete (sweep_fails_on)."""

import json
import shlex

import pytest

from litlab.sweeps import outcome
from tests.conftest import run_cli
from tests.scale.tiny_run import TINY

# model.net.dropout=1.5 is refused as the net is built (a dropout is a probability): that job fails
FAILS, COMPLETES = "1.5", "0.1"


def _sweep(log_dir, dropouts: str, *extra: str):
    return run_cli("litlab.train", "-m", *TINY, f"model.net.dropout={dropouts}", f"paths.log_dir={log_dir}", *extra)


def _sweep_dir(log_dir):
    (sweep_dir,) = (log_dir / "multiruns").iterdir()
    return sweep_dir


def _statuses(sweep_dir) -> dict[str, str]:
    return {j.name: json.loads((j / "metrics.json").read_text())["status"]
            for j in sweep_dir.iterdir() if j.name.isdigit()}


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_exits_0_and_names_it_last(tmp_path):
    proc = _sweep(tmp_path / "log dir", f"{COMPLETES},{FAILS}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = _sweep_dir(tmp_path / "log dir")
    assert _statuses(sweep_dir) == {"0": "completed", "1": "failed"}
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("1 of 2 jobs of this sweep did not complete (1 completed, 1 failed): 1 (failed); ")
    assert f"(python -m litlab.summarize {shlex.quote(str(sweep_dir))} lists them)" in last
    assert "sweep_fails_on=any" in last and "Error" not in last
    assert proc.stderr.count("did not complete") == 1  # once


@pytest.mark.slow
def test_sweep_fails_on_any_exits_1_after_every_job_ran(tmp_path):
    # the failing job runs first: the sweep still goes on to the next one
    proc = _sweep(tmp_path, f"{FAILS},{COMPLETES}", "sweep_fails_on=any")
    assert proc.returncode == 1, proc.stderr[-3000:]
    sweep_dir = _sweep_dir(tmp_path)
    assert _statuses(sweep_dir) == {"0": "failed", "1": "completed"}
    assert json.loads((sweep_dir / "1" / "metrics.json").read_text())["val/acc"] >= 0
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("Error: 1 of 2 jobs of this sweep did not complete (1 completed, 1 failed): 0 (failed); ")
    assert last.endswith("(sweep_fails_on=any).") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_sweep_whose_jobs_all_completed_prints_no_paragraph(tmp_path):
    proc = _sweep(tmp_path, COMPLETES, "sweep_fails_on=any")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = _sweep_dir(tmp_path)
    assert _statuses(sweep_dir) == {"0": "completed"}
    assert "did not complete" not in proc.stderr and "every job" not in proc.stderr


@pytest.mark.parametrize("value", ["some", "true", "all,none", "all,any"])
def test_a_bad_sweep_fails_on_is_refused_before_any_folder(tmp_path, value):
    proc = _sweep(tmp_path, f"{COMPLETES},{FAILS}", f"sweep_fails_on={value}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("Error: sweep_fails_on must be all or any, got ")
    assert "Give sweep_fails_on=all or sweep_fails_on=any." in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_paragraph_names_ten_folders_grouped_by_status_then_how_many_more(monkeypatch, tmp_path):
    jobs = {str(i): "completed" for i in range(3)}
    jobs |= {str(i): "failed" for i in range(3, 13)} | {"13": "killed", "14": "unknown", "15": "failed"}
    monkeypatch.setattr(outcome, "last_jobs", jobs)
    monkeypatch.setattr(outcome, "current_sweep_dir", tmp_path / "s")
    monkeypatch.setattr(outcome, "fails_on", "all")
    message, fails = outcome.unfinished_jobs()
    assert not fails
    assert message.startswith(
        "13 of 16 jobs of this sweep did not complete (3 completed, 11 failed, 1 killed, 1 unknown): "
        "3, 4, 5, 6, 7, 8, 9, 10, 11, 12 (failed) and 3 more; ")
    monkeypatch.setattr(outcome, "fails_on", "any")
    assert outcome.unfinished_jobs()[1]
    monkeypatch.setattr(outcome, "last_jobs", {"0": "failed", "1": "killed", "2": "failed"})
    message, fails = outcome.unfinished_jobs()
    assert fails and message.startswith("every job of this sweep failed (3: 2 failed, 1 killed): 0, 2 (failed), "
                                        "1 (killed); each job's metrics.json says why")
    monkeypatch.setattr(outcome, "last_jobs", {"0": "completed"})
    assert outcome.unfinished_jobs() == (None, False)
