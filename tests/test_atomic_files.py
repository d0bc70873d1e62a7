"""Files replaced whole: contents, the old file kept on failure, and a new file's usual mode."""

from __future__ import annotations

import os
import stat

import pytest

from litlab.atomic_files import atomic_write


def test_the_new_file_has_the_mode_of_any_new_file(tmp_path):
    """mkstemp's private 0600 used to reach metrics.json and the checkpoints, while the run's
    other files were readable by the group and others."""
    atomic_write(tmp_path / "metrics.json", lambda f: f.write(b"{}"))
    (tmp_path / "plain.json").write_bytes(b"{}")
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]
