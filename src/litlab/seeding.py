"""Seeding a run: Lightning's ``seed_everything``, without its cost where no accelerator exists."""

from __future__ import annotations

import logging
import os
import random

import lightning.pytorch as L
import numpy as np
import torch

from litlab.errors import LitlabError

log = logging.getLogger(__name__)


def accelerator_present() -> bool:
    """Whether torch sees a CUDA, MPS or XPU device, asked without initializing any of them (CUDA
    is counted the way ``torch.cuda.device_count`` counts before initialization: through NVML
    when Lightning asks for that, so that loader workers forked later stay usable)."""
    if torch.cuda.device_count() > 0:
        return True
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def seed_everything(seed: int, cpu_only: bool | None = None, verbose: bool = True) -> int:
    """Seeds Python, NumPy and torch and sets ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS=1``, as
    ``lightning.seed_everything(seed, workers=True)`` does.

    Where only the CPU's generator is used (``cpu_only``; by default: no accelerator on this
    machine), torch's CPU generator is seeded directly. ``torch.manual_seed`` also queues a seeding
    of every device type not yet initialized (CUDA, XPU, MTIA), each with a formatted stack trace,
    which reads the source file of every frame on the stack into memory: ~0.5 MiB at the start of
    a run, for devices that do not exist. The numbers drawn are the same either way.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise LitlabError(f"seed must be an integer in [0, 2**32) (NumPy accepts no other; a run is repeated "
                          f"from its seed), got {seed!r}.")
    if cpu_only is None:
        cpu_only = not accelerator_present()
    if not cpu_only:
        return L.seed_everything(seed, workers=True, verbose=verbose)
    if verbose:
        log.info("Seed set to %d", seed)
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
    return seed
