"""Small data makers shared by tests: image folders and npz files written to tmp paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def write_image_folder(root: Path, splits=("train", "val", "test"), classes=("a", "b", "c"), per_class: int = 6,
                       size: int = 8, mode: str = "L", seed: int = 0) -> Path:
    """Learnable images: each class is a bright band at its own row position."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 60, (size, size), dtype=np.uint8)
                arr[(k * 2) % size, :] = 255
                img = Image.fromarray(arr, mode="L")
                (img.convert(mode) if mode != "L" else img).save(d / f"{i}.png")
    return root


def write_npz(path: Path, kind: str = "image", n: int = 40, num_classes: int = 3, **replace) -> Path:
    """An npz with x_train/y_train/x_test/y_test (and x_val/y_val), learnable by class offset."""
    rng = np.random.default_rng(0)
    shape = {"image": (1, 6, 6), "sequence": (10, 2), "flat": (12,)}[kind]

    def make(m):
        y = rng.integers(0, num_classes, m)
        x = rng.normal(size=(m, *shape)).astype(np.float32) + y.reshape(-1, *([1] * len(shape)))
        return x, y

    arrays = {}
    for split, m in (("train", n), ("val", n // 4), ("test", n // 4)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = make(m)
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


class DeleteFolderAfterFirstEpoch:
    """A callback (added with +callbacks.vanish._target_=...) that removes a folder mid-run."""

    def __new__(cls, path: str):
        import shutil

        import lightning.pytorch as L

        class _Delete(L.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                shutil.rmtree(path, ignore_errors=True)

        return _Delete()


class PoisonWeightsAtEpoch:
    """A callback (``+callbacks.poison._target_=...``) that sets every weight to NaN when epoch
    ``epoch`` starts, to inject a numerical fault mid-run."""

    def __new__(cls, epoch: int = 1):
        import lightning.pytorch as L
        import torch

        class _Poison(L.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == epoch:
                    with torch.no_grad():
                        for p in pl_module.parameters():
                            p.fill_(float("nan"))

        return _Poison()


class SignalAtBatch:
    """A callback (``+callbacks.signal._target_=...``) that sends this process ``signum`` at the
    end of batch ``batch`` of the test (``stage=test``) or of a validation inside fit (``val``)."""

    def __new__(cls, stage: str = "test", batch: int = 2, signum: int = 2):
        import os

        import lightning.pytorch as L

        class _Signal(L.Callback):
            sent = False

            def _maybe(self, batch_idx):
                if batch_idx == batch and not self.sent:
                    self.sent = True
                    os.kill(os.getpid(), signum)

            def on_test_batch_end(self, trainer, pl_module, outputs, b, batch_idx, dataloader_idx=0):
                if stage == "test":
                    self._maybe(batch_idx)

            def on_validation_batch_end(self, trainer, pl_module, outputs, b, batch_idx, dataloader_idx=0):
                if stage == "val" and not trainer.sanity_checking:
                    self._maybe(batch_idx)

        return _Signal()


class SignalAtFitEnd:
    """A callback (``+callbacks.signal._target_=...``) that sends this process SIGTERM when fit
    ends, before the test starts."""

    def __new__(cls):
        import os
        import signal

        import lightning.pytorch as L

        class _Signal(L.Callback):
            def on_fit_end(self, trainer, pl_module):
                os.kill(os.getpid(), signal.SIGTERM)

        return _Signal()


def tiny_lightning_module():
    """A four-input linear model with the least a Lightning fit needs (validation does nothing),
    for tests of callbacks under a plain ``L.Trainer``."""
    import lightning.pytorch as L
    import torch

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def train_twins(pairs, steps: int) -> None:
    """``steps`` optimizer steps of cross-entropy on one fixed random batch (32 samples of 8
    features, 3 classes) for each (net, optimizer) of ``pairs``, interleaved: nets that start
    equal and update alike stay equal."""
    import torch

    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(steps):
        for model, opt in pairs:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()


# the _target_ of Hydra's basic (grid) sweeper, as multirun.yaml records it
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def write_sweep_record(path: Path, task: list[str], params=None, target: str = BASIC_SWEEPER, name: str = "train",
                       **more) -> Path:
    """A sweep folder as the sweeper leaves it before its first job: its multirun.yaml only, of the
    command's overrides ``task``."""
    path.mkdir(parents=True)
    hydra = {"sweep": {"dir": str(path), "subdir": "${hydra.job.num}"},
             "sweeper": {"_target_": target, "max_batch_size": None, "params": params},
             "overrides": {"hydra": [f"hydra.sweep.dir={path}", "hydra.mode=MULTIRUN"], "task": task},
             "job": {"name": name}, **more}
    (path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "task_name": name}))
    return path


def write_search(config_dir: Path, name: str, text: str) -> Path:
    """``config_dir`` (a ``--config-dir``) holding ``hparams_search/<name>.yaml`` with ``text``; returns it."""
    (config_dir / "hparams_search").mkdir(parents=True, exist_ok=True)
    (config_dir / "hparams_search" / f"{name}.yaml").write_text(text)
    return config_dir


def sweeper_params(*lines: str) -> str:
    """A search file whose ``hydra.sweeper.params`` holds ``lines`` (``"averaging: none,ema"``), for the
    sweeper the command line picks."""
    return "# @package _global_\nhydra:\n  sweeper:\n    params:\n" + "".join(f"      {line}\n" for line in lines)
