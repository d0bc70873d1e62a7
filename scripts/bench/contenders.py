"""The three ways of training the same net on the same data that the overhead case compares.

* ``litlab``: ``litlab.training.train(cfg)``, the real path with default callbacks and logging;
* ``raw``: an idiomatic hand-written PyTorch loop over ``DataLoader(TensorDataset(...))``;
* ``lightning``: a minimal ``LightningModule`` under a default ``Trainer``.

All three take the net from litlab's builder, the optimizer and scheduler from the same config,
the same seed, batch size and precision, and report steady-state training samples/s measured
over the same window (epoch start to end of the epoch's last batch, first epoch excluded). For the
two Lightning contenders ``bench.timing.EpochTimer`` opens it before every other callback's
epoch-start hook and closes it after every other callback's end-of-batch hook, as the hand-written
loop's clock holds all of its own per-epoch and per-batch work.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.common import TIMER, compose_cfg
from bench.timing import EpochTimer, steady_rate

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@dataclass
class TrainSpec:
    """One training workload, as litlab overrides plus the loop lengths all contenders share."""

    name: str
    overrides: list[str]
    epochs: int = 4
    limit_train: int | None = None
    """Training batches per epoch (None: the whole split)."""
    limit_val: int | None = 2
    extra: list[str] = field(default_factory=list)
    accelerator: str = "cpu"
    """``cpu`` or ``gpu`` (the hand-written loop then runs on ``cuda``)."""

    def litlab_overrides(self, data_dir: Path) -> list[str]:
        o = [*self.overrides, f"paths.data_dir={data_dir}", f"trainer.accelerator={self.accelerator}",
             f"trainer.max_epochs={self.epochs}", "test=false", "seed=0", *self.extra]
        if self.limit_train is not None:
            o.append(f"+trainer.limit_train_batches={self.limit_train}")
        if self.limit_val is not None:
            o.append(f"+trainer.limit_val_batches={self.limit_val}")
        return o


@contextlib.contextmanager
def nvml_check(on: bool):
    """Each contender sees the environment it would have on its own: importing Lightning sets
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (which makes every optimizer step probe for NVIDIA's
    management library), a hand-written script without Lightning does not have it."""
    before = os.environ.get(NVML_CHECK)
    if on:
        os.environ[NVML_CHECK] = "1"
    else:
        os.environ.pop(NVML_CHECK, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = before


def run_litlab(spec: TrainSpec, data_dir: Path, run_dir: Path) -> float:
    """litlab's real entrypoint function; returns steady-state training samples/s."""
    with nvml_check(on=True):
        return _run_litlab(spec, data_dir, run_dir)


def _run_litlab(spec: TrainSpec, data_dir: Path, run_dir: Path) -> float:
    from litlab.training import train

    cfg = compose_cfg(spec.litlab_overrides(data_dir) + [TIMER], run_dir)
    train(cfg)
    assert EpochTimer.latest is not None
    return steady_rate(EpochTimer.latest.epochs)


def build_parts(spec: TrainSpec, data_dir: Path, run_dir: Path, tuned: bool = False):
    """What the hand-written contenders share with litlab: normalized tensors, net, optimizer.

    Seeding and build order follow ``litlab.training.train`` so the initial weights are the same.
    The net is plain (contiguous memory order, eager) and the optimizer is built as configured,
    as a hand-written script would; with ``tuned``, both get litlab's automatic speed switches
    (``model.channels_last=auto``, ``model.fused_optimizer=auto``), to show what is left of
    litlab's lead once a hand-written loop applies them too. Returns the net on the spec's device,
    the normalized splits (on the CPU), the optimizer and scheduler factories, the batch size and
    the autocast dtype (None for fp32).
    """
    from litlab.build import build_data, build_model

    switches = [] if tuned else ["model.channels_last=false", "model.fused_optimizer=false"]
    cfg = compose_cfg(spec.litlab_overrides(data_dir) + switches, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    dm = build_data(cfg)
    net = build_model(cfg.model, dm.input_shape, dm.num_classes).net
    pre = dm.preprocess
    # preprocessed once up front, as a hand-written script would: (N, C, H, W) float32
    train = TensorDataset(pre(dm.splits.train.x), dm.splits.train.y)
    val = TensorDataset(pre(dm.splits.val.x), dm.splits.val.y)
    make_opt = hydra.utils.instantiate(cfg.model.optimizer)
    if tuned:
        from litlab.tasks.optimizers import build_optimizer

        make_opt = functools.partial(build_optimizer, make_opt, fused=cfg.model.fused_optimizer)
    make_sched = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(cfg.trainer.precision))
    return net.to(_device(spec)), train, val, make_opt, make_sched, int(cfg.data.batch_size), autocast


