"""Gradient norm, weight histograms, learning rate and throughput in TensorBoard."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from litlab.callbacks.grad_norm import GradNorm
from litlab.callbacks.weight_histograms import WeightHistograms
from litlab.errors import LitlabError


def test_scalars_of_training(tensorboard_run):
    _, _, events = tensorboard_run
    scalars = set(events.Tags()["scalars"])
    assert {"lr-AdamW", "perf/train_samples_per_s", "perf/epoch_time_s", "grad/norm"} <= scalars
    norms = [e.value for e in events.Scalars("grad/norm")]
    assert norms and all(v > 0 for v in norms)


def test_weight_histograms_for_every_parameter(tensorboard_run):
    _, _, events = tensorboard_run
    histograms = set(events.Tags()["histograms"])
    assert "weights/net.head.3.weight" in histograms
    assert all(t.startswith("weights/net.") for t in histograms)
    assert len(events.Histograms("weights/net.head.3.weight")) == 2  # one per epoch


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
@pytest.mark.parametrize("mixed", [False, True])
def test_grad_norm_value(norm_type, mixed):
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    if mixed:  # two dtypes: torch's grouping path
        net[1].double()
    net[1](net[0](torch.randn(5, 4)).to(net[1].weight.dtype)).square().sum().backward()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    grads = [p.grad for p in net.parameters()]
    flat = torch.cat([g.double().flatten() for g in grads])
    norm = GradNorm(norm_type).norm(optimizer)
    assert float(norm) == pytest.approx(float(flat.norm(norm_type)), rel=1e-5)
    # the same number torch's clipping helper computes
    assert float(norm) == float(torch.nn.utils.get_total_norm(grads, norm_type=norm_type))


def test_bad_settings_name_the_key():
    with pytest.raises(LitlabError, match="callbacks.grad_norm.norm_type"):
        GradNorm(0)
    with pytest.raises(LitlabError, match="logger.histograms"):
        WeightHistograms(enabled="yes")
