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


SHAPES = """
import torch
from torch import nn

class ViewCNN(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 4, 3, padding=1)
        self.head = nn.Linear(4 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(x.view(x.size(0), -1))  # .view of a channels-last tensor fails

class Pair(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(x.flatten(1)), x

class TenOut(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(x.flatten(1))

class NoShape(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
"""


@pytest.mark.parametrize("net,overrides,match", [
    ("ViewCNN", [], None),  # channels_last=auto leaves it in the default memory order
    ("ViewCNN", ["model.channels_last=true"], r"It runs in the default memory order: set model\.channels_last=false"),
    ("Pair", [], r"returned a tuple for one sample of shape \(1, 8, 8\); litlab trains on logits, a tensor of shape "
                 r"\(batch, num_classes\) = \(1, 3\)"),
    ("TenOut", [], r"returned a tensor of shape \(1, 10\) for one sample .* = \(1, 3\)"),
    ("NoShape", [], r"could not build .*NoShape .*A net for litlab takes the keyword arguments input_shape"),
])
def test_an_own_net_that_breaks_the_contract_is_named_before_any_work(cfg_factory, tmp_path, monkeypatch, net,
                                                                        overrides, match):
    """Each failed late (a traceback in the first validation, or exit 0 with a 10-class top-5 for
    3 classes) or with a hint about model.net.* keys the user never set."""
    from litlab.build import build_model
    from litlab.models.speed_switches import runs_channels_last

    (tmp_path / "litlab_test_shapes.py").write_text(textwrap.dedent(SHAPES))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = cfg_factory(["model=cnn", "~model.net", f"+model.net._target_=litlab_test_shapes.{net}",
                       "+model.net._partial_=true", *overrides])
    if match is None:
        model = build_model(cfg.model, (1, 8, 8), 3)
        assert not runs_channels_last(model.net) and model.net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
        return
    with pytest.raises(LitlabError, match=match):
        build_model(cfg.model, (1, 8, 8), 3)


def test_eval_and_predict_say_where_an_own_net_must_be_importable(own, cfg_factory, tmp_path, monkeypatch):
    """Without the user's module on the path, eval said "could not build ... Check the model.net.*
    values" after preparing the data."""
    import sys

    from litlab.prediction.checkpoint_model import load_predictor

    train(cfg_factory(["model=tiny", own, "trainer.max_epochs=1"], name="run"))
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())["best_ckpt"]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.delitem(sys.modules, "my_nets_for_litlab_test")
    message = r"holds a my_nets_for_litlab_test\.Tiny net, which cannot be imported here: .*Run the command from the folder"
    with pytest.raises(LitlabError, match=message):
        evaluate(cfg_factory([f"ckpt_path={best}"], name="ev", config_name="eval", fast=False))
    with pytest.raises(LitlabError, match=message):
        load_predictor(best, torch.device("cpu"))


def test_a_compressed_file_is_checked_for_the_net_it_builds():
    """A distilled file builds its student (compression.net), not the run's own teacher net."""
    from litlab.build import check_stored_net

    student = {"_target_": "litlab.models.mlp.MLP"}
    record = {"config": {"model": {"net": {"_target_": "my_nets_not_here.Teacher"}}}}
    check_stored_net({"litlab": record, "compression": {"net": student}}, "distill.pt")
    with pytest.raises(LitlabError, match=r"holds a my_nets_not_here\.Teacher net"):
        check_stored_net({"litlab": record}, "best.ckpt")
