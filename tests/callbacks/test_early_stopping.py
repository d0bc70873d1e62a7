"""Early stopping in the middle of an accumulation window stops at the window's end, with last.ckpt."""

from __future__ import annotations

import json

import lightning.pytorch as L
import pytest
import torch

from litlab.callbacks.checkpoints import data_position
from litlab.errors import LitlabError
from litlab.training import train
from tests.helpers import write_npz

# 300 training samples in batches of 16: 19 batches an epoch, validated after the 4th, 8th, 12th and
# 16th; the optimizer steps after every 3rd batch and the epoch's last. An accuracy never improves by
# min_delta=1: the check after the 8th batch (the middle of the window of batches 7-9) stops the run.
STOPPING = ["model=mlp", "data=npz", "data.batch_size=16", "logger=none", "test=false",
            "+trainer.accumulate_grad_batches=3", "+trainer.val_check_interval=0.25", "callbacks=early_stopping",
            "callbacks.early_stopping.min_delta=1.0"]


class FinalWeights(L.Callback):
    """Keeps a copy of the model's weights as training ends."""

    weights: dict | None = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _with(monkeypatch, callback) -> None:
    """Adds ``callback`` to the callbacks of the next runs."""
    from litlab import build

    real = build.build_callbacks
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), callback])


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_a_stop_within_an_accumulation_window_leaves_last_ckpt_with_the_final_weights(
        cfg_factory, tmp_path, monkeypatch):
    """The stop at the check after the 8th batch came with the window's gradients unused, where no
    checkpoint may be written as last.ckpt: the run, stopped in its first epoch, had none
    (metrics.json: last_ckpt null), and later it was older than the final weights. It now stops
    after the 9th batch's optimizer step, and last.ckpt holds those weights and the loader's
    position: with a larger patience it resumes as the run that never stopped."""
    run = [*STOPPING, f"data.path={write_npz(tmp_path / 'a.npz', n=300)}"]
    final = FinalWeights()
    _with(monkeypatch, final)
    train(cfg_factory([*run, "callbacks.early_stopping.patience=0"], name="stopped"))
    record = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert record["last_ckpt"] == str(last)
    assert (record["stopped_early"], record["stopped_after_epoch"], record["global_step"]) == (True, 1, 3)
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 3 and data_position(ckpt)["served"] == 9
    _same_weights(final.weights, ckpt["state_dict"])

    _with(monkeypatch, L.Callback())
    train(cfg_factory([*run, "callbacks.early_stopping.patience=100"], name="whole"))
    train(cfg_factory([*run, "callbacks.early_stopping.patience=100", "ckpt_path=last"], name="stopped"))
    whole, resumed = (torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
                      for name in ("whole", "stopped"))
    assert resumed["global_step"] == whole["global_step"] == 14
    _same_weights(whole["state_dict"], resumed["state_dict"])


def test_a_stop_whose_window_ends_with_the_run_did_not_stop_it_early(cfg_factory, tmp_path, monkeypatch):
    """80 samples in batches of 16: 5 batches an epoch, validated after the 4th, stepped after the
    3rd and the 5th; every check stops (stopping_threshold=-1). The stop waits for the window's end,
    the epoch's last batch: in the last epoch nothing was left to cut, yet the run recorded
    stopped_early, and a resume with more epochs was refused as "ended after 0 epoch(s)" (last.ckpt,
    written at that batch, had not counted the epoch). Now it is a run trained to its end: the same
    trainer.max_epochs is refused as trained out, a larger one trains on. Stopped so in an earlier
    epoch, the run did stop early, and the refusal counts the epochs it trained."""
    _with(monkeypatch, L.Callback())
    run = ["model=mlp", "data=npz", f"data.path={write_npz(tmp_path / 'a.npz', n=80)}", "data.batch_size=16",
           "logger=none", "test=false", "+trainer.accumulate_grad_batches=3", "+trainer.val_check_interval=4",
           "callbacks=early_stopping", "+callbacks.early_stopping.stopping_threshold=-1.0"]

    def record(name: str) -> dict:
        found = json.loads((tmp_path / name / "metrics.json").read_text())
        return {k: found.get(k) for k in ("stopped_early", "stopped_after_epoch", "global_step", "epochs")}

    train(cfg_factory([*run, "trainer.max_epochs=1"], name="end"))
    assert record("end") == {"stopped_early": False, "stopped_after_epoch": None, "global_step": 2, "epochs": 1}
    with pytest.raises(LitlabError, match=r"completed and has trained 1 epoch\(s\), as many as trainer\.max_epochs=1"):
        train(cfg_factory([*run, "trainer.max_epochs=1", "ckpt_path=last"], name="end"))
    train(cfg_factory([*run, "trainer.max_epochs=2", "ckpt_path=last"], name="end"))
    assert record("end") == {"stopped_early": False, "stopped_after_epoch": None, "global_step": 4, "epochs": 2}

    train(cfg_factory([*run, "trainer.max_epochs=2"], name="cut"))
    assert record("cut") == {"stopped_early": True, "stopped_after_epoch": 1, "global_step": 2, "epochs": 1}
    with pytest.raises(LitlabError, match=r"is completed: early stopping ended it in epoch 1,"):
        train(cfg_factory([*run, "trainer.max_epochs=3", "ckpt_path=last"], name="cut"))


class _Scripted(L.LightningModule):
    """A tiny regression whose n-th validation logs ``score`` = ``scores[n]``."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.layer, self.scores, self.checks = torch.nn.Linear(2, 1), scores, 0

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("score", self.scores[min(self.checks, len(self.scores) - 1)])

    def on_validation_epoch_end(self) -> None:
        self.checks += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_an_improvement_later_in_the_window_cancels_the_waiting_stop(tmp_path):
    """Validated after every batch, stepped after every 4th: the check after batch 2 stops (no
    improvement, patience 0) and waits for the window's end; the one after batch 3 improves, and the
    run went on all the same stopping after batch 4. The improvement cancels the stop; the next one
    (after batch 6) stops after batch 8, and that stop ended the run early."""
    from torch.utils.data import DataLoader, TensorDataset

    from litlab.callbacks.early_stopping import EarlyStopping

    # checked at each validation (Lightning takes val_check_interval=1 for 1.0: at the epoch's end only)
    stopper = EarlyStopping(monitor="score", mode="max", patience=0, check_on_train_epoch_end=False)
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=4, val_check_interval=1, limit_val_batches=1,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[stopper], default_root_dir=tmp_path)
    data = DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=1)
    trainer.fit(_Scripted([1.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0]), data, data)
    assert (trainer.fit_loop.epoch_loop.batch_progress.current.completed, trainer.global_step) == (8, 2)
    assert stopper.stopped and stopper.stopped_epoch == 0
