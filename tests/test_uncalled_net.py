"""Callbacks that catch a net's logits with a forward hook (``NetLogits``: temperature scaling's and
``EvalReport``) and run the net themselves when the task did not: each batch gets its own logits,
never the previous batch's that the callback's own call left behind."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.callbacks import eval_report
from litlab.callbacks.eval_report import EvalReport
from litlab.callbacks.split_logits import SplitLogits
from litlab.temperature_scaling import UnscaledFigures, scale_net

BATCHES, BATCH, FEATURES, CLASSES = 4, 5, 4, 3


class NetNotCalled(L.LightningModule):
    """A task whose validation and test steps return nothing and never call ``self.net``."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(FEATURES, CLASSES)

    def forward(self, x):
        return self.net(x)

    def validation_step(self, batch, batch_idx):
        return None

    def test_step(self, batch, batch_idx):
        return None


def batches() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, FEATURES, generator=g)  # (20, 4): every batch its own inputs
    y = torch.randint(0, CLASSES, (BATCHES * BATCH,), generator=g)  # (20,)
    return x, y


def run(stage: str, model: L.LightningModule, callback: L.Callback) -> None:
    x, y = batches()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)  # in order: batch i is x[5i:5i+5]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    getattr(trainer, stage)(model, dataloaders=loader, verbose=False)


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_split_logits_are_each_batchs_own(stage):
    torch.manual_seed(0)
    model, kept = NetNotCalled(), SplitLogits(stage)
    run(stage, model, kept)
    x, y = batches()
    logits, labels = kept.result()
    assert logits.shape == (BATCHES * BATCH, CLASSES) and logits.dtype == torch.float64
    with torch.no_grad():
        expected = model.net(x).double()  # (20, 3)
    # float32 logits kept as float64: float32's tolerance (a stale batch is off by ~1)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, y)


def test_unscaled_figures_loss_is_the_cross_entropy_of_every_batch():
    torch.manual_seed(0)
    model = NetNotCalled()
    inner = model.net
    scale_net(model, 2.0)
    figures = UnscaledFigures(bins=15)
    run("test", model, figures)
    x, y = batches()
    with torch.no_grad():
        expected = F.cross_entropy(inner(x), y)  # at T = 1, over all 20 samples
    assert figures.figures["loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_eval_report_collects_each_batchs_own_logits(stage, monkeypatch):
    seen = []
    add = eval_report._Tally.add

    def recording_add(self, logits, y, x):
        seen.append(logits.clone())
        add(self, logits, y, x)

    monkeypatch.setattr(eval_report._Tally, "add", recording_add)
    torch.manual_seed(0)
    model = NetNotCalled()
    run(stage, model, EvalReport(misclassified=0))
    x, _ = batches()
    assert len(seen) == BATCHES
    with torch.no_grad():
        expected = model.net(x)  # (20, 3)
    torch.testing.assert_close(torch.cat(seen), expected)
