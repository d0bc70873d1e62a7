"""A user's own net in a module of their own, chosen as model=<name> from a config folder of their
own (hydra.searchpath): the choice check accepts it, and the run trains, tests and evaluates it."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from litlab.config_check import check_choices, check_overrides
from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.training import train

NET = """
import math
from torch import nn

class Tiny(nn.Module):
    def __init__(self, input_shape, num_classes, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                                  nn.Linear(width, num_classes))

    def forward(self, x):
        return self.body(x)
"""
CONFIG = """
defaults:
  - _classifier
  - _self_
net:
  _target_: my_nets_for_litlab_test.Tiny
  _partial_: true
  width: 24
"""


@pytest.fixture
def own(tmp_path, monkeypatch):
    (tmp_path / "my_nets_for_litlab_test.py").write_text(textwrap.dedent(NET))
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text(textwrap.dedent(CONFIG))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_a_choice_from_a_searchpath_folder_is_accepted_and_a_typo_lists_both_folders(own, tmp_path):
    check_choices(["model=tiny", own])  # was refused: only the package's conf/model/ was read
    with pytest.raises(LitlabError, match=rf"model=tny is not a choice: conf/model/ and {tmp_path}/conf/model/ have "
                                          r"cnn, .*tiny, torchvision"):
        check_choices(["model=tny", own])
    with pytest.raises(LitlabError, match=r"model=tiny is not a choice: conf/model/ has"):
        check_choices(["model=tiny"])
    assert check_overrides(["model=tiny", own, f"hydra.run.dir={tmp_path / 'r'}"]).model.net.width == 24
    from litlab.cli_help import help_text

    assert "  model           [tiny] cnn, gru, lstm, mlp, resnet18, tiny, torchvision" in help_text(
        "train", ["--help", "model=tiny", own]).splitlines()


def test_an_own_net_trains_and_evaluates(own, cfg_factory, tmp_path):
    train(cfg_factory(["model=tiny", own], name="run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5
    ckpt = torch.load(metrics["best_ckpt"], weights_only=True)
    assert ckpt["litlab"]["config"]["model"]["net"]["_target_"] == "my_nets_for_litlab_test.Tiny"
    ev = cfg_factory([f"ckpt_path={metrics['best_ckpt']}"], name="ev", config_name="eval", fast=False)
    with torch.no_grad():
        assert evaluate(ev)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
