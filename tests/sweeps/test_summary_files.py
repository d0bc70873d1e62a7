"""litlab.summarize on job folders written by hand: unreadable records, repeated summaries, a
metric no job has."""

from __future__ import annotations

import json
import logging

import pytest

from litlab.errors import LitlabError
from litlab.summarize import summarize


def _job(sweep, name, lr, metrics):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- model.optimizer.lr={lr}\n")
    (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path):
    s = tmp_path / "sweep"
    _job(s, "0", 0.001, {"status": "completed", "val/acc": 0.9, "test/acc": 0.88, "optimized_metric": "val/acc"})
    _job(s, "1", 0.003, {"status": "completed", "val/acc": 0.95, "test/acc": 0.9, "optimized_metric": "val/acc"})
    _job(s, "2", 0.01, '{\n  "status": "completed",\n  "val/a')  # cut short
    _job(s, "3", 0.1, "[1, 2]")
    return s


def test_unreadable_records_are_listed_not_fatal(sweep, caplog):
    with caplog.at_level(logging.WARNING):
        rows = summarize(sweep)["rows"]
    assert [(r["job"], r["status"]) for r in rows] == [("1", "completed"), ("0", "completed"),
                                                         ("2", "unreadable"), ("3", "unreadable")]
    assert "2/metrics.json is not valid JSON" in caplog.text and "a JSON list, not an object" in caplog.text


def test_a_repeated_summary_replaces_the_earlier_one(sweep):
    (sweep / "accuracy_vs_size.png").write_bytes(b"from a summary of compressed jobs")
    for _ in range(2):
        summarize(sweep)
    assert len(list((sweep / "tensorboard_summary").glob("events.out.tfevents.*"))) == 1
    assert not (sweep / "accuracy_vs_size.png").exists()  # this sweep has no compression figures
    assert (sweep / "metric_vs_params.png").stat().st_size > 0


def test_a_metric_no_job_has_is_named_with_the_ones_they_have(sweep):
    before = (sweep / "0" / "metrics.json").read_text()
    with pytest.raises(LitlabError, match=r"no job of the sweep has the metric val/accuracy; they have test/acc, val/acc"):
        summarize(sweep, metric="val/accuracy")
    assert not (sweep / "summary.csv").exists() and (sweep / "0" / "metrics.json").read_text() == before


@pytest.mark.parametrize("metric,expected", [("test/acc", "minimize"), ("val/acc", "maximize")])
def test_an_optuna_sweeps_direction_comes_from_the_jobs_records(sweep, metric, expected):
    """Optuna writes no multirun.yaml; its direction (in each job's .hydra/hydra.yaml) was ignored
    and the accuracy ranked as if maximized. It applies to the metric the search optimized only."""
    from litlab.sweeps.sweep_table import direction_of

    for job in ("0", "1", "2", "3"):
        (sweep / job / ".hydra" / "hydra.yaml").write_text("hydra:\n  sweeper:\n    direction: minimize\n")
        (sweep / job / ".hydra" / "config.yaml").write_text("optimized_metric: test/acc\n")
    assert direction_of(metric, sweep) == expected
    if metric == "test/acc":
        result = summarize(sweep, metric="test/acc")
        assert result["direction"] == "minimize"
        assert [r["job"] for r in result["rows"]][:2] == ["0", "1"]  # 0.88 before 0.9


def test_jobs_that_optimized_different_metrics_are_named(tmp_path, caplog):
    s = tmp_path / "mixed"
    _job(s, "0", 0.001, {"status": "completed", "val/acc": 0.9, "val/loss": 0.3, "optimized_metric": "val/acc"})
    _job(s, "1", 0.003, {"status": "completed", "val/acc": 0.8, "val/loss": 0.2, "optimized_metric": "val/loss"})
    with caplog.at_level(logging.WARNING):
        result = summarize(s)
    assert result["metric"] == "val/acc"
    assert "optimized different metrics (val/acc, val/loss); ranking by val/acc. Choose one with --metric" in caplog.text