def _device(spec: TrainSpec) -> torch.device:
    return torch.device("cuda" if spec.accelerator == "gpu" else "cpu")


def _shuffled_batches(data: TensorDataset, batch_size: int):
    """One shuffled epoch fetched a batch at a time (one indexing op per batch, as litlab serves
    in-memory data), instead of ``DataLoader``'s per-sample fetch and collate."""
    x, y = data.tensors
    for idx in torch.randperm(len(y)).split(batch_size):
        yield x[idx], y[idx]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision as ``trainer.precision`` asks (nothing at all for fp32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    """Waits for the device's queued work, so host clock readings bound the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_raw(spec: TrainSpec, data_dir: Path, run_dir: Path, tuned: bool = False) -> float:
    """An idiomatic PyTorch loop: shuffle, forward, loss, backward, step; eval each epoch.

    ``tuned`` adds what litlab does without being asked: channels-last, fused optimizer, the
    batched in-memory fetch, and the loss summed on the device (no ``.item()`` sync per step).
    """
    with nvml_check(on=False):
        return _run_raw(spec, data_dir, run_dir, tuned)


def _run_raw(spec: TrainSpec, data_dir: Path, run_dir: Path, tuned: bool) -> float:
    net, train, val, make_opt, make_sched, batch_size, autocast = build_parts(spec, data_dir, run_dir, tuned)
    device = _device(spec)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(val, batch_size=batch_size)
    opt = make_opt(params=net.parameters())
    sched = make_sched(optimizer=opt) if make_sched else None
    epochs = []
    for _ in range(spec.epochs):
        net.train()
        _sync(device)
        start = last = time.perf_counter()
        samples, total_loss = 0, (torch.zeros((), device=device) if tuned else 0.0)
        for i, (x, y) in enumerate(_shuffled_batches(train, batch_size) if tuned else loader):
            if spec.limit_train is not None and i >= spec.limit_train:
                break
            if device.type == "cuda":  # pinned, then copied while the host goes on (as litlab's loaders do)
                x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with _autocast(device, autocast):
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            total_loss += loss.detach() if tuned else loss.item()
            samples += len(y)
            last = time.perf_counter()
        _sync(device)
        if device.type == "cuda":  # the host ran ahead of the device: the epoch ends with its last kernel
            last = time.perf_counter()
        epochs.append((last - start, samples))
        if sched is not None:
            sched.step()
        _evaluate(net, val_loader, spec.limit_val, device, autocast)
    return steady_rate(epochs)


@torch.no_grad()
def _evaluate(net: torch.nn.Module, loader: DataLoader, limit: int | None, device: torch.device,
              autocast: torch.dtype | None) -> float:
    net.eval()
    correct = seen = 0
    for i, (x, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        with _autocast(device, autocast):
            correct += int((net(x.to(device)).argmax(1) == y.to(device)).sum())
        seen += len(y)
    return correct / max(seen, 1)


class MinimalModule(L.LightningModule):
    """What a Lightning user writes first: a step that logs the loss, and the optimizer."""

    def __init__(self, net, make_opt, make_sched):
        super().__init__()
        self.net, self.make_opt, self.make_sched = net, make_opt, make_sched

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = self.make_opt(params=self.parameters())
        if self.make_sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": self.make_sched(optimizer=opt)}


def run_lightning(spec: TrainSpec, data_dir: Path, run_dir: Path) -> float:
    """A default ``Trainer`` (its default logger and checkpointing) with the progress bar off,
    matching litlab's non-terminal path, which prints only one line per epoch."""
    with nvml_check(on=True):
        return _run_lightning(spec, data_dir, run_dir)


def _run_lightning(spec: TrainSpec, data_dir: Path, run_dir: Path) -> float:
    net, train, val, make_opt, make_sched, batch_size, _ = build_parts(spec, data_dir, run_dir)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=spec.epochs, default_root_dir=str(run_dir),
                        limit_train_batches=spec.limit_train, limit_val_batches=spec.limit_val,
                        enable_progress_bar=False, callbacks=[timer])
    trainer.fit(MinimalModule(net, make_opt, make_sched), DataLoader(train, batch_size=batch_size, shuffle=True),
                DataLoader(val, batch_size=batch_size))
    return steady_rate(timer.epochs)


def run_raw_tuned(spec: TrainSpec, data_dir: Path, run_dir: Path) -> float:
    """The hand-written loop with litlab's automatic fast paths applied by hand (informational)."""
    return run_raw(spec, data_dir, run_dir, tuned=True)


CONTENDERS = {"litlab": run_litlab, "raw": run_raw, "lightning": run_lightning, "raw_tuned": run_raw_tuned}
