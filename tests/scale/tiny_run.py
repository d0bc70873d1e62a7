"""Shared settings of the scale tests: the smallest runs that still learn something."""

from __future__ import annotations

import json
from pathlib import Path

# synthetic 16x16 images, 256 training samples, one epoch of an MLP: a few seconds per run
TINY = ["data=synthetic", "data.num_train=256", "data.num_val=64", "data.num_test=64", "data.batch_size=32",
        "model=mlp", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false",
        "logger=csv"]


def run_dirs(log_dir: Path) -> list[Path]:
    """Every run or job folder (one holding .hydra/ or metrics.json) under ``log_dir``."""
    found = {p.parent for p in Path(log_dir).rglob("metrics.json")} | {p.parent for p in Path(log_dir).rglob(".hydra")}
    return sorted(found)


def metrics_of(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
