"""litlab.summarize gives every override that differs between jobs a column, ``logger``/``callbacks``
ones included; bookkeeping keys and keys the same in every job stay out (job folders written by hand)."""

from __future__ import annotations

import json

import pytest

from litlab.summarize import main, summarize
from litlab.sweeps.sweep_table import read_jobs, swept_params


def _job(sweep, name, overrides, acc):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "metrics.json").write_text(json.dumps({"status": "completed", "val/acc": acc, "test/acc": acc - 0.01,
                                                     "optimized_metric": "val/acc"}))


def test_a_swept_callback_setting_is_a_column(tmp_path, capsys):
    """-m callbacks=early_stopping callbacks.early_stopping.patience=2,10 printed no patience column."""
    s = tmp_path / "patience"
    _job(s, "0", ["callbacks=early_stopping", "callbacks.early_stopping.patience=2"], 0.8)
    _job(s, "1", ["callbacks=early_stopping", "callbacks.early_stopping.patience=10"], 0.9)
    rows = summarize(s)["rows"]
    assert [(r["job"], r["callbacks.early_stopping.patience"]) for r in rows] == [("1", "10"), ("0", "2")]
    assert "callbacks" not in rows[0]  # the same in both jobs
    header = (s / "summary.md").read_text().splitlines()[2]
    assert header == "| rank | job | callbacks.early_stopping.patience | status | val/acc | test/acc |"
    main([str(s)])
    printed = capsys.readouterr().out
    assert "rank  job  callbacks.early_stopping.patience  status" in printed


@pytest.mark.parametrize("key, values", [
    ("callbacks.model_checkpoint.monitor", ["val/acc", "val/loss"]),
    ("logger.histograms", ["true", "false"]),
    ("logger", ["csv", "tensorboard"]),
    ("callbacks", ["none", "default"]),
    ("+logger.tensorboard.log_graph", ["true", "false"]),
])
def test_any_logger_or_callbacks_override_that_differs_is_a_column(tmp_path, key, values):
    s = tmp_path / "sweep"
    for i, value in enumerate(values):
        _job(s, str(i), ["model.optimizer.lr=0.001", f"{key}={value}"], 0.8 + 0.1 * i)
    column = key.lstrip("+")
    assert swept_params(read_jobs(s)) == [column]
    rows = summarize(s)["rows"]
    assert {r["job"]: r[column] for r in rows} == {str(i): v for i, v in enumerate(values)}


def test_a_callbacks_key_only_some_jobs_set_is_a_column(tmp_path):
    s = tmp_path / "sweep"
    _job(s, "0", ["callbacks=none"], 0.8)
    _job(s, "1", ["callbacks=early_stopping", "callbacks.early_stopping.patience=3"], 0.9)
    rows = summarize(s)["rows"]
    assert [(r["job"], r["callbacks"], r["callbacks.early_stopping.patience"]) for r in rows] == [
        ("1", "early_stopping", "3"), ("0", "none", "")]


def test_bookkeeping_and_constant_keys_stay_out(tmp_path):
    """Paths, Hydra's and the search's settings never describe the experiment, even where they differ;
    a logger or callbacks choice the same in every job is no column."""
    s = tmp_path / "sweep"
    for i, lr in enumerate(["0.001", "0.003"]):
        _job(s, str(i), [f"model.optimizer.lr={lr}", "logger=none", "callbacks=none", "hparams_search=digits_optuna",
                         f"paths.output_dir=/tmp/out/{i}", f"hydra.sweep.subdir={i}", f"hydra/launcher=l{i}",
                         f"paths=p{i}"], 0.8 + 0.1 * i)
    assert swept_params(read_jobs(s)) == ["model.optimizer.lr"]
    assert list(summarize(s)["rows"][0]) == ["rank", "job", "model.optimizer.lr", "status", "val/acc", "test/acc"]


def test_a_one_job_sweep_shows_its_overrides_but_the_run_setup(tmp_path):
    s = tmp_path / "one"
    _job(s, "0", ["model.optimizer.lr=0.001", "logger=csv", "callbacks=default", "hydra.job.chdir=false"], 0.8)
    assert swept_params(read_jobs(s)) == ["model.optimizer.lr"]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_job_resumed_in_its_folder_gets_no_ckpt_path_column(tmp_path, n_jobs):
    """``ckpt_path=last hydra.run.dir=<sweep>/0`` rewrites that job's .hydra/overrides.yaml with
    ckpt_path=last: the summary then showed a ckpt_path column (empty for the other jobs)."""
    s = tmp_path / "sweep"
    _job(s, "0", ["model=mlp", "model.optimizer.lr=0.001", "ckpt_path=last"], 0.8)
    if n_jobs == 2:
        _job(s, "1", ["model=mlp", "model.optimizer.lr=0.002"], 0.9)
    expected = ["model.optimizer.lr"] if n_jobs == 2 else ["model", "model.optimizer.lr"]
    assert swept_params(read_jobs(s)) == expected
    rows = summarize(s)["rows"]
    assert all("ckpt_path" not in r for r in rows)
    assert "ckpt_path" not in (s / "summary.md").read_text()


def test_the_calibration_error_of_the_test_split_is_a_column_where_the_jobs_logged_it(tmp_path):
    """test/ece (callbacks.eval_report) beside test/acc in the per-job and the averaged tables; a job
    of an older litlab without it shows an empty cell."""
    s = tmp_path / "sweep"
    for i, (seed, ece) in enumerate([("1", 0.03), ("2", 0.05), ("3", None)]):
        _job(s, str(i), ["model.optimizer.lr=0.001", f"seed={seed}"], 0.8 + 0.01 * i)
        record = json.loads((s / str(i) / "metrics.json").read_text())
        if ece is not None:
            record["test/ece"] = ece
        (s / str(i) / "metrics.json").write_text(json.dumps(record))
    table = summarize(s, average_over="seed")
    assert list(table["rows"][0]) == ["rank", "job", "seed", "status", "val/acc", "test/acc", "test/ece"]
    assert {r["job"]: r["test/ece"] for r in table["rows"]} == {"0": 0.03, "1": 0.05, "2": None}
    (row,) = table["averaged"]["rows"]
    assert row["test/ece mean"] == pytest.approx(0.04) and row["test/ece n"] == 2
