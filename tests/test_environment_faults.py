"""Faults of the machine around a run: full disk, vanished data. Clear errors, no hangs."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from litlab.entry import run_entrypoint
from litlab.errors import LitlabError
from litlab.training import train
from tests.helpers import write_image_folder


# how a full disk reaches litlab: an OSError from a plain write, or torch's zip writer's own error
FULL = {"oserror": OSError(errno.ENOSPC, "No space left on device"),
        "zip_writer": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 205952 vs 205840")}


@pytest.mark.parametrize("how", sorted(FULL))
def test_full_disk_while_checkpointing_fails_clearly_and_keeps_the_previous_checkpoint(cfg_factory, tmp_path,
                                                                                          monkeypatch, how):
    import litlab.callbacks.checkpoints as checkpoints

    real_save = torch.save
    calls = {"n": 0}

    def save_until_full(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # best.ckpt and last.ckpt of the first epoch fit; then the disk is full
            raise FULL[how]
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", save_until_full)
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=3"])
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train, cfg)
    assert exit_info.value.code == 2
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and "could not write the checkpoint" in m["error"]
    assert "previous one is kept" in m["error"] and "MiB free there" in m["error"] and "Free space" in m["error"]
    assert "Traceback" not in m["error"] and "inline_container" not in m["error"]
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not list(ckpt_dir.glob(".*.tmp"))


def test_data_folder_vanishing_mid_run_is_a_clear_error(cfg_factory, tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=8)
    cfg = cfg_factory(["data=imagefolder", f"data.root={root}", "data.in_memory=false", "data.num_workers=1",
                       "data.batch_size=8", "model=mlp", "trainer.max_epochs=3",
                       "+callbacks.vanish._target_=tests.helpers.DeleteFolderAfterFirstEpoch",
                       f"+callbacks.vanish.path={root}"])
    with pytest.raises(LitlabError) as err:
        train(cfg)
    from litlab.entry import user_message

    message = user_message(err.value)
    assert "was listed when the run started but is gone now" in message and "\n" not in message
