"""What every entrypoint does around its work: the status it records and how it exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException

from litlab.entry import run_entrypoint


def test_a_setting_lightning_cannot_run_is_a_one_paragraph_user_error(cfg_factory, tmp_path, capsys):
    def work(cfg):
        raise MisconfigurationException("`val_check_interval` must be\n  at most the number of batches.")

    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(work, cfg_factory())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Error: `val_check_interval` must be at most the number of batches." in err and "Traceback" not in err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"].startswith("`val_check_interval` must be at most")


def test_a_path_with_a_name_too_long_is_a_one_paragraph_user_error_naming_its_key(cfg_factory, tmp_path, capsys):
    """The OS's "[Errno 36] File name too long" about a path the user gave (eval's ckpt_path, say)
    ended in a traceback and exit status 1."""
    ckpt = tmp_path / ("x" * 300) / "best.ckpt"

    def work(cfg):
        Path(cfg.ckpt_path).is_dir()  # as checkpoint_files.load_checkpoint does first

    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(work, cfg_factory([f"ckpt_path={ckpt}"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"Error: ckpt_path={ckpt}: a name in this path is too long for the file system (the limit per file or " \
           f"folder name is usually 255 bytes" in err and "Traceback" not in err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"].startswith(f"ckpt_path={ckpt}: a name in this path is too long")
