"""No weight decay on biases and normalisation weights (model.decay_biases_and_norms=false): the
optimizer's two parameter groups, what a step does with them, the logged rate's tag, and resumes."""

from __future__ import annotations

import csv
import functools
import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch import nn

from litlab.errors import LitlabError
from litlab.tasks.optimizers import build_optimizer
from tests.helpers import train_twins

# (model choice, input shape): the digits images and a synthetic sequence (L, F)
MODELS = [("cnn", (1, 8, 8)), ("mlp", (1, 8, 8)), ("gru", (32, 4)), ("resnet18", (1, 8, 8))]
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _biases_and_norms(net: nn.Module) -> set[str]:
    """Names of the biases (GRU's bias_ih_l0 too) and of the normalisation layers' parameters, found
    by name and module type rather than by the number of dimensions the groups are split by."""
    names = {f"{m}.{p}".lstrip(".") for m, module in net.named_modules() if isinstance(module, NORMS)
             for p, _ in module.named_parameters(recurse=False)}
    return names | {n for n, _ in net.named_parameters() if n.rsplit(".", 1)[-1].startswith("bias")}


def _built(cfg_factory, choice: str, shape: tuple[int, ...], *overrides: str):
    from litlab.build import build_model

    return build_model(cfg_factory([f"model={choice}", *overrides]).model, shape, 10)


@pytest.mark.parametrize("choice,shape", MODELS)
def test_biases_and_norms_get_no_weight_decay(cfg_factory, choice, shape):
    model = _built(cfg_factory, choice, shape)
    optimizer = model.configure_optimizers()["optimizer"]
    names = {id(p): n.removeprefix("net.") for n, p in model.named_parameters()}
    decayed, kept = optimizer.param_groups
    assert (decayed["name"], decayed["weight_decay"]) == ("decay", 1e-4)
    assert (kept["name"], kept["weight_decay"]) == ("no_decay", 0.0)
    kept_names = {names[id(p)] for p in kept["params"]}
    assert kept_names == _biases_and_norms(model.net) and kept_names
    # every parameter once: the conv, linear and recurrent weight matrices decay
    assert len(decayed["params"]) + len(kept["params"]) == len(names)
    assert all(p.dim() >= 2 for p in decayed["params"]) and decayed["params"]
    # true: every parameter decays, in one group, as litlab trained before the key
    (group,) = _built(cfg_factory, choice, shape, "model.decay_biases_and_norms=true").configure_optimizers()[
        "optimizer"].param_groups
    assert group["weight_decay"] == 1e-4 and len(group["params"]) == len(names)


@pytest.mark.parametrize("fused", ["auto", False])
def test_a_step_decays_weight_matrices_only(fused):
    """With zero gradients AdamW's step is its decay alone: a weight shrinks by lr * weight_decay,
    a bias and a LayerNorm's scale and shift stay (with decay on every parameter they shrink too)."""
    make = functools.partial(torch.optim.AdamW, lr=0.1, weight_decay=0.5)
    for decay_all, factor in ((False, 1.0), (True, 1 - 0.1 * 0.5)):
        net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
        nn.init.constant_(net[0].bias, 2.0)
        nn.init.constant_(net[1].bias, 1.0)
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        optimizer = build_optimizer(make, net.parameters(), fused, decay_biases_and_norms=decay_all)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        after = dict(net.named_parameters())
        torch.testing.assert_close(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
        for name in ("0.bias", "1.weight", "1.bias"):
            torch.testing.assert_close(after[name], before[name] * factor)


def test_fused_adamw_covers_both_groups_and_steps_as_the_plain_one():
    torch.manual_seed(0)
    # the norm after the ReLU: a bias right before it gets a zero gradient, whose float noise Adam amplifies
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 3))
    twin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 3))
    twin.load_state_dict(net.state_dict())
    make = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.1)
    fused = build_optimizer(make, net.parameters(), "auto", decay_biases_and_norms=False)
    plain = build_optimizer(make, twin.parameters(), False, decay_biases_and_norms=False)
    assert fused.defaults["fused"] and [g["fused"] for g in fused.param_groups] == [True, True]
    assert [g["weight_decay"] for g in fused.param_groups] == [0.1, 0.0] and not plain.defaults["fused"]
    train_twins(((net, fused), (twin, plain)), steps=20)
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,sharded", [
    (functools.partial(torch.optim.AdamW, weight_decay=0.0), False),  # nothing to leave out
    (functools.partial(torch.optim.SGD, lr=0.1), False),  # SGD's weight decay defaults to 0
    (functools.partial(torch.optim.Rprop), False),  # no weight decay at all
    (functools.partial(torch.optim.LBFGS), False),  # refuses several groups
    (functools.partial(torch.optim.AdamW), True),  # FSDP shards are 1-D whatever the parameter's shape
])
def test_one_group_where_two_mean_nothing_or_cannot_be(make, sharded):
    net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    optimizer = build_optimizer(make, net.parameters(), "auto", sharded=sharded, decay_biases_and_norms=False)
    (group,) = optimizer.param_groups
    assert len(group["params"]) == 4 and "name" not in group


