"""A NaN loss stops the run at once, names the step, and keeps the last good checkpoint."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from litlab.entry import run_entrypoint
from litlab.training import train


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(cfg_factory, tmp_path):
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=4", "+callbacks.poison._target_=tests.helpers.PoisonWeightsAtEpoch",
                       "+callbacks.poison.epoch=2"])
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train, cfg)
    assert exit_info.value.code == 2
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed"
    # digits train split: 19 steps per epoch, so epoch 2 starts at step 38
    assert "NaN or infinite at training step 38 (epoch 2)" in m["error"]
    assert "checkpoints/last.ckpt keeps the last good epoch" in m["error"]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    # the NaN weights were never validated: the logged curves end with the last good epoch
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as f:
        val_loss = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    assert len(val_loss) == 2 and all(v == v for v in val_loss)  # epochs 0 and 1, no NaN


def test_nan_loss_in_the_first_epoch_says_no_checkpoint_was_written(cfg_factory, tmp_path):
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=2", "+callbacks.poison._target_=tests.helpers.PoisonWeightsAtEpoch",
                       "+callbacks.poison.epoch=0"])
    with pytest.raises(SystemExit):
        run_entrypoint(train, cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "(epoch 0)" in m["error"] and "no checkpoint was written (no epoch had finished)" in m["error"]
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
