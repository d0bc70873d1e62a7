"""Every file of every config group composes, and the objects it describes can be built."""

from __future__ import annotations

import re
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig

from litlab.build import build_callbacks, build_data, build_loggers, build_model, build_trainer
from litlab.config_check import choices
from tests.conftest import CONF_DIR

GROUPS = ["model", "data", "trainer", "callbacks", "averaging", "mixing", "logger", "compress", "export", "debug", "experiment"]
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


def test_every_config_file_starts_with_a_comment():
    """Each config file starts with a comment saying what the choice is."""
    for path in Path(CONF_DIR).rglob("*.yaml"):
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), f"{path} has no leading comment"


_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.]*):\s*(\S.*)?$")


def _commented(lines: list[str], i: int, indent: str) -> bool:
    """A comment above the key, or above the run of sibling keys it ends (one comment may speak for
    a few keys, like ``mean`` and ``std``)."""
    for line in reversed(lines[:i]):
        if line.strip().startswith("#"):
            return True
        sibling = _KEY_LINE.match(line)
        if not (sibling and sibling.group(1) == indent and sibling.group(3) is not None):
            return False
    return False


def test_every_user_facing_yaml_key_is_commented():
    """Every key a user would change has a comment on its effect (the test of this name used to
    check only that each file began with a comment). Override sets (experiments, debug presets,
    searches) and Hydra's settings are left out; ``_target_``-like keys and interpolations are
    plumbing."""
    missing = []
    for path in sorted(Path(CONF_DIR).rglob("*.yaml")):
        if path.parent.name in ("hydra", "launcher", "experiment", "debug", "hparams_search"):
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            key = _KEY_LINE.match(line)
            if key is None:
                continue
            indent, name, value = key.groups()
            if name.startswith("_") or name == "defaults" or value is None or "#" in value or value.startswith("${"):
                continue
            if not _commented(lines, i, indent):
                missing.append(f"{path.relative_to(CONF_DIR)}:{i + 1}: {line.strip()}")
    assert missing == []
