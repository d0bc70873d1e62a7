"""The lines under a summary's table: eval and predict runs left out of a folder of runs, and the
test_split column of jobs whose test figures are the validation split's; and the paragraph after
a sweep whose every job failed (job folders written by hand)."""

from __future__ import annotations

import csv
import json

import pytest

from litlab.errors import LitlabError
from litlab.summarize import main, rank_sweep, summarize
from litlab.sweeps import outcome


def _run(folder, name, metrics, overrides=("model=mlp",)):
    run = folder / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "optimized_metric": "val/acc", **metrics}))


def test_eval_and_predict_runs_are_left_out_of_the_ranking(tmp_path, capsys):
    """summarize outputs/runs ranked eval and predict folders as trained jobs."""
    runs = tmp_path / "runs"
    _run(runs, "a_train", {"task": "train", "val/acc": 0.8, "test/acc": 0.79}, ["model=mlp"])
    _run(runs, "b_eval", {"task": "eval", "test/acc": 0.99}, ["ckpt_path=x.ckpt"])
    _run(runs, "c_predict", {"task": "predict"}, ["ckpt_path=x.ckpt"])
    _run(runs, "d_train", {"task": "train", "val/acc": 0.9, "test/acc": 0.88}, ["model=cnn"])
    _run(runs, "e_old", {"val/acc": 0.7}, ["model=gru"])  # a record from before "task": a training run
    table = rank_sweep(runs)
    assert [r["job"] for r in table["rows"]] == ["d_train", "a_train", "e_old"]
    line = ("left out 2 folder(s) that are not training runs (metrics.json task eval: b_eval; task predict: "
            "c_predict): they scored no training.")
    assert table["notes"] == [line]
    main([str(runs)])
    assert f"\n{line}\n" in capsys.readouterr().out
    assert line in (runs / "summary.md").read_text()


def test_a_folder_of_eval_runs_alone_is_a_clear_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs, "x", {"task": "eval", "test/acc": 0.9})
    _run(runs, "y", {"task": "predict"})
    with pytest.raises(LitlabError, match=r"holds no training jobs: its 2 run folder\(s\) are not training runs "
                                          r"\(metrics.json task eval: x; task predict: y\)"):
        rank_sweep(runs)
    with pytest.raises(SystemExit):
        main([str(runs)])
    assert "Traceback" not in capsys.readouterr().err
    assert not (runs / "summary.csv").exists()


def test_a_sweep_of_evaluations_is_ranked_as_it_is(tmp_path):
    """litlab.eval -m runs no training: its jobs are what the sweep holds, not folders to leave out."""
    runs = tmp_path / "sweep"
    _run(runs, "0", {"task": "eval", "test/acc": 0.8})
    _run(runs, "1", {"task": "eval", "test/acc": 0.9})
    table = rank_sweep(runs, metric="test/acc")
    assert [row["job"] for row in table["rows"]] == ["1", "0"] and table["notes"] == []


def test_test_figures_of_the_validation_split_are_marked(tmp_path, capsys):
    """A job of an image folder without test/ (test_split val) looked like one scored on a test split."""
    from litlab.sweeps.sweep_table import TEST_SPLIT_LEGEND

    s = tmp_path / "sweep"
    _run(s, "0", {"task": "train", "val/acc": 0.9, "test/acc": 0.9, "test_split": "val"}, ["data=npz"])
    _run(s, "1", {"task": "train", "val/acc": 0.8, "test/acc": 0.7}, ["data=images"])
    _run(s, "2", {"task": "train", "status": "failed", "error": "boom"}, ["data=other"])
    result = summarize(s)
    assert [(r["job"], r["test_split"]) for r in result["rows"]] == [("0", "val"), ("1", "test"), ("2", "")]
    assert result["notes"] == [TEST_SPLIT_LEGEND]
    with open(s / "summary.csv") as f:
        assert [(r["job"], r["test/acc"], r["test_split"]) for r in csv.DictReader(f)] == [
            ("0", "0.9", "val"), ("1", "0.7", "test"), ("2", "", "")]
    md = (s / "summary.md").read_text()
    assert "| test/acc | test_split |" in md and "| 0.9 | val |" in md and TEST_SPLIT_LEGEND in md
    main([str(s)])
    out = capsys.readouterr().out
    assert "test/acc  test_split" in out and f"\n{TEST_SPLIT_LEGEND}\n" in out


def test_no_test_split_column_where_every_job_used_its_test_split(tmp_path):
    s = tmp_path / "sweep"
    _run(s, "0", {"task": "train", "val/acc": 0.9, "test/acc": 0.9}, ["seed=1"])
    _run(s, "1", {"task": "train", "val/acc": 0.8, "test/acc": 0.7}, ["seed=2"])
    table = rank_sweep(s)
    assert "test_split" not in table["rows"][0] and table["notes"] == []


def test_every_job_failed_names_the_sweep_folder(tmp_path, monkeypatch):
    """The paragraph said `python -m litlab.summarize <sweep folder> lists them`, a placeholder."""
    monkeypatch.setattr(outcome, "current_sweep_dir", tmp_path / "my sweep")
    monkeypatch.setattr(outcome, "fails_on", "all")
    monkeypatch.setattr(outcome, "last_jobs", {"0": "failed", "1": "interrupted", "2": "failed"})
    assert outcome.unfinished_jobs() == (
        f"every job of this sweep failed (3: 2 failed, 1 interrupted): 0, 2 (failed), 1 (interrupted); each job's "
        f"metrics.json says why (python -m litlab.summarize '{tmp_path}/my sweep' lists them).", True)
    monkeypatch.setattr(outcome, "last_jobs", {"0": "failed", "1": "completed"})
    message, fails = outcome.unfinished_jobs()
    assert not fails and message.startswith("1 of 2 jobs of this sweep did not complete (1 completed, 1 failed)")
    assert f"(python -m litlab.summarize '{tmp_path}/my sweep' lists them)." in message
