"""SplitLogits, the logits and labels of one stage's pass (eval's temperature fit on validate, an
ensemble member's probabilities on test): it keeps its own stage's batches only, in the loader's
order, afresh each epoch. Its capture with a task that never calls the net: ``tests/test_uncalled_net.py``."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.callbacks.split_logits import SplitLogits

BATCHES, BATCH, FEATURES, CLASSES = 3, 4, 5, 3


class Task(L.LightningModule):
    """Validation and test steps that call ``self.net`` on the batch and return nothing."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(FEATURES, CLASSES)

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, batch_idx):
        self.net(batch[0])

    validation_step = test_step = _step


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCHES * BATCH, FEATURES, generator=g), torch.randint(0, CLASSES, (BATCHES * BATCH,), generator=g)


def run(stage: str, model: L.LightningModule, callback: SplitLogits, seed: int) -> None:
    loader = DataLoader(TensorDataset(*data(seed)), batch_size=BATCH)  # in order: batch i is x[4i:4i+4]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    getattr(trainer, stage)(model, dataloaders=loader, verbose=False)


@pytest.mark.parametrize("stage,other", [("validate", "test"), ("test", "validate")])
def test_keeps_its_own_stages_logits_only_and_afresh_each_epoch(stage, other):
    torch.manual_seed(0)
    model, kept = Task(), SplitLogits(stage)
    run(other, model, kept, seed=1)  # the other stage's pass: nothing kept, no hook left
    logits, labels = kept.result()
    assert logits.shape == (0, 0) and labels.shape == (0,) and len(model.net._forward_hooks) == 0
    run(stage, model, kept, seed=2)
    run(stage, model, kept, seed=3)  # a second epoch replaces the first's
    x, y = data(3)
    logits, labels = kept.result()
    with torch.no_grad():
        expected = model.net(x).double()  # (12, 3), in the loader's order
    torch.testing.assert_close(logits, expected)
    assert logits.dtype == torch.float64 and torch.equal(labels, y)
    assert len(model.net._forward_hooks) == 0


def test_a_stage_other_than_validate_or_test_is_refused():
    with pytest.raises(ValueError, match="'fit'"):
        SplitLogits("fit")
