"""trainer.gradient_clip_val clips the step (the task skips Lightning's clipping only when it is off)."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.tasks.classification import Classifier


def _one_sgd_step(clip: float | None, algorithm: str = "norm") -> float:
    """Size of the weight change after one SGD step with lr 1 (the applied gradient's norm)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 4))
    task = Classifier(net, functools.partial(torch.optim.SGD, lr=1.0), num_classes=4, fused_optimizer=False)
    before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
    data = DataLoader(TensorDataset(torch.randn(16, 8) * 10, torch.randint(0, 4, (16,))), batch_size=16)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=clip,
                        gradient_clip_algorithm=algorithm)
    trainer.fit(task, data)
    after = torch.cat([p.detach().flatten() for p in net.parameters()])
    return float((after - before).norm())


def test_clipping_by_norm_limits_the_step():
    free = _one_sgd_step(None)
    assert free > 0.5  # the unclipped gradient is large
    assert _one_sgd_step(0.5) == pytest.approx(0.5, rel=1e-4)
    assert _one_sgd_step(0) == pytest.approx(free, rel=1e-6)  # 0 means off, as in Lightning


def test_clipping_by_value_limits_every_gradient():
    clipped = _one_sgd_step(1e-3, "value")
    n_params = 8 * 4 + 4
    assert clipped <= 1e-3 * n_params ** 0.5 + 1e-7
