"""No weight decay on biases and normalisation weights (model.decay_biases_and_norms=false): the
optimizer's two parameter groups, what a step does with them, the logged rate's tag, and resumes."""

from __future__ import annotations

import csv
import functools
from collections import defaultdict

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from litlab.errors import LitlabError
from litlab.tasks.optimizers import build_optimizer

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
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(20):
        for model, opt in ((net, fused), (twin, plain)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
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


def test_a_resume_with_the_switch_changed_is_refused(cfg_factory):
    """Lightning failed restoring the optimizer: 'ValueError: loaded state dict has a different
    number of parameter groups', a traceback after the run's folder was in use."""
    from litlab.resume import check_same_optimization

    cfg = cfg_factory(["model=mlp"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    ckpt = {"litlab": {"config": {"model": model, "trainer": {"max_epochs": 2}}}}
    check_same_optimization(cfg, ckpt, "last.ckpt")  # the same settings resume
    flipped = cfg_factory(["model=mlp", "model.decay_biases_and_norms=true"], name="flipped")
    with pytest.raises(LitlabError, match=r"ckpt_path=last\.ckpt resumes the optimizer .*\(model\.decay_biases_and_"
                                          r"norms false in the checkpoint, true here\) would be recorded but never "
                                          r"applied\. Resume with the run's own .*model\.decay_biases_and_norms"):
        check_same_optimization(flipped, ckpt, "last.ckpt")
    # a checkpoint from before the key decayed every parameter, in one group
    old = {"litlab": {"config": {"model": {k: v for k, v in model.items() if k != "decay_biases_and_norms"},
                                 "trainer": {"max_epochs": 2}}}}
    with pytest.raises(LitlabError, match=r"model\.decay_biases_and_norms true in the checkpoint, false here.* a "
                                          r"checkpoint from before that last key needs model\.decay_biases_and_norms"
                                          r"=true"):
        check_same_optimization(cfg, old, "last.ckpt")
    check_same_optimization(flipped, old, "last.ckpt")
