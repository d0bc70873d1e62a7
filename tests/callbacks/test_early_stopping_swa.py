"""Early stopping under weight averaging: from SWA's first validation of the average on, its best
score and patience start over, as best.ckpt's competition does, once per run (also across a resume)."""

from __future__ import annotations

import csv
import json

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.callbacks.checkpoints import checkpoint_callback
from litlab.callbacks.early_stopping import EarlyStopping
from litlab.callbacks.group import find_callback
from litlab.callbacks.weight_averaging import Averaging, ema, swa
from litlab.training import train

# val/acc of each epoch: the live weights' 0.9 at epoch 0, then SWA from epoch 1 validates averages
# that improve to 0.6 and fall back. Against the live 0.9 no average improves: patience=3 stopped the
# run after epoch 3 (the 4th of 5) with best_score 0.9; among averages, 0.6 is the best and 2 checks
# follow without improvement, and the run trains its 5 epochs.
SCORES = [0.9, 0.5, 0.6, 0.55, 0.58]
# (best_score, wait_count) after each epoch's check, averages compared with averages
CHECKS = [(0.9, 0), (0.5, 0), (0.6, 0), (0.6, 1), (0.6, 2)]


class Scored(L.LightningModule):
    """A linear layer whose validation logs ``scores[epoch]`` as val/acc: which check improves is
    known in advance, whatever the weights."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.net, self.scores = nn.Linear(3, 2), scores

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Checked(EarlyStopping):
    """litlab's EarlyStopping that records ``(best_score, wait_count)`` after each of its checks."""

    def __init__(self, **kwargs):
        super().__init__(monitor="val/acc", **kwargs)
        self.checks: list[tuple[float, int]] = []

    def _run_early_stopping_check(self, trainer) -> None:
        super()._run_early_stopping_check(trainer)
        self.checks.append((self.best_score.item(), self.wait_count))


def _fit(averaging: Averaging, stopper: Checked, scores: list[float], epochs: int, dirpath, ckpt_path=None
         ) -> L.Trainer:
    """``epochs`` epochs of 2 batches of 4, validated once an epoch, with litlab's checkpoint
    callback (best.ckpt by val/acc in the stopper's mode, last.ckpt) writing to ``dirpath``."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[averaging, stopper, checkpoint_callback(str(dirpath), mode=stopper.mode)])
    trainer.fit(Scored(scores), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("at_epoch_end", [True, False], ids=["checked-at-epoch-end", "checked-at-validation-end"])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_under_swa_early_stopping_compares_averages_with_averages(tmp_path, mode, at_epoch_end):
    """The first average (0.5) is the new best whatever the live weights scored before; the run is
    not stopped by the live 0.9, and best.ckpt and early stopping agree on the best average (epoch 2).
    With mode=min the scores are 1 - SCORES: the restart is to +inf there. The restart comes before
    the check of the same validation, whether it runs at the epoch's end (Lightning's choice for one
    validation an epoch) or at the validation's end (several an epoch)."""
    flip = (lambda s: s) if mode == "max" else (lambda s: round(1 - s, 6))
    stopper = Checked(mode=mode, patience=3, check_on_train_epoch_end=at_epoch_end)
    trainer = _fit(swa(start_epoch=1), stopper, [flip(s) for s in SCORES], 5, tmp_path)
    assert [(pytest.approx(flip(best)), wait) for best, wait in CHECKS] == stopper.checks
    assert (trainer.current_epoch, stopper.stopped, trainer.should_stop) == (5, False, False)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 2


def test_under_ema_nothing_starts_over(tmp_path):
    """EMA validates averages from its first step on: its first validation's 0.9 stays the best and
    the run stops after 3 checks without improvement, after epoch 3."""
    stopper = Checked(mode="max", patience=3)
    trainer = _fit(ema(decay=0.9), stopper, SCORES, 5, tmp_path)
    assert stopper.checks == [(pytest.approx(0.9), n) for n in range(4)]
    assert (trainer.current_epoch, stopper.stopped) == (4, True)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_resumed_swa_run_does_not_start_over_again(tmp_path, cut):
    """Cut after epoch ``cut`` (max_epochs) and resumed from last.ckpt with 5: the checkpoint holds
    early stopping's best among averages and its count, and SWA's note that the restart was done, so
    the resumed checks are those of the run trained through. A cut at the first average (1) needs
    last.ckpt written after that validation's check; after it (2, 3), a second restart at the
    resume's first validation would make 0.55 or 0.58 the best with no check counted."""
    first = Checked(mode="max", patience=3)
    _fit(swa(start_epoch=1), first, SCORES, cut + 1, tmp_path)
    assert first.checks == [(pytest.approx(b), w) for b, w in CHECKS[:cut + 1]]
    resumed = Checked(mode="max", patience=3)
    trainer = _fit(swa(start_epoch=1), resumed, SCORES, 5, tmp_path, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.checks == [(pytest.approx(b), w) for b, w in CHECKS[cut + 1:]]
    assert (trainer.current_epoch, resumed.stopped) == (5, False)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 2


class LiveBest(L.Callback):
    """Gives early stopping a best of the live weights that no average beats (1.0) as the second
    epoch, SWA's first averaged one, starts, and keeps its ``(best_score, wait_count)`` at the end."""

    end: tuple[float, int] | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            find_callback(trainer, EarlyStopping).best_score = torch.tensor(1.0)

    def on_train_end(self, trainer, pl_module) -> None:
        stopper = find_callback(trainer, EarlyStopping)
        self.end = (stopper.best_score.item(), stopper.wait_count)


def test_a_litlab_run_restarts_its_early_stopping_at_the_first_average(cfg_factory, tmp_path, monkeypatch):
    """``averaging=swa callbacks=early_stopping`` as built by litlab (the averaging callback first,
    early stopping ungrouped in ``trainer.callbacks``): the first average's val/acc replaces the live
    best of 1.0 and the run trains its 3 epochs. Before, that check counted against 1.0 and
    patience=1 stopped the run after epoch 2 (stopped_early, best_score 1.0)."""
    from litlab import build

    live = LiveBest()
    real = build.build_callbacks
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), live])
    train(cfg_factory(["model=mlp", "averaging=swa", "averaging.start_epoch=1", "callbacks=early_stopping",
                       "callbacks.early_stopping.patience=1", "trainer.max_epochs=3", "test=false"]))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["stopped_early"] is False and "stopped_after_epoch" not in record
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as file:
        scores = [float(row["val/acc"]) for row in csv.DictReader(file) if row.get("val/acc")]
    # the live weights' epoch, then the averages of epoch 2 and of epochs 2-3, which improved on it
    assert len(scores) == 3 and scores[2] > scores[1]
    assert live.end == (pytest.approx(scores[2]), 0)


class Unasked(L.Callback):
    """A user's callback that happens to have a ``restart_best`` method of its own."""

    def __init__(self):
        self.calls = 0

    def restart_best(self) -> None:
        self.calls += 1


def test_only_litlabs_own_callbacks_start_over(tmp_path):
    """SWA called ``restart_best`` on any callback that had a method of that name; a user's callback
    is not called, litlab's early stopping still is (the first average, 0.5, becomes its best)."""
    unasked, stopper = Unasked(), Checked(mode="max", patience=3)
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                        callbacks=[swa(start_epoch=1), stopper, unasked])
    trainer.fit(Scored(SCORES), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8))
    assert unasked.calls == 0
    assert stopper.checks == [(pytest.approx(b), w) for b, w in CHECKS[:2]]
