"""A resumed run keeps the config record of every earlier start of its folder."""

from __future__ import annotations

from litlab.reporting.run_files import keep_config_record


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
