"""last.ckpt holds every finished epoch, whether or not it improved the monitored value."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch

from litlab.training import train


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
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), probe])
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


def test_last_checkpoint_holds_every_epoch_also_those_without_validation(cfg_factory, tmp_path, monkeypatch):
    """Validation every 2nd epoch of 3: last.ckpt used to be written at validation's end only, so
    it missed the first epoch and, at the end, the whole last one (resuming trained it again)."""
    probe = _train_with_probe(cfg_factory, tmp_path, monkeypatch,
                              ["trainer.check_val_every_n_epoch=2", "trainer.max_epochs=3"])
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    steps = final["global_step"] // 3
    assert (final["epoch"], final["global_step"]) == (2, 3 * steps)
    assert probe.seen == [(1, 0, steps), (2, 1, 2 * steps)]


def test_last_checkpoint_holds_the_end_of_an_epoch_validated_twice(cfg_factory, tmp_path, monkeypatch):
    """Validation in the middle of each epoch and at its end: last.ckpt is the epoch's end."""
    _train_with_probe(cfg_factory, tmp_path, monkeypatch, ["+trainer.val_check_interval=0.5", "trainer.max_epochs=2"])
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * 19  # 1,168 training digits in batches of 64


def test_a_moved_run_folder_keeps_its_best_score_on_resume(tmp_path):
    """Lightning drops the best score when the checkpoint folder's path changed: a resumed copy of
    a run wrote its first, worse epoch over the copied best.ckpt (val/acc 1.0 -> 0.9963)."""
    from litlab.callbacks.checkpoints import checkpoint_callback

    old, new = tmp_path / "run" / "checkpoints", tmp_path / "copy" / "checkpoints"
    state = {"monitor": "val/acc", "best_model_score": torch.tensor(1.0), "best_model_path": str(old / "best.ckpt"),
             "current_score": torch.tensor(0.99), "dirpath": str(old), "kth_value": torch.tensor(1.0),
             "best_k_models": {str(old / "best.ckpt"): torch.tensor(1.0)},
             "kth_best_model_path": str(old / "best.ckpt"), "last_model_path": str(old / "last.ckpt")}
    new.mkdir(parents=True)
    (new / "best.ckpt").write_bytes(b"copied")
    moved = checkpoint_callback(str(new))
    moved.load_state_dict(dict(state))
    assert float(moved.best_model_score) == 1.0
    assert moved.best_model_path == str(new / "best.ckpt") and moved.last_model_path == str(new / "last.ckpt")
    assert list(moved.best_k_models) == [str(new / "best.ckpt")]
    # another run's checkpoint resumed into a folder without its best.ckpt: nothing to keep there
    fresh = checkpoint_callback(str(tmp_path / "fresh" / "checkpoints"))
    fresh.load_state_dict(dict(state))
    assert fresh.best_model_score is None


class LastAtValidation(L.Callback):
    """At each validation's end, before the checkpoint callback's saves: (step, last.ckpt's step or None)."""

    def __init__(self, path: str):
        self.path = path
        self.seen: list[tuple[int, int | None]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            held = torch.load(self.path, weights_only=True)["global_step"] if Path(self.path).exists() else None
            self.seen.append((trainer.global_step, held))


def _last_at_validations(cfg_factory, tmp_path, monkeypatch) -> list[tuple[int, int | None]]:
    """(step, last.ckpt's step) after each validation of a 2-epoch run validated twice an epoch."""
    from litlab import build

    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=2", "+trainer.val_check_interval=0.5"], name="r")
    probe = LastAtValidation(str(tmp_path / "r" / "checkpoints" / "last.ckpt"))
    real = build.build_callbacks
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), probe])
    train(cfg)
    final = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 38
    return probe.seen


def test_a_validation_within_an_epoch_leaves_last_checkpoint_there(cfg_factory, tmp_path, monkeypatch):
    """The training loader's position goes into checkpoints (data/resumable_loader.py), so a
    validation within an epoch writes last.ckpt: a run with one long epoch validated by steps
    resumes from its last validation, not from the start of the epoch (tests/test_mid_epoch_resume.py)."""
    # 19 batches an epoch, validated after its 9th and 18th; the probe reads last.ckpt before the
    # checkpoint callback's save (Lightning runs checkpoint callbacks last): the previous validation's
    assert _last_at_validations(cfg_factory, tmp_path, monkeypatch) == [(9, None), (18, 9), (28, 19), (37, 28)]
    best = torch.load(tmp_path / "r" / "checkpoints" / "best.ckpt", weights_only=True)
    state = next(v for k, v in best["callbacks"].items() if k.startswith("_Checkpoints"))
    assert state["within_epoch"] is True


def test_without_the_loaders_position_last_checkpoint_stays_at_the_finished_epoch(cfg_factory, tmp_path,
                                                                                   monkeypatch):
    """A resume from a mid-epoch last.ckpt without the loader's position restarted the epoch's data
    at its first batch while Lightning counted the batches already done: 9 batches trained twice, 9
    never (test/acc 0.944 against 0.972 uninterrupted). Without it, only finished epochs go to last.ckpt."""
    monkeypatch.setattr("litlab.callbacks.checkpoints.data_position_saved", lambda trainer: False)
    assert _last_at_validations(cfg_factory, tmp_path, monkeypatch) == [(9, None), (18, None), (28, 19), (37, 19)]
