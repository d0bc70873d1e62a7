"""A resumed run keeps the config record of every earlier start of its folder."""

from __future__ import annotations

import json

from litlab.reporting.run_files import keep_config_record, restore_config_record, start_metrics, update_metrics


def _write_record(run_dir, overrides: str) -> None:
    record = run_dir / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "hydra.yaml"):
        (record / name).write_text(f"{name} of {overrides}")
    (record / "overrides.yaml").write_text(overrides)


def test_each_resume_keeps_the_start_before_it(tmp_path):
    assert keep_config_record(tmp_path) is None  # nothing to keep in a fresh folder
    _write_record(tmp_path, "- seed=1\n")
    assert keep_config_record(tmp_path) == tmp_path / ".hydra" / "start-1"
    _write_record(tmp_path, "- seed=1\n- ckpt_path=last\n")  # what Hydra writes at the resume
    assert keep_config_record(tmp_path) == tmp_path / ".hydra" / "start-2"
    assert (tmp_path / ".hydra" / "start-1" / "overrides.yaml").read_text() == "- seed=1\n"
    assert (tmp_path / ".hydra" / "start-1" / "config.yaml").read_text() == "config.yaml of - seed=1\n"
    assert (tmp_path / ".hydra" / "start-2" / "overrides.yaml").read_text() == "- seed=1\n- ckpt_path=last\n"


def test_a_resumed_start_begins_its_own_metrics_and_keeps_the_earlier_ones(tmp_path):
    """The figures of a method or export the resumed start does not repeat must not stay beside
    its own (a lowrank resume of a pruned run used to keep export/* of the pruned model)."""
    _write_record(tmp_path, "- compress=prune\n- export=torchscript\n")
    update_metrics(tmp_path, status="completed", **{"test/acc": 0.9, "compress/method": "prune", "export/model": "x"})
    kept = keep_config_record(tmp_path)
    start_metrics(tmp_path, status="running", task="train")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"status": "running", "task": "train"}
    assert json.loads((kept / "metrics.json").read_text())["export/model"] == "x"


def test_a_start_that_never_began_gets_its_config_record_back(tmp_path):
    _write_record(tmp_path, "- model=mlp\n")
    kept = keep_config_record(tmp_path)
    _write_record(tmp_path, "- model=cnn\n- ckpt_path=last\n")  # Hydra's record of the refused start
    restore_config_record(kept)
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == "- model=mlp\n"
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "config.yaml of - model=mlp\n"
    assert not kept.exists()