def test_whole_number_metrics_reach_tensorboard_too(sweep):
    """summary.csv had compress/after/size_bytes and a ranking by global_step, but the TensorBoard
    table kept float values only: no size axis, and no value at all for a metric that is a count."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for job, steps in (("0", 38), ("1", 57)):
        record = json.loads((sweep / job / "metrics.json").read_text()) | {"global_step": steps}
        (sweep / job / "metrics.json").write_text(json.dumps(record))
    summarize(sweep, metric="global_step", direction="minimize")
    for job, steps in (("0", 38), ("1", 57)):
        events = EventAccumulator(str(sweep / "tensorboard_summary" / f"job_{job}"))
        events.Reload()
        assert [e.value for e in events.Scalars("summary/global_step")] == [steps]


def _read_only(monkeypatch, folder):
    """``folder`` as on a read-only file system (root ignores chmod): opening a file in it for
    writing, or making a folder in it, fails with EROFS."""
    import builtins
    import errno
    import io
    import os
    from pathlib import Path

    real_open, real_mkdir = builtins.open, Path.mkdir

    def inside(path):
        return isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).absolute().is_relative_to(folder)

    def fake_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_mkdir(self, *args, **kwargs):
        if inside(self) and not self.is_dir():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)


def test_a_read_only_sweep_folder_still_prints_the_table_and_names_out(sweep, tmp_path, capsys, monkeypatch):
    """It ended in a traceback from summary.csv's write, before the table was printed."""
    from litlab.summarize import main

    _read_only(monkeypatch, sweep)
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep)])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert "4 jobs ranked by val/acc (maximize)" in out and "rank  job  model.optimizer.lr" in out
    assert err == (f"Error: DIR: {sweep}: the summary files cannot be written into {sweep} ({sweep / 'summary.csv'}: "
                   f"Read-only file system). Write them to a folder you can write with --out DIR, e.g. python -m "
                   f"litlab.summarize {sweep} --out summaries/sweep.\n")
    assert not (sweep / "summary.csv").exists()


def test_out_writes_the_summary_into_another_folder(sweep, tmp_path, capsys, monkeypatch):
    from litlab.summarize import main

    _read_only(monkeypatch, sweep)
    target = tmp_path / "elsewhere" / "s"
    main([str(sweep), "--out", str(target)])
    out = capsys.readouterr().out
    assert {p.name for p in target.iterdir()} == {"summary.csv", "summary.md", "metric_vs_params.png",
                                                  "tensorboard_summary"}
    assert (target / "summary.csv").read_text().splitlines()[1].startswith("1,1,0.003,completed,0.95")
    assert not (sweep / "summary.csv").exists() and not (sweep / "tensorboard_summary").exists()
    assert f"tensorboard --logdir {target / 'tensorboard_summary'}" in out


def test_a_sweep_folder_name_too_long_is_one_paragraph(tmp_path, capsys):
    from litlab.summarize import main

    folder = tmp_path / ("x" * 300)
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"Error: DIR: {folder} cannot be read (a name in this path is too long; the "
                                       f"limit per file or folder name is usually 255 bytes). Pass the path of a "
                                       f"multirun folder you can read, e.g. outputs/multiruns/<time>.\n")


def test_the_tensorboard_command_is_shell_quoted(tmp_path, capsys):
    """``tensorboard --logdir`` with a space in the path, pasted into a shell, opened another folder."""
    import shlex

    from litlab.summarize import main

    s = tmp_path / "my sweep"
    _job(s, "0", 0.001, {"status": "completed", "val/acc": 0.9, "optimized_metric": "val/acc"})
    main([str(s)])
    line = next(x for x in capsys.readouterr().out.splitlines() if "tensorboard --logdir" in x)
    assert shlex.split(line.split("open in TensorBoard: ", 1)[1]) == ["tensorboard", "--logdir",
                                                                      str(s / "tensorboard_summary")]


def test_a_reader_that_stops_early_gets_no_traceback_and_the_files_are_written(sweep):
    """``litlab-summarize DIR | head``: the pipe is closed before the first line is printed."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "litlab.summarize", str(sweep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the table is printed (the command imports first)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()
