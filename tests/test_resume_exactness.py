"""What a resume from within an epoch cannot continue exactly, and what litlab does instead.

A checkpoint holds the weights, the optimizer and the training loader's position, not the gradients
summed in ``.grad`` over an unfinished ``trainer.accumulate_grad_batches`` window: a resume from
the middle of one stepped with the window's later batches only. And the rest of an epoch's order
is drawn from the run's ``seed``: a resume within it with another seed trained some samples of the
epoch twice and others never.
"""

from __future__ import annotations

import json
import math

import lightning.pytorch as L
import pytest
import torch

from litlab.callbacks.checkpoints import data_position
from litlab.errors import LitlabError
from litlab.resume import check_same_batches
from litlab.training import train
from tests.helpers import write_npz

# 300 training samples in batches of 16: 19 batches an epoch, validated after the 4th, 8th, 12th and
# 16th; the optimizer steps after every 3rd batch and the epoch's last (7 steps an epoch), so the
# validations after the 4th, 8th and 16th batch fall in the middle of an accumulation window
ACCUMULATE = ["model=mlp", "data=npz", "data.batch_size=16", "logger=none", "test=false",
              "+trainer.accumulate_grad_batches=3", "+trainer.val_check_interval=0.25"]


class CopyAt(L.Callback):
    """Copies files as they are at the start of given training batches (a run killed during one):
    ``copies`` holds (epoch, batch_idx, file, to)."""

    def __init__(self, *copies: tuple):
        self.copies = copies

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for epoch, index, file, to in self.copies:
            if (trainer.current_epoch, batch_idx) == (epoch, index):
                to.write_bytes(file.read_bytes())


class StopAt(L.Callback):
    """Stops the run after training batch ``batch_idx`` of ``epoch``, as ``trainer.max_time`` does."""

    def __init__(self, epoch: int, batch_idx: int):
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch_idx):
            trainer.should_stop = True


def _with(monkeypatch, callback) -> None:
    """Adds ``callback`` to the callbacks of the next runs."""
    from litlab import build

    real = build.build_callbacks
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), callback])


