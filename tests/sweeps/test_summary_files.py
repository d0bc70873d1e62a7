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
