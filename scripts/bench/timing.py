"""Instruments added to runs under test: per-epoch training time and a first-step timestamp.

Both are Lightning callbacks that litlab instantiates from the config (``+callbacks.NAME``),
so the benchmark measures ``litlab.train`` exactly as a user runs it, plus one cheap hook.
The plain-Lightning contender gets the same ``EpochTimer``; the hand-written loop times
itself at the same points (see ``bench.contenders._run_raw``).
"""

from __future__ import annotations

import json
import os
import time

import lightning.pytorch as L
import torch


class EpochTimer(L.Callback):
    """Time of each training epoch, from the epoch's start to the end of its last batch.

    The window is the same as the hand-written loop's: it opens before every other callback's
    ``on_train_epoch_start`` and closes after every other callback's ``on_train_batch_end`` of
    the epoch's last batch, so that the per-epoch and per-batch work of the framework under test
    (litlab's callbacks: learning-rate monitor, epoch reseeding, throughput resets...) is inside
    it, as the raw loop's own per-epoch work is inside its window. Lightning calls callbacks in
    the order of ``trainer.callbacks``, and a callback added on litlab's command line lands after
    litlab's own; so at ``setup`` the timer puts itself first in that list and an
    ``EpochTimerStop``, which takes the end-of-batch stamps, last. Validation, checkpointing and
    end-of-epoch logging fall outside the window.

    The latest instance is kept in ``EpochTimer.latest`` so an in-process caller can read it after
    ``train(cfg)``; with ``BENCH_TIMER_OUT`` set, rank 0 also writes the epochs there as JSON
    (for runs in a subprocess, e.g. DDP).
    """

    latest: "EpochTimer | None" = None

    def __init__(self):
        self.epochs: list[tuple[float, int]] = []
        """``(seconds, samples)`` per epoch; samples are global (per-rank count times world size)."""
        self._start = self._last = 0.0
        self._samples = 0
        self.stop = EpochTimerStop(self)
        EpochTimer.latest = self

    def setup(self, trainer, pl_module, stage) -> None:
        # called after Lightning has ordered its callbacks (checkpoints last) and before any epoch;
        # a new list, so Lightning's loop over the old one (this very hook) goes on undisturbed
        others = [c for c in trainer.callbacks if c is not self and c is not self.stop]
        trainer.callbacks = [self, *others, self.stop]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self._start = self._last = time.perf_counter()
        self._samples = 0


class EpochTimerStop(L.Callback):
    """The closing half of an ``EpochTimer``, last in ``trainer.callbacks``: the end of each batch
    is stamped after every other callback's ``on_train_batch_end``."""

    def __init__(self, timer: EpochTimer):
        self.timer = timer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        timer = self.timer
        timer._samples += len(batch[1])
        if batch_idx + 1 == trainer.num_training_batches:  # on a GPU: the epoch ends with its last kernel
            _sync(pl_module.device)
        timer._last = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        timer = self.timer
        timer.epochs.append((timer._last - timer._start, timer._samples * trainer.world_size))
        out = os.environ.get("BENCH_TIMER_OUT")
        if out and trainer.is_global_zero:
            with open(out, "w") as f:
                json.dump(timer.epochs, f)


def _sync(device: torch.device) -> None:
    """Waits for a GPU's queued work (once per epoch end), so the host clock bounds the work itself;
    the hand-written loop does the same at the same points."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FirstStepStamp(L.Callback):
    """Prints wall-clock stamps (``time.time()``) at start-up milestones, then ends the process
    at the first training step: ``BENCH_STAMP <name> <time>`` lines on stdout.

    ``built`` is when litlab instantiates the callback (after imports, config and data), ``fit``
    the start of ``trainer.fit``, ``first_step`` the start of the first training batch.
    """

    def __init__(self):
        self._stamp("built")

    @staticmethod
    def _stamp(name: str) -> None:
        print(f"BENCH_STAMP {name} {time.time():.6f}", flush=True)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._stamp("fit")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stamp("first_step")
        # nothing after the first step is part of start-up; skip teardown too
        os._exit(0)


def steady_rate(epochs: list[tuple[float, int]]) -> float:
    """Samples/s over all epochs but the first (which pays one-off costs: lazy init, caches)."""
    steady = epochs[1:] if len(epochs) > 1 else epochs
    seconds = sum(s for s, _ in steady)
    return sum(n for _, n in steady) / seconds if seconds > 0 else float("nan")
