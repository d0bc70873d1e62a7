"""Keeping ``torch.cuda.is_available()`` cheap on machines without a CUDA device."""

from __future__ import annotations

import os

import torch

_NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_nvml_check_without_gpus() -> bool:
    """Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that asking whether CUDA is
    available never initializes CUDA before DataLoader workers fork). With it, every
    ``torch.cuda.is_available()`` tries to load the NVIDIA management library again, and torch's
    optimizers ask once per ``step()``: on a CPU-only machine with a CUDA build of torch that is
    ~0.1 ms per training step. Where no CUDA device is visible there is nothing to protect, so the
    variable is removed and the check falls back to torch's cheap device count. Returns whether it
    was removed."""
    if os.environ.get(_NVML_CHECK) != "1" or torch.cuda.device_count() > 0:
        return False
    del os.environ[_NVML_CHECK]
    return True
