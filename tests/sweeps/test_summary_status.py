"""litlab.summarize ranks completed jobs only, and names the sweep's own metric and direction when
no job recorded one (job folders written by hand)."""

from __future__ import annotations

import json

import pytest

from litlab.summarize import main, summarize
from litlab.sweeps.sweep_plots import metric_vs_params
from litlab.sweeps.sweep_table import read_jobs

MISSPELT = "optimized_metric=val/accuracy is not among this run's metrics (val/loss, val/acc)"


def _job(sweep, name, lr, metrics, config=None, hydra=None):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- model.optimizer.lr={lr}\n")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        (folder / ".hydra" / "config.yaml").write_text(config)
    if hydra is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(hydra)


@pytest.fixture
def mixed(tmp_path):
    """Completed jobs, and jobs that did not complete but hold the metric, with better values."""
    s = tmp_path / "mixed"
    # failed after training: its optimized_metric named no metric of the run
    _job(s, "0", 0.003, {"status": "failed", "val/acc": 0.99, "optimized_metric": "val/accuracy", "error": MISSPELT})
    _job(s, "1", 0.003, {"status": "completed", "val/acc": 0.8, "optimized_metric": "val/acc"})
    _job(s, "2", 0.001, {"status": "interrupted", "val/acc": 0.97, "error": "interrupted by signal SIGTERM"})
    _job(s, "3", 0.001, {"status": "completed", "val/acc": 0.9, "optimized_metric": "val/acc"})
    _job(s, "4", 0.01, {"status": "running", "val/acc": 0.98})  # no command runs in it: killed (test_killed_runs)
    return s


def test_jobs_that_did_not_complete_are_listed_last_unranked(mixed):
    """A failed job that still held the metric was ranked #1 above the completed ones."""
    rows = summarize(mixed, metric="val/acc")["rows"]
    assert [(r["rank"], r["job"], r["status"]) for r in rows] == [
        (1, "3", "completed"), (2, "1", "completed"),
        ("-", "0", "failed"), ("-", "2", "interrupted"), ("-", "4", "killed")]
    assert rows[2]["error"].startswith("optimized_metric=val/accuracy is not among")
    assert rows[3]["error"] == "interrupted by signal SIGTERM"
    md = (mixed / "summary.md").read_text().splitlines()
    assert md[4].startswith("| 1 | 3 | 0.001 | completed | 0.9 |") and md[6].startswith("| - | 0 | 0.003 | failed |")


def test_the_metric_figure_draws_completed_jobs_only(mixed):
    fig = metric_vs_params(read_jobs(mixed), ["model.optimizer.lr"], "val/acc")
    assert sorted(fig.axes[0].collections[0].get_offsets()[:, 1]) == [0.8, 0.9]
    assert "(2 of 5 jobs finished)" in fig._suptitle.get_text()


def test_a_failed_job_is_no_point_of_the_pareto_front(tmp_path):
    s = tmp_path / "compressed"
    for name, status, acc, size in [("0", "completed", 0.9, 2000), ("1", "completed", 0.8, 1000),
                                    ("2", "failed", 0.95, 500)]:  # failed in export, after its numbers
        _job(s, name, 0.001 * (int(name) + 1), {"status": status, "val/acc": acc, "optimized_metric": "val/acc",
                                                  "compress/after/test_acc": acc,
                                                  "compress/after/size_bytes": size})
    rows = summarize(s)["rows"]
    assert {r["job"]: r["pareto"] for r in rows} == {"0": "size", "1": "size", "2": ""}
    # a count stays a count in the table and its CSV (it was written as 2000.0)
    assert "2000" in (s / "summary.csv").read_text() and "2000.0" not in (s / "summary.csv").read_text()


@pytest.mark.parametrize("where", ["job configs", "multirun.yaml"])
def test_a_sweep_whose_every_job_failed_names_its_own_metric(tmp_path, where, capsys):
    """Both trials failed at a NaN loss before recording optimized_metric (null), and the summary
    fell back to val/acc (maximize) instead of the sweep's val/loss (minimize)."""
    s = tmp_path / "all_failed"
    sweeper = "hydra:\n  sweeper:\n    direction: minimize\n"
    for name in ("0", "1"):
        record = {"status": "failed", "task": "train", "optimized_metric": None,
                  "error": "the training loss became NaN or infinite at training step 2 (epoch 0)"}
        if where == "job configs":  # Optuna: no multirun.yaml, each job's .hydra/ holds its config
            _job(s, name, 1e8, record, config="optimized_metric: val/loss\n", hydra=sweeper)
        else:
            _job(s, name, 1e8, record)
    if where == "multirun.yaml":
        (s / "multirun.yaml").write_text(sweeper + "optimized_metric: val/loss\n")
    result = summarize(s)
    assert (result["metric"], result["direction"]) == ("val/loss", "minimize")
    assert [r["rank"] for r in result["rows"]] == ["-", "-"]
    main([str(s)])
    assert "2 jobs ranked by val/loss (minimize)" in capsys.readouterr().out
    assert "ranked by val/loss (minimize)" in (s / "summary.md").read_text()


def test_a_job_record_names_the_metric_before_the_sweep_config(tmp_path):
    """The sweep's multirun.yaml holds the config's default where optimized_metric was swept: the
    jobs' own records and configs come first."""
    s = tmp_path / "swept_metric"
    _job(s, "0", 0.001, {"status": "completed", "val/loss": 0.3, "val/acc": 0.9, "optimized_metric": "val/loss"})
    _job(s, "1", 0.003, {"status": "failed", "error": "NaN"}, config="optimized_metric: val/loss\n")
    (s / "multirun.yaml").write_text("optimized_metric: val/acc\n")
    result = summarize(s)
    assert (result["metric"], result["direction"]) == ("val/loss", "minimize")


def test_the_cost_axes_read_the_compressed_models_figures_by_name():
    """The keys were guessed by substring ("b1" matched nothing; batch 1 won by being shorter)."""
    from litlab.sweeps.compressed_keys import compression_keys

    jobs = [{"compress/before/test_acc": 0.9, "compress/after/test_acc": 0.8, "compress/after/size_bytes": 10,
             "compress/after/latency_ms_test_batch": 2.0, "compress/after/latency_ms_batch1": 1.0},
            {"compress/size_ratio": 0.5}]
    assert compression_keys(jobs) == {"accuracy": "compress/after/test_acc", "size": "compress/after/size_bytes",
                                      "latency": "compress/after/latency_ms_batch1"}
    assert compression_keys([{"val/acc": 0.9}]) == {}


def test_the_compressed_models_flops_are_a_cost_with_their_own_pareto_front(tmp_path):
    s = tmp_path / "flops"
    for name, acc, size, flops in [("0", 0.9, 2000, 600), ("1", 0.8, 1000, 900), ("2", 0.85, 3000, 100)]:
        _job(s, name, 0.001 * (int(name) + 1), {"status": "completed", "val/acc": acc, "optimized_metric": "val/acc",
                                                  "compress/after/test_acc": acc, "compress/after/size_bytes": size,
                                                  "compress/after/flops": flops})
    rows = summarize(s)["rows"]
    # size: 1 (smallest) and 0 (most accurate); FLOPs: 2 (fewest) and 0; 1 is beaten by 2 on FLOPs
    assert {r["job"]: r["pareto"] for r in rows} == {"0": "size flops", "1": "size", "2": "flops"}
    assert (s / "accuracy_vs_flops.png").is_file() and "compress/after/flops" in (s / "summary.csv").read_text()
