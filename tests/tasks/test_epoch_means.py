"""The training epoch's means: visible to callbacks from the epoch's last batch, written to the
loggers at its end, at the step and with the epoch number Lightning uses for epoch values."""

from __future__ import annotations

import json
from functools import partial

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.tasks.classification import Classifier
from litlab.training import train

BATCHES = 5  # 40 samples in batches of 8


class _Recorder(Logger):
    """Every ``log_metrics`` call, as ``(step, metrics)``."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, dict]] = []

    name = "recorder"
    version = "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((step, dict(metrics)))


class _Watch(L.Callback):
    """Each training batch's loss, and ``train/loss`` as callbacks see it when validation ends."""

    def __init__(self):
        self.batch_losses: list[float] = []
        self.seen_at_validation_end: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batch_losses.append(float(outputs["loss"]))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seen_at_validation_end.append(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.parametrize("validate", [True, False], ids=["with-validation", "no-validation"])
def test_epoch_means_reach_callbacks_and_loggers(tmp_path, validate):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    torch.manual_seed(0)
    model = Classifier(nn.Linear(4, 3), partial(torch.optim.SGD, lr=0.5), num_classes=3)
    watch, recorder = _Watch(), _Recorder()
    # checkpointing and early stopping both monitor a training mean: with validation they decide
    # when validation ends, inside the epoch; without, at the epoch's end
    best = ModelCheckpoint(dirpath=tmp_path, monitor="train/loss", mode="min", save_top_k=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=recorder, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=2 if validate else 0,
                        callbacks=[watch, best, EarlyStopping(monitor="train/acc", mode="max", patience=5)])
    trainer.fit(model, loader, loader)

    means = [sum(watch.batch_losses[e * BATCHES:(e + 1) * BATCHES]) / BATCHES for e in range(3)]
    written = [(step, m) for step, m in recorder.calls if "train/loss" in m]
    assert [step for step, _ in written] == [BATCHES * (e + 1) - 1 for e in range(3)]
    assert [m["epoch"] for _, m in written] == [0, 1, 2]
    assert [m["train/loss"] for _, m in written] == pytest.approx(means, rel=1e-6)
    assert all(0 <= m["train/acc"] <= 1 for _, m in written)
    if validate:  # the epoch's own mean, not the previous epoch's
        assert watch.seen_at_validation_end == pytest.approx(means, rel=1e-6)
    assert float(best.best_model_score) == pytest.approx(min(means), rel=1e-6)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(means[-1], rel=1e-6)
    assert float(trainer.logged_metrics["train/acc"]) == written[-1][1]["train/acc"]


def test_metrics_json_names_the_best_score_after_what_it_monitors(cfg_factory, tmp_path):
    train(cfg_factory(["model=mlp", "callbacks.model_checkpoint.monitor=train/loss",
                       "callbacks.model_checkpoint.mode=min", "test=false"]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)
    best = next(v for k, v in ckpt["callbacks"].items() if k.startswith("_Checkpoints"))["best_model_score"]
    assert metrics["train/loss"] == pytest.approx(float(best))
    # val/acc is the last epoch's, not the training loss (which it used to report)
    assert 0.5 < metrics["val/acc"] <= 1 and metrics["val/acc"] != metrics["train/loss"]