def test_groups_of_one_kind_are_one_unnamed_group():
    make = functools.partial(build_optimizer, functools.partial(torch.optim.AdamW, weight_decay=0.1),
                             decay_biases_and_norms=False)
    (group,) = make(nn.Linear(4, 3, bias=False).parameters()).param_groups
    assert group["weight_decay"] == 0.1 and "name" not in group
    (group,) = make(nn.LayerNorm(3).parameters()).param_groups
    assert group["weight_decay"] == 0.0 and "name" not in group


def test_a_bad_setting_names_the_key(cfg_factory):
    with pytest.raises(LitlabError, match=r"model\.decay_biases_and_norms must be true or false, got 'maybe'"):
        _built(cfg_factory, "mlp", (1, 8, 8), "model.decay_biases_and_norms=maybe")


def test_the_learning_rate_is_logged_once_as_lr_adamw(cfg_factory, tmp_path):
    """Lightning tags each of several groups (lr-AdamW/decay, lr-AdamW/no_decay): two identical
    curves under tags that litlab's logs, docs and tests do not know."""
    from litlab.training import train

    train(cfg_factory(["model=mlp", "trainer.max_epochs=1", "test=false"]))
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert [g["name"] for g in saved["optimizer_states"][0]["param_groups"]] == ["decay", "no_decay"]
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [c for c in rows[0] if c.startswith("lr-")] == ["lr-AdamW"]
    assert [float(r["lr-AdamW"]) for r in rows if r["lr-AdamW"]] == [3e-3]


def test_groups_that_differ_in_a_logged_value_keep_a_tag_each():
    from litlab.callbacks.lr_monitor import LearningRateMonitor

    groups = [{"params": [nn.Parameter(torch.zeros(2, 2))], "name": "decay"},
              {"params": [nn.Parameter(torch.zeros(2))], "weight_decay": 0.0, "name": "no_decay"}]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.1)

    def names(**kwargs) -> list[list[str]]:
        return LearningRateMonitor(**kwargs)._find_names_from_optimizers([optimizer], [], defaultdict(int))[0]

    assert names() == names(log_momentum=True) == [["lr-AdamW"]]
    assert names(log_weight_decay=True) == [["lr-AdamW/decay", "lr-AdamW/no_decay"]]
    optimizer.param_groups[1]["lr"] = 1e-4
    assert names() == [["lr-AdamW/decay", "lr-AdamW/no_decay"]]


class _Data:
    """What a resume reads of the data module: its record, and the normalization it adopts."""

    def describe(self) -> dict:
        return {}

    def adopt_trained(self, record: dict, source: str) -> None:
        pass


# the saved optimizer state's groups: litlab's two, and one (before the key, FSDP, no weight decay)
SPLIT, ONE = ["decay", "no_decay"], [None]
# model.decay_biases_and_norms dropped from a checkpoint's record, as litlab wrote it before the key
BEFORE_THE_KEY = object()


def _checkpoint(cfg, path, groups: list, decay=None) -> str:
    """A checkpoint file of the run ``cfg`` composes (its MLP on 1x8x8 inputs, 10 classes) whose
    saved optimizer state has the parameter groups named ``groups`` (None: unnamed), its record
    holding ``decay`` as model.decay_biases_and_norms (None: ``cfg``'s, ``BEFORE_THE_KEY``: none)."""
    from litlab.build import build_model
    from litlab.training import run_record

    record = run_record(cfg, _Data())
    if decay is BEFORE_THE_KEY:
        del record["config"]["model"]["decay_biases_and_norms"]
    elif decay is not None:
        record["config"]["model"]["decay_biases_and_norms"] = decay
    state = {"state": {}, "param_groups": [{"params": [], **({"name": n} if n else {})} for n in groups]}
    torch.save({"litlab": record, "state_dict": build_model(cfg.model, (1, 8, 8), 10).state_dict(), "epoch": 0,
                "global_step": 3, "optimizer_states": [state]}, path)
    return str(path)


