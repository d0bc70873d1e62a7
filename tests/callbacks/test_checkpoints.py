"""last.ckpt holds every finished epoch, whether or not it improved the monitored value."""

from __future__ import annotations

import lightning.pytorch as L
import torch

from litlab.train import train


class LastCheckpointProbe(L.Callback):
    """Reads last.ckpt at each epoch's start: which epoch and step it holds."""

    def __init__(self, path: str):
        self.path = path
        self.seen: list[tuple[int, int, int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            ckpt = torch.load(self.path, weights_only=True)
            self.seen.append((trainer.current_epoch, ckpt["epoch"], ckpt["global_step"]))


def test_last_checkpoint_follows_every_epoch_that_does_not_improve(cfg_factory, tmp_path, monkeypatch):
    # lr 0: val/acc never improves after the first epoch, so best.ckpt stays at epoch 0
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=4", "model.optimizer.lr=0", "model.scheduler=null"], name="r")
    probe = LastCheckpointProbe(str(tmp_path / "r" / "checkpoints" / "last.ckpt"))
    from litlab import build

    real = build.build_callbacks
    monkeypatch.setattr("litlab.train.build_callbacks", lambda c: [*real(c), probe])
    train(cfg)
    steps = probe.seen[0][2]
    # at the start of epoch e, last.ckpt is the end of epoch e - 1
    assert probe.seen == [(e, e - 1, e * steps) for e in (1, 2, 3)]
    assert torch.load(tmp_path / "r" / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (3, 4 * steps)