def _same_weights(a, b) -> None:
    first, second = (torch.load(p, weights_only=True) for p in (a, b))
    assert second["global_step"] == first["global_step"] == 14
    for key, value in first["state_dict"].items():
        torch.testing.assert_close(second["state_dict"][key], value, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_a_checkpoint_within_an_accumulation_window_is_never_resumed_from_its_middle(
        cfg_factory, tmp_path, monkeypatch):
    """last.ckpt of the validation after the 4th batch of epoch 1 (one window and one batch) held
    the loader's position but not that batch's gradient: the resume from it (a kill during the 5th
    batch) stepped the window with its last two batches only and ended with other weights. last.ckpt
    is now written only at validations that end a window (after the 12th) and at epoch ends, so such
    a kill resumes from the end of epoch 0. best.ckpt of a mid-window validation is written without
    the loader's position, and a resume from it is refused."""
    run = [*ACCUMULATE, f"data.path={write_npz(tmp_path / 'a.npz', n=300)}"]
    checkpoints = tmp_path / "whole" / "checkpoints"
    killed, best = tmp_path / "killed.ckpt", tmp_path / "best_at_4.ckpt"
    _with(monkeypatch, CopyAt((0, 4, checkpoints / "best.ckpt", best), (1, 4, checkpoints / "last.ckpt", killed)))
    train(cfg_factory(run, name="whole"))

    _with(monkeypatch, L.Callback())
    train(cfg_factory([*run, f"ckpt_path={killed}"], name="resumed"))
    _same_weights(tmp_path / "whole" / "checkpoints" / "last.ckpt", tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    kept = torch.load(killed, weights_only=True)
    assert (kept["epoch"], kept["global_step"]) == (0, 7)  # epoch 0's end, not step 8 within epoch 1

    # best.ckpt of the validation after the first epoch's 4th batch: usable, not resumable
    mid = torch.load(best, weights_only=True)
    assert (mid["epoch"], mid["global_step"]) == (0, 1) and data_position(mid) is None
    with pytest.raises(LitlabError, match=rf"ckpt_path={best} was written within epoch 0 after 4 batches, without "
                                          r"the training data's position in the epoch \(.*in the middle of a "
                                          r"trainer\.accumulate_grad_batches window"):
        train(cfg_factory([*run, f"ckpt_path={best}"], name="refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists()


def test_a_run_stopped_within_an_accumulation_window_resumes_as_the_uninterrupted_run(
        cfg_factory, tmp_path, monkeypatch):
    """Stopped after the 5th batch of epoch 1 (max_time, early stopping): its last.ckpt held the
    position of the validation after the 4th (mid-window, without that batch's gradient; the
    epoch's end, at the same step, is not saved again), and the resume ended with other weights. It
    would be the 5th's where the epoch's end writes last.ckpt. last.ckpt now keeps the last
    checkpoint at a window's end (epoch 0's), and the resume trains epoch 1 again. A run cut by trainer.max_steps stops after an optimizer step and
    resumes at the next batch (its position is kept)."""
    run = [*ACCUMULATE, f"data.path={write_npz(tmp_path / 'a.npz', n=300)}"]
    train(cfg_factory(run, name="whole"))
    _with(monkeypatch, StopAt(1, 4))
    train(cfg_factory(run, name="stopped"))
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    kept = torch.load(last, weights_only=True)["global_step"]
    _with(monkeypatch, L.Callback())
    train(cfg_factory([*run, "ckpt_path=last"], name="stopped"))
    whole = tmp_path / "whole" / "checkpoints" / "last.ckpt"
    _same_weights(whole, last)
    assert kept == 7  # epoch 0's end, not step 8 within epoch 1

    train(cfg_factory([*run, "+trainer.max_steps=10"], name="cut"))  # after 9 batches of epoch 1
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert data_position(torch.load(last, weights_only=True))["served"] == 9
    train(cfg_factory([*run, "ckpt_path=last"], name="cut"))
    _same_weights(whole, last)


def test_a_resume_within_an_epoch_with_other_batches_is_refused_before_anything_is_written(cfg_factory, tmp_path):
    """The rest of the epoch is counted in batches of the run's size, drawn from its seed: with
    another batch size or seed, some samples of the epoch were trained twice, others never. At an
    epoch's end the batch size may change (the epochs to come are cut from it); the seed may not
    (``check_same_seed``: the run's record would name the new one)."""
    run = ["model=mlp", "data=npz", f"data.path={write_npz(tmp_path / 'a.npz', n=300)}", "data.batch_size=16",
           "logger=none", "test=false"]
    train(cfg_factory([*run, "+trainer.max_steps=12"], name="cut"))
    record = (tmp_path / "cut" / "metrics.json").read_bytes()
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(LitlabError, match=rf"ckpt_path={last} was taken after 12 of the 19 training batches of epoch "
                                          r"0 per process, and a resume goes on with the batches left; here they "
                                          r"would be other batches \(data\.batch_size=16 in the checkpoint, 8 here\)\. "
                                          r"Resume with the run's data\.batch_size.* or from a checkpoint taken at an "
                                          r"epoch's end"):
        train(cfg_factory([*run, "data.batch_size=8", "ckpt_path=last"], name="cut"))
    with pytest.raises(LitlabError, match=rf"ckpt_path={last} was trained with seed=42, and this command has seed=7"):
        train(cfg_factory([*run, "seed=7", "ckpt_path=last"], name="cut"))
    assert (tmp_path / "cut" / "metrics.json").read_bytes() == record
    assert last.read_bytes() == before
    # at an epoch's end
    ckpt = torch.load(last, weights_only=True)
    ckpt["callbacks"] = {}
    check_same_batches(cfg_factory([*run, "data.batch_size=8"]), ckpt, last)
    train(cfg_factory([*run, "trainer.max_epochs=1"], name="epoch"))
    train(cfg_factory([*run, "data.batch_size=32", "ckpt_path=last"], name="epoch"))
    assert json.loads((tmp_path / "epoch" / "metrics.json").read_text())["global_step"] == 19 + math.ceil(300 / 32)