def _resume(cfg_factory, ckpt: str, *overrides: str, stage: list | None = None):
    """A resume from ``ckpt`` with ``overrides``, checked as ``litlab.training.train`` checks it: on
    the config before the data is prepared (``stage`` gets "before the data"), then on the built
    model ("on the model"). Returns the config and the model, as the resume would train them."""
    from litlab.build import build_model
    from litlab.resume import open_resume, resolve_ckpt_path

    stage = [] if stage is None else stage
    cfg = cfg_factory(["model=mlp", f"ckpt_path={ckpt}", *overrides], name="resumed")
    stage.append("before the data")
    resume = open_resume(cfg, Path(cfg.paths.output_dir))
    stage.append("on the model")
    model = build_model(cfg.model, (1, 8, 8), 10)
    resolve_ckpt_path(cfg, resume, _Data(), model)
    return cfg, model


def _groups_built(model) -> list:
    return [g.get("name") for g in model.configure_optimizers()["optimizer"].param_groups]


def test_a_resume_keeps_the_checkpoints_grouping_unless_the_command_sets_another(cfg_factory, tmp_path, caplog):
    """Every default run from before the key (one group, every parameter decayed) was refused on
    resume, also with the resume command its own record gives, saying the setting "would be
    recorded but never applied" and "true in the checkpoint" (which has no such key)."""
    cfg = cfg_factory(["model=mlp"], name="trained")
    old = _checkpoint(cfg, tmp_path / "old.ckpt", ONE, decay=BEFORE_THE_KEY)
    with caplog.at_level(logging.INFO, logger="litlab.resume"):
        resumed, model = _resume(cfg_factory, old)
    assert model.decay_biases_and_norms is True and resumed.model.decay_biases_and_norms is True  # the record's
    assert _groups_built(model) == ONE
    (line,) = [r.getMessage() for r in caplog.records if "decay_biases_and_norms" in r.getMessage()]
    assert line == (f"resuming with model.decay_biases_and_norms=true, as ckpt_path={old} was trained: it is from "
                    f"before the key, when every parameter decayed")
    # another grouping set on the command line: refused on the config, before the data is prepared
    stage = []
    with pytest.raises(LitlabError) as refused:
        _resume(cfg_factory, old, "model.decay_biases_and_norms=false", stage=stage)
    assert stage == ["before the data"]
    assert str(refused.value) == (
        f"ckpt_path={old}: the saved optimizer state has 1 parameter group (every parameter with the same weight "
        f"decay), and this command's model.decay_biases_and_norms=false builds 2 parameter groups (decay, no_decay: "
        f"biases and norms without weight decay) here. A resume restores the optimizer state group by group, and "
        f"Lightning cannot load it into other groups. Leave model.decay_biases_and_norms out of the command: the "
        f"resume then keeps the checkpoint's grouping. To train with this setting, start a new run in a new folder.")
    _, model = _resume(cfg_factory, old, "model.decay_biases_and_norms=true")  # the checkpoint's own
    assert _groups_built(model) == ONE
    # a run of today's default: two groups, kept, and refused as one
    split = _checkpoint(cfg, tmp_path / "split.ckpt", SPLIT)
    _, model = _resume(cfg_factory, split)
    assert model.decay_biases_and_norms is False and _groups_built(model) == SPLIT
    stage = []
    with pytest.raises(LitlabError, match=r"the saved optimizer state has 2 parameter groups \(decay, no_decay: biases "
                                          r"and norms without weight decay\), and this command's model\.decay_biases_"
                                          r"and_norms=true builds 1 parameter group \(every parameter decays\) here"):
        _resume(cfg_factory, split, "model.decay_biases_and_norms=true", stage=stage)
    assert stage == ["before the data"]


