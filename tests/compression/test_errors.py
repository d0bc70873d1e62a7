"""Methods that cannot apply, and bad settings, fail before training with one paragraph naming the key."""

from __future__ import annotations

import re
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


NPZ_RUN = ["model=mlp", "trainer.max_epochs=2", "callbacks.progress_bar=null"]
QUICK = ["compress.measure.warmup=1", "compress.measure.repeats=3"]


def test_a_teacher_of_other_classes_is_refused(cfg_factory, tmp_path):
    """Same shapes and class count, other data: it distilled without a word (student 0.11 vs 0.45 alone)."""
    from tests.helpers import write_npz

    teacher_cfg = cfg_factory(["data=synthetic", "data.shape=[1,6,6]", "data.num_classes=3", "data.num_train=128",
                               "data.num_val=32", "data.num_test=32", "model=mlp", "trainer.max_epochs=1"],
                              name="teacher")
    train(teacher_cfg)
    best = Path(teacher_cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    arrays = write_npz(tmp_path / "a.npz", "image", n=64)
    cfg = cfg_factory(["data=npz", f"data.path={arrays}", *NPZ_RUN, "compress=distill", *QUICK,
                       f"compress.teacher_ckpt={best}"], name="student")
    with pytest.raises(LitlabError, match=r"compress\.teacher_ckpt=.* was trained on the classes class_0, class_1, "
                                          r"class_2 and this data has 0, 1, 2"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_a_saved_teacher_sees_inputs_normalized_as_in_its_own_training(cfg_factory, tmp_path):
    """The teacher got this run's normalization: trained with another data.mean/std, it scored
    0.11 as the "before" model (0.98 in its own eval) and taught the student that."""
    import json

    from tests.helpers import write_npz

    arrays = write_npz(tmp_path / "a.npz", "image", n=400)
    teacher_cfg = cfg_factory(["data=npz", f"data.path={arrays}", *NPZ_RUN, "data.mean=[-2.0]", "data.std=[0.5]",
                               "trainer.max_epochs=10"],
                              name="teacher")
    teacher_metrics = train(teacher_cfg) and json.loads(
        (Path(teacher_cfg.paths.output_dir) / "metrics.json").read_text())
    best = Path(teacher_cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    cfg = cfg_factory(["data=npz", f"data.path={arrays}", *NPZ_RUN, "compress=distill", *QUICK,
                       f"compress.teacher_ckpt={best}", "compress.finetune.epochs=1", "compress.baseline=false"],
                      name="student")
    train(cfg)
    before = json.loads((Path(cfg.paths.output_dir) / "compression.json").read_text())["before"]
    assert teacher_metrics["test/acc"] > 0.6  # chance: 0.33
    assert before["test_acc"] == pytest.approx(teacher_metrics["test/acc"], abs=1.01 / 100)  # 100 test samples
    # compressed/dense.pt is the teacher as trained: its own normalization, which eval reads
    from litlab.compression.artifacts import read

    dense = read(torch.load(Path(cfg.paths.output_dir) / "compressed" / "dense.pt", weights_only=True))
    assert dense["litlab"]["data"]["preprocess"]["mean"] == [-2.0]
    assert dense["litlab"]["data"]["preprocess"]["std"] == [0.5]


@pytest.mark.slow
def test_cli_exits_2_with_one_paragraph(tmp_path):
    proc = run_cli("litlab.train", "model=resnet18", "compress=prune_structured", "data=synthetic",
                   "data.shape=[1,8,8]", f"hydra.run.dir={tmp_path}/run", "trainer.max_epochs=1")
    assert proc.returncode == 2
    assert "compress=prune_structured" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "train.log").is_file()  # its folder, not one under the repository's outputs/


def test_a_compressed_model_as_teacher_is_named_as_such(tiny_cfg):
    """A compressed model file used to fail as 'weights that do not fit its own model config'."""
    pruned_cfg = tiny_cfg(["model=mlp", "compress=prune", "compress.finetune.epochs=1"], name="pruned")
    train(pruned_cfg)
    (artifact,) = [p for p in (Path(pruned_cfg.paths.output_dir) / "compressed").glob("*.pt") if p.name != "dense.pt"]
    cfg = tiny_cfg(["model=mlp", "compress=distill", f"compress.teacher_ckpt={artifact}"], name="student")
    with pytest.raises(LitlabError, match=r"compress\.teacher_ckpt=.* is a compressed model \(prune\).*best\.ckpt"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # refused before training


@pytest.mark.parametrize("net,conv,skip_last,hint", [
    # an RNN has no convolution: only its head could be factorized
    ("rnn", True, True, r"\. Try compress\.skip_last=false \(factorizes the classifier head\)\.$"),
    ("rnn", False, True, r"\. Try compress\.skip_last=false \(factorizes the classifier head\)\.$"),
    ("convs", False, False, r"\. Try compress\.conv=true\.$"),
    ("convs", False, True, r"\. Try compress\.conv=true with compress\.skip_last=false\.$"),
    ("none", True, False, r"has no Linear or ungrouped Conv1d/Conv2d layer at all .* compress=prune"),
])
def test_lowrank_without_layers_suggests_only_settings_that_would_find_one(net, conv, skip_last, hint):
    """compress.conv=true on an RNN was answered "Try compress.conv=true or compress.skip_last=false"."""
    from litlab.compression.lowrank import LowRank
    from litlab.models.rnn import RNN

    nets = {"rnn": lambda: RNN((8, 2), 3), "convs": lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)),
            "none": lambda: torch.nn.Sequential(torch.nn.ReLU())}
    with pytest.raises(LitlabError, match=r"compress=lowrank found no layer to factorize") as err:
        LowRank(conv=conv, skip_last=skip_last).check(nets[net](), None)
    message = str(err.value)
    assert re.search(hint, message), message
    if conv:
        assert "compress.conv=true" not in message.split("). ", 1)[1]
