"""What every entrypoint does around its work: the status it records and how it exits."""

from __future__ import annotations

import json

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