@pytest.mark.parametrize("optimizer", [
    ["model.optimizer.weight_decay=0"],  # nothing to leave out
    ["model.optimizer._target_=torch.optim.SGD", "~model.optimizer.weight_decay"],  # SGD's default: 0
    ["model.optimizer._target_=torch.optim.Rprop", "~model.optimizer.weight_decay"],  # none at all
])
def test_one_group_either_way_resumes_with_the_commands_setting(cfg_factory, tmp_path, optimizer):
    """Refused as a change although the optimizer had one group with either setting: a checkpoint
    from before the key resumed with false, and one trained with false resumed with true."""
    for trained, command in ((BEFORE_THE_KEY, "false"), (False, "true")):
        cfg = cfg_factory(["model=mlp", *optimizer, f"model.decay_biases_and_norms={command}"], name="trained")
        ckpt = _checkpoint(cfg, tmp_path / "one.ckpt", ONE, decay=trained)
        _, model = _resume(cfg_factory, ckpt, *optimizer, f"model.decay_biases_and_norms={command}")
        assert str(model.decay_biases_and_norms).lower() == command and _groups_built(model) == ONE


def test_an_fsdp_runs_one_group_resumes_without_fsdp_as_one_group(cfg_factory, tmp_path, caplog):
    """FSDP keeps every parameter in one group (its shards are 1-D); resumed under DDP with the
    run's own setting, the optimizer had two, and Lightning failed restoring the state."""
    cfg = cfg_factory(["model=mlp", "trainer=fsdp"], name="trained")
    ckpt = _checkpoint(cfg, tmp_path / "fsdp.ckpt", ONE)
    with caplog.at_level(logging.INFO, logger="litlab.resume"):
        _, model = _resume(cfg_factory, ckpt)
    assert model.decay_biases_and_norms is True and _groups_built(model) == ONE
    assert f"resuming with model.decay_biases_and_norms=true, as ckpt_path={ckpt} was trained: its saved optimizer " \
           f"state has one parameter group (every parameter decays, as under FSDP), which false would split in two " \
           f"here" in caplog.text
    stage = []
    with pytest.raises(LitlabError, match=r"the saved optimizer state has 1 parameter group .* and this command's "
                                          r"model\.decay_biases_and_norms=false builds 2 parameter groups"):
        _resume(cfg_factory, ckpt, "model.decay_biases_and_norms=false", stage=stage)
    assert stage == ["before the data", "on the model"]  # the net's parameters tell it
    # the other way: two groups saved, and FSDP's one group for any setting
    split = _checkpoint(cfg_factory(["model=mlp"], name="trained"), tmp_path / "split.ckpt", SPLIT)
    stage = []
    with pytest.raises(LitlabError, match=r"model\.decay_biases_and_norms=false \(the checkpoint's\) builds 1 "
                                          r"parameter group \(FSDP's local shards are all 1-D, so every parameter "
                                          r"decays\) here\. .* Resume with the run's own trainer\.strategy"):
        _resume(cfg_factory, split, "trainer=fsdp", stage=stage)
    assert stage == ["before the data"]


def test_a_run_from_before_the_key_trains_on_in_its_folder(cfg_factory, tmp_path, monkeypatch):
    """The whole resume of a run that litlab trained before the key, made here by a run with every
    parameter decayed (one group) whose record drops the key: it trains on in one group, and its
    record holds the setting it trained with. Another grouping set on the command line is refused
    before the data is prepared, leaving the run's record as it was."""
    from litlab import training
    from tests.helpers import write_npz

    run = ["model=mlp", "data=npz", f"data.path={write_npz(tmp_path / 'a.npz')}", "logger=none", "test=false"]
    training.train(cfg_factory([*run, "trainer.max_epochs=1", "model.decay_biases_and_norms=true"], name="r"))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["litlab"]["config"]["model"]["decay_biases_and_norms"]
    torch.save(ckpt, last)
    record = (tmp_path / "r" / "metrics.json").read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(training, "build_data", lambda cfg: pytest.fail("the data was prepared"))
        with pytest.raises(LitlabError, match=r"the saved optimizer state has 1 parameter group \(every parameter "
                                              r"with the same weight decay\), and this command's model\.decay_biases_"
                                              r"and_norms=false builds 2 parameter groups"):
            training.train(cfg_factory([*run, "trainer.max_epochs=2", "ckpt_path=last",
                                        "model.decay_biases_and_norms=false"], name="r"))
    assert (tmp_path / "r" / "metrics.json").read_bytes() == record
    training.train(cfg_factory([*run, "trainer.max_epochs=2", "ckpt_path=last"], name="r"))
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * ckpt["global_step"]
    assert resumed["litlab"]["config"]["model"]["decay_biases_and_norms"] is True
    (group,) = resumed["optimizer_states"][0]["param_groups"]
    assert group["weight_decay"] == 1e-4 and "name" not in group
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs"] == 2
