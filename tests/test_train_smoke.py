"""A first end-to-end check of train(): the default experiment trains and reports."""

import json

from litlab.training import train


def test_default_cnn_on_digits_trains(cfg_factory, tmp_path):
    cfg = cfg_factory(["trainer.max_epochs=3"])
    value = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert value == metrics["val/acc"]
    assert metrics["test/acc"] > 0.8
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
