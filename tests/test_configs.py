"""Every file of every config group composes, and the objects it describes can be built."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig

from litlab.build import build_callbacks, build_data, build_loggers, build_model, build_trainer
from litlab.config_check import choices
from tests.conftest import CONF_DIR

GROUPS = ["model", "data", "trainer", "callbacks", "logger", "compress", "export", "debug", "experiment"]
# choices that need a CUDA GPU: built where there is one (they carry the gpu mark), skipped elsewhere
NEEDS_GPU = {("trainer", "gpu"), ("trainer", "ddp"), ("trainer", "fsdp")}
NEEDS_INPUT = {"imagefolder": "data.root", "npz": "data.path"}


def all_choices():
    for group in GROUPS:
        for name in choices(group):
            marks = [pytest.mark.gpu] if (group, name) in NEEDS_GPU else []
            yield pytest.param(group, name, id=f"{group}={name}", marks=marks)


@pytest.mark.parametrize("group,name", list(all_choices()))
def test_every_config_file_composes_and_builds(group, name, cfg_factory, tmp_path):
    if (group, name) in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    overrides = [f"{group}={name}"]
    if group == "data" and name in NEEDS_INPUT:
        from tests.helpers import write_image_folder, write_npz

        made = write_image_folder(tmp_path / "imgs") if name == "imagefolder" else write_npz(tmp_path / "a.npz")
        overrides.append(f"{NEEDS_INPUT[name]}={made}")
    cfg = cfg_factory(overrides)
    assert isinstance(cfg, DictConfig)
    if group in ("compress", "export") and "_target_" not in cfg[group]:
        return
    if group in ("compress", "export"):
        hydra.utils.instantiate(cfg[group])
        return
    dm = build_data(cfg)
    model = build_model(cfg.model, dm.input_shape, dm.num_classes)
    build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
    assert model.num_classes == dm.num_classes


def test_model_base_is_not_a_choice():
    assert "_classifier" not in choices("model")
    assert {"mlp", "cnn", "lstm", "gru", "resnet18", "torchvision"} <= set(choices("model"))
    assert {"digits", "synthetic", "imagefolder", "npz"} <= set(choices("data"))


def test_every_user_facing_yaml_key_is_commented():
    """Each config file starts with a comment saying what the choice is."""
    for path in Path(CONF_DIR).rglob("*.yaml"):
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), f"{path} has no leading comment"
