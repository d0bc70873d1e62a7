"""The CSV log of a resumed run continues the old file: earlier epochs kept, the redone steps once."""

from __future__ import annotations

import csv

from litlab.csv_logger import CSVLogger


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resumed_run_keeps_the_finished_steps_and_replaces_the_redone_ones(tmp_path):
    first = CSVLogger(save_dir=tmp_path, name="csv", version="")
    for step in range(10):  # steps 6-9: the unfinished epoch of an interrupted run
        first.log_metrics({"train/loss_step": float(step)}, step=step)
    first.log_metrics({"val/acc": 0.5}, step=5)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"
    assert len(_rows(path)) == 11

    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="")
    resumed.continue_from_step(6)  # litlab.train does this when ckpt_path is set
    assert path.is_file()  # Lightning's writer deletes it here
    for step in range(6, 8):  # the redone steps
        resumed.log_metrics({"train/loss_step": 100.0 + step, "grad/norm": 1.0}, step=step)
    resumed.save()

    rows = _rows(path)
    steps = [int(r["step"]) for r in rows if r["train/loss_step"]]
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [float(r["train/loss_step"]) for r in rows if r["train/loss_step"]][5:] == [5.0, 106.0, 107.0]
    assert [r["val/acc"] for r in rows if r["val/acc"]] == ["0.5"]
    assert "grad/norm" in rows[0]  # the header grew with the new key


def test_a_fresh_run_in_the_same_folder_starts_a_fresh_file(tmp_path):
    first = CSVLogger(save_dir=tmp_path, name="csv", version="")
    first.log_metrics({"val/acc": 0.5}, step=3)
    first.save()
    again = CSVLogger(save_dir=tmp_path, name="csv", version="")  # no continue_from_step
    again.log_metrics({"val/acc": 0.7}, step=0)
    again.save()
    assert [r["val/acc"] for r in _rows(tmp_path / "csv" / "metrics.csv")] == ["0.7"]
