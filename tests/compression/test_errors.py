"""Methods that cannot apply, and bad settings, fail before training with one paragraph naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litlab.errors import LitlabError
from litlab.training import train

from tests.conftest import run_cli


@pytest.mark.parametrize("overrides, key", [
    (["model=resnet18", "compress=prune_structured"], "compress=prune_structured"),
    (["model=lstm", "compress=quantize", "compress.mode=static"], "compress.mode"),
    (["model=mlp", "compress=prune", "compress.amount=1.5"], "compress.amount"),
    (["model=mlp", "compress=prune", "compress.amount=0"], "compress.amount"),
    (["model=mlp", "compress=lowrank", "compress.rank=500"], "compress.rank"),
    (["model=mlp", "compress=distill", "compress.teacher_ckpt=/nonexistent/best.ckpt"], "compress.teacher_ckpt"),
    (["model=mlp", "compress=quantize", "compress.mode=fast"], "compress.mode"),
])
def test_bad_compression_fails_before_training(tiny_cfg, overrides, key):
    cfg = tiny_cfg(overrides)
    with pytest.raises(LitlabError, match=key.replace(".", r"\.")) as info:
        train(cfg)
    assert "\n" not in str(info.value)
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "compressed").exists()


def test_teacher_from_other_data_is_refused(tiny_cfg):
    teacher_cfg = tiny_cfg(["model=mlp", "data.num_classes=3"], name="teacher")
    train(teacher_cfg)
    best = Path(teacher_cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    cfg = tiny_cfg(["model=mlp", "compress=distill", f"compress.teacher_ckpt={best}"], name="student")
    with pytest.raises(LitlabError, match=r"compress\.teacher_ckpt.*3 classes"):
        train(cfg)


def test_teacher_ckpt_is_the_reference(tiny_cfg):
    import json

    teacher_cfg = tiny_cfg(["model=mlp", "model.net.hidden_sizes=[64]"], name="teacher")
    train(teacher_cfg)
    best = Path(teacher_cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    cfg = tiny_cfg(["model=mlp", "compress=distill", f"compress.teacher_ckpt={best}", "compress.finetune.epochs=1",
                    "compress.baseline=false"], name="student")
    train(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "compression.json").read_text())
    teacher_params = sum(v.numel() for k, v in torch.load(best, weights_only=True)["state_dict"].items()
                         if k.startswith("net."))
    assert report["before"]["params"] == teacher_params


@pytest.mark.slow
def test_cli_exits_2_with_one_paragraph(tmp_path):
    proc = run_cli("litlab.train", "model=resnet18", "compress=prune_structured", "data=synthetic",
                   "data.shape=[1,8,8]", f"paths.output_dir={tmp_path}/run", "trainer.max_epochs=1")
    assert proc.returncode == 2
    assert "compress=prune_structured" in proc.stderr and "Traceback" not in proc.stderr


def test_a_compressed_model_as_teacher_is_named_as_such(tiny_cfg):
    """A compressed model file used to fail as 'weights that do not fit its own model config'."""
    pruned_cfg = tiny_cfg(["model=mlp", "compress=prune", "compress.finetune.epochs=1"], name="pruned")
    train(pruned_cfg)
    (artifact,) = [p for p in (Path(pruned_cfg.paths.output_dir) / "compressed").glob("*.pt") if p.name != "dense.pt"]
    cfg = tiny_cfg(["model=mlp", "compress=distill", f"compress.teacher_ckpt={artifact}"], name="student")
    with pytest.raises(LitlabError, match=r"compress\.teacher_ckpt=.* is a compressed model \(prune\).*best\.ckpt"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # refused before training
