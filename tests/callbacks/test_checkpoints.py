"""last.ckpt holds every finished epoch, whether or not it improved the monitored value."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch

from litlab.train import train


class LastCheckpointProbe(L.Callback):
    """Reads last.ckpt at each epoch's start: which epoch and step it holds."""

    def __init__(self, path: str):
        self.path = path
        self.seen: list[tuple[int, int | None, int | None]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            if not Path(self.path).exists():
                self.seen.append((trainer.current_epoch, None, None))
                return
            ckpt = torch.load(self.path, weights_only=True)
            self.seen.append((trainer.current_epoch, ckpt["epoch"], ckpt["global_step"]))


def _train_with_probe(cfg_factory, tmp_path, monkeypatch, extra: list[str]) -> LastCheckpointProbe:
    """A 4-epoch MLP run at learning rate 0 (val/acc never improves after the first epoch, so
    best.ckpt stays at epoch 0), with a ``LastCheckpointProbe`` added to its callbacks."""
    from litlab import build

    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=4", "model.optimizer.lr=0", "model.scheduler=null", *extra],
                      name="r")
    probe = LastCheckpointProbe(str(tmp_path / "r" / "checkpoints" / "last.ckpt"))
    real = build.build_callbacks
    monkeypatch.setattr("litlab.train.build_callbacks", lambda c: [*real(c), probe])
    train(cfg)
    return probe


def test_last_checkpoint_follows_every_epoch_that_does_not_improve(cfg_factory, tmp_path, monkeypatch):
    probe = _train_with_probe(cfg_factory, tmp_path, monkeypatch, [])
    steps = probe.seen[0][2]
    # at the start of epoch e, last.ckpt is the end of epoch e - 1
    assert probe.seen == [(e, e - 1, e * steps) for e in (1, 2, 3)]
    assert torch.load(tmp_path / "r" / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (3, 4 * steps)


def test_last_checkpoint_follows_validation_when_it_runs_every_other_epoch(cfg_factory, tmp_path, monkeypatch):
    # validation every 2nd epoch: checkpoints are written at validation's end, not the epoch's
    probe = _train_with_probe(cfg_factory, tmp_path, monkeypatch, ["trainer.check_val_every_n_epoch=2"])
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    # the second validation (epoch 3) did not improve val/acc and still rewrote last.ckpt
    assert final["epoch"] == 3
    steps = final["global_step"] // 4
    # nothing before the first validation (end of epoch 1); then the end of epoch 1 until the next
    assert probe.seen == [(1, None, None), (2, 1, 2 * steps), (3, 1, 2 * steps)]
