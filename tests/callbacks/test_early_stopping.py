"""Early stopping in the middle of an accumulation window stops at the window's end, with last.ckpt."""

from __future__ import annotations

import json

import lightning.pytorch as L
import torch

from litlab.callbacks.checkpoints import data_position
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
