"""metrics.json's train_samples_per_s covers the whole run, across resumes (checkpointed totals)."""

from __future__ import annotations

import json

import pytest
import torch

from litlab.training import train
from tests.helpers import write_npz

# 300 training samples in batches of 16: 19 batches an epoch (the last of 12 samples)
RUN = ["model=mlp", "data=npz", "data.batch_size=16", "logger=none", "test=false"]


def test_a_run_resumed_within_an_epoch_reports_the_whole_runs_rate(cfg_factory, tmp_path):
    """Cut by trainer.max_steps after 12 batches, then resumed to the end of its 2 epochs: last.ckpt
    holds all 600 samples trained and their seconds (in both processes), and metrics.json the rate
    over them. The rate covered the resumed process only, and no checkpoint held the totals."""
    run = [*RUN, f"data.path={write_npz(tmp_path / 'a.npz', n=300)}"]
    train(cfg_factory([*run, "+trainer.max_steps=12"], name="run"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cut = torch.load(last, weights_only=True)["callbacks"]["Throughput"]
    assert cut["samples"] == 12 * 16 and cut["seconds"] > 0

    train(cfg_factory([*run, "ckpt_path=last"], name="run"))
    totals = torch.load(last, weights_only=True)["callbacks"]["Throughput"]
    assert totals["samples"] == 2 * 300 and totals["seconds"] > cut["seconds"]
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["global_step"] == 38
    assert record["train_samples_per_s"] == pytest.approx(totals["samples"] / totals["seconds"], rel=1e-9)
