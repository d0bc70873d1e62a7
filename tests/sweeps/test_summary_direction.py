"""A metric best at neither end is listed, not ranked: lr_find's range tests summarized by
``--metric suggested_lr`` were "ranked by suggested_lr (maximize)", the largest suggested rate
first as if it were the best. ``--direction`` still ranks by it."""

from __future__ import annotations

import json

import pytest
import yaml

from litlab.metric_direction import lower_is_better
from litlab.summarize import main, rank_sweep


def _range_test(folder, model, suggested_lr):
    """A run folder of ``python -m litlab.lr_find model=<model>`` (its metrics.json's keys)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}"]))
    record = {"task": "lr_find", "status": "completed", "suggested_lr": suggested_lr,
              "suggested_by": "steepest descent of the smoothed loss", "suggested_step": 40,
              "min_loss_lr": suggested_lr * 10, "min_loss_step": 60, "min_loss_lr_div10": suggested_lr,
              "usable_points": 80, "no_suggestion": None}
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def range_tests(tmp_path):
    runs = tmp_path / "runs"
    _range_test(runs / "a", "mlp", 1e-3)
    _range_test(runs / "b", "cnn", 3e-2)
    _range_test(runs / "c", "rnn", 2e-4)
    return runs


@pytest.mark.parametrize("metric", ["suggested_lr", "usable_points"])
def test_range_tests_are_listed_in_run_order_without_a_direction(range_tests, capsys, metric):
    table = rank_sweep(range_tests, metric=metric)
    assert table["direction"] is None
    assert [(row["job"], row["rank"]) for row in table["rows"]] == [("a", "-"), ("b", "-"), ("c", "-")]
    assert any(note.startswith(f"no direction: {metric} of a learning-rate range test (task: lr_find)")
               for note in table["notes"])
    main([str(range_tests), "--metric", metric])
    out = capsys.readouterr().out
    assert out.startswith(f"3 jobs by {metric} (no direction: listed in job order):\n")
    assert "maximize" not in out.split("--direction maximize")[0]  # only in the advice to pass it
    assert (range_tests / "summary.md").read_text().startswith(
        f"# Sweep runs: 3 jobs by {metric} (no direction: listed in job order)\n")


def test_a_given_direction_ranks_them(range_tests, capsys):
    table = rank_sweep(range_tests, metric="suggested_lr", direction="minimize")
    assert [(row["job"], row["rank"]) for row in table["rows"]] == [("c", 1), ("a", 2), ("b", 3)]
    assert not any(note.startswith("no direction") for note in table["notes"])
    main([str(range_tests), "--metric", "suggested_lr", "--direction", "maximize"])
    assert capsys.readouterr().out.startswith("3 jobs ranked by suggested_lr (maximize):\n")


def test_a_learning_rate_of_a_training_sweep_has_no_direction(tmp_path):
    """A trained job's learning rate (Lightning's lr-Adam) is a setting, not a score."""
    sweep = tmp_path / "sweep"
    for job, lr, acc in (("0", 0.01, 0.8), ("1", 0.1, 0.9)):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "metrics.json").write_text(json.dumps({"task": "train", "status": "completed",
                                                              "val/acc": acc, "lr-Adam": lr}))
    table = rank_sweep(sweep, metric="lr-Adam")
    assert table["direction"] is None and [row["job"] for row in table["rows"]] == ["0", "1"]
    assert "no direction: lr-Adam is a learning rate, a setting and not a score" in table["notes"][-1]
    assert rank_sweep(sweep)["direction"] == "maximize"  # val/acc as before


@pytest.mark.parametrize("metric, lower", [("val/loss", True), ("val/acc", False), ("val/f1", None),
                                           ("suggested_lr", None), ("min_loss_lr", None), ("min_loss_lr_div10", None),
                                           ("lr-Adam", None), ("model.optimizer.learning_rate", None),
                                           ("lr_find/loss", True), ("clr_acc", False)])
def test_a_learning_rate_is_best_at_neither_end(metric, lower):
    """The ``loss`` in ``min_loss_lr`` says where the rate was taken: it is no loss to minimize."""
    assert lower_is_better(metric) is lower
