"""The checks of a run's folder before it starts (``run_folders.check_run_folders``) read the
folder's metrics.json once and pass that record down: each refusal (and each resume it lets
through) asked the file again in every helper that needed a field of it, up to seven reads for
one start, and two reads of one check could disagree if a run wrote its record in between."""

from __future__ import annotations

import builtins
import io
import json
import os
import socket
from pathlib import Path

import pytest

from litlab import run_lock
from litlab.config_check import check_overrides
from litlab.errors import LitlabError


@pytest.fixture(autouse=True)
def let_go():
    """The folders a test's checks took for this process are let go after it (as at a process's end)."""
    before = set(run_lock._held)
    yield
    for folder in set(run_lock._held) - before:
        os.close(run_lock._held.pop(folder))


@pytest.fixture
def metrics_reads(monkeypatch):
    """``metrics_reads(run)``: how many times a metrics.json in ``run`` was opened for reading since
    the fixture began (by ``open``, ``io.open`` or ``Path.read_text``, which opens through
    ``io.open``)."""
    opened: list[Path] = []
    real_open = io.open

    def counting_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).name == "metrics.json" and "r" in mode:
            opened.append(Path(file).absolute())
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    return lambda run: sum(path == (Path(run) / "metrics.json").absolute() for path in opened)


def _run(folder: Path, record: dict, checkpoints: tuple[str, ...] = ()) -> Path:
    """A run's folder: its metrics.json and the named ``checkpoints/`` files."""
    (folder / "checkpoints").mkdir(parents=True)
    for name in checkpoints:
        (folder / "checkpoints" / name).write_bytes(b"not read by the checks")
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def _start(tmp_path: Path) -> Path:
    """Another run's checkpoint, a start's ``started_from``."""
    start = tmp_path / "other" / "checkpoints" / "last.ckpt"
    start.parent.mkdir(parents=True)
    start.write_bytes(b"not read by the checks")
    return start


def test_a_resume_of_a_finished_run_reads_its_record_once(tmp_path, metrics_reads):
    """``ckpt_path=last`` on a finished run with its last.ckpt is taken, after one read."""
    run = _run(tmp_path / "run", {"status": "completed", "task": "train"}, ("last.ckpt",))
    assert check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"]) is not None
    assert metrics_reads(run) == 1


def test_resuming_the_start_of_a_killed_run_reads_its_record_once(tmp_path, metrics_reads):
    """The checkpoint a killed start began from resumes it in its folder, after one read."""
    start = _start(tmp_path)
    run = _run(tmp_path / "run", {"status": "running", "task": "train", "started_from": str(start)})
    assert check_overrides(["model=mlp", f"ckpt_path={start}", f"hydra.run.dir={run}"]) is not None
    assert metrics_reads(run) == 1


# each refused start: its arguments (besides hydra.run.dir), the folder's record, its checkpoints,
# and the start of the message that refuses it
REFUSED = {
    "last without a checkpoint": (
        ["ckpt_path=last"], {"status": "completed", "task": "train"}, (),
        "ckpt_path=last: {run} holds no checkpoint. It stopped before its first checkpoint"),
    "last on a killed start": (
        ["ckpt_path=last"], {"status": "running", "task": "train", "started_from": "{start}"}, (),
        "ckpt_path=last: {run} holds no checkpoint: its run started from ckpt_path={start} and was killed"),
    "a finished run": (
        [], {"status": "completed", "task": "train"}, ("last.ckpt",),
        "hydra.run.dir={run} already holds a run. Resume it with ckpt_path=last"),
    "a killed start": (
        [], {"status": "running", "task": "train", "started_from": "{start}"}, (),
        "hydra.run.dir={run} already holds a run. It was killed"),
    "another run's checkpoint": (
        ["ckpt_path={start}"], {"status": "interrupted", "task": "train"}, ("last.ckpt",),
        "hydra.run.dir={run} already holds a run. ckpt_path={start} is a checkpoint of another run"),
    "an eval's folder": (
        [], {"status": "completed", "task": "eval"}, (),
        "hydra.run.dir={run} already holds a run. It holds the results of python -m litlab.eval"),
    "a run on another machine": (
        ["ckpt_path=last"], {"status": "running", "task": "train", "host": "elsewhere-" + socket.gethostname()},
        ("last.ckpt",), "hydra.run.dir={run} is in use by another machine"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_start_reads_the_record_once(tmp_path, metrics_reads, case):
    args, record, checkpoints, message = REFUSED[case]
    start = _start(tmp_path)
    run = _run(tmp_path / "run", {k: v.format(start=start) for k, v in record.items()}, checkpoints)
    with pytest.raises(LitlabError) as info:
        check_overrides(["model=mlp", *[a.format(start=start) for a in args], f"hydra.run.dir={run}"])
    assert str(info.value).startswith(message.format(run=run, start=start))
    assert metrics_reads(run) == 1


def test_a_folder_in_use_is_refused_by_its_lock_before_its_record_is_read(tmp_path, metrics_reads):
    """A folder another command holds (here: this process, by another open of it) is refused by
    the lock alone."""
    import fcntl

    run = _run(tmp_path / "run", {"status": "running", "task": "train"}, ("last.ckpt",))
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LitlabError, match=r"is in use: another litlab command is running in it now"):
            check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"])
    finally:
        os.close(fd)
    assert metrics_reads(run) == 0


def test_a_failed_eval_retried_in_its_folder_reads_the_record_once(tmp_path, metrics_reads):
    """An eval retried in the folder its failed try left takes it, after one read."""
    run = _run(tmp_path / "run", {"status": "failed", "task": "eval"})
    ckpt = _start(tmp_path)
    assert check_overrides([f"ckpt_path={ckpt}", f"hydra.run.dir={run}"], config_name="eval") is not None
    assert metrics_reads(run) == 1
