"""A resumed run keeps the config record of every earlier start of its folder."""

from __future__ import annotations

import json
import os
import socket

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
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"status": "running", "task": "train",
                                                                   "host": socket.gethostname(), "pid": os.getpid()}
    assert json.loads((kept / "metrics.json").read_text())["export/model"] == "x"


def test_a_start_that_never_began_gets_its_config_record_back(tmp_path):
    _write_record(tmp_path, "- model=mlp\n")
    kept = keep_config_record(tmp_path)
    _write_record(tmp_path, "- model=cnn\n- ckpt_path=last\n")  # Hydra's record of the refused start
    restore_config_record(kept)
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == "- model=mlp\n"
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "config.yaml of - model=mlp\n"
    assert not kept.exists()


def test_a_resume_moves_the_earlier_starts_export_and_compression_to_its_record(tmp_path):
    """A resume without export= left export/model.onnx of the first start's weights beside a new
    best.ckpt; a refused resume puts them back."""
    _write_record(tmp_path, "- export=onnx\n")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "compression.json").write_text("{}")
    kept = keep_config_record(tmp_path)
    assert not (tmp_path / "export").exists() and not (tmp_path / "compression.json").exists()
    assert (kept / "export" / "model.onnx").read_bytes() == b"onnx" and (kept / "compression.json").is_file()
    restore_config_record(kept)
    assert (tmp_path / "export" / "model.onnx").read_bytes() == b"onnx" and (tmp_path / "compression.json").is_file()


def test_a_full_disk_while_keeping_the_record_changes_nothing(tmp_path, monkeypatch):
    """It ended in a traceback and left .hydra/start-2/ with an empty config.yaml for good."""
    import shutil

    import pytest

    from litlab.errors import LitlabError

    _write_record(tmp_path, "- seed=1\n")
    update_metrics(tmp_path, status="completed")
    (tmp_path / "export").mkdir()
    real_copy = shutil.copy2

    def copy2(src, dst, **kwargs):
        if str(src).endswith("metrics.json"):
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy2)
    with pytest.raises(LitlabError, match=r"Could not keep the record of the run's earlier start in .*start-1 "
                                          r"before resuming \(No space left on device\); nothing was changed"):
        keep_config_record(tmp_path)
    assert sorted(p.name for p in (tmp_path / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert (tmp_path / "export").is_dir()
