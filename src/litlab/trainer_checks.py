"""Up-front checks of ``trainer.*`` values, before any work starts."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from litlab.errors import LitlabError

PRECISIONS = ("32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def _int_key(trainer: DictConfig, key: str, minimum: int, allow_none: bool = False) -> None:
    value = trainer.get(key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LitlabError(f"trainer.{key} must be an integer >= {minimum}, got {value!r}.")


def check_trainer_config(trainer: DictConfig) -> None:
    """Types and values of the Trainer keys people change, and what this machine can run."""
    _int_key(trainer, "max_epochs", -1, allow_none=True)
    _int_key(trainer, "num_nodes", 1, allow_none=True)
    _int_key(trainer, "log_every_n_steps", 1, allow_none=True)
    precision = str(trainer.get("precision", 32))
    if precision not in PRECISIONS:
        raise LitlabError(f"trainer.precision must be one of 32, 64, 16-mixed, bf16-mixed, got {precision!r}.")
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise LitlabError(f"trainer.accelerator must be auto, cpu, gpu, cuda or mps, got {accelerator!r}.")
    has_cuda = torch.cuda.is_available()
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_cuda)
    if accelerator in ("gpu", "cuda") and not has_cuda:
        raise LitlabError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU. "
                          f"Use trainer=cpu (or trainer.accelerator=cpu).")
    if not on_gpu and precision in ("16-mixed", "16-true"):
        raise LitlabError(f"trainer.precision={precision} needs a CUDA GPU; this run is on the CPU. "
                          f"Use trainer.precision=32 or bf16-mixed.")
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        available = torch.cuda.device_count() if on_gpu else None
        if devices < 1 and devices != -1:
            raise LitlabError(f"trainer.devices must be a positive integer, -1 or auto, got {devices}.")
        if available is not None and devices > available:
            raise LitlabError(f"trainer.devices={devices} but this machine has {available} CUDA GPU(s).")
    elif devices not in ("auto",) and not isinstance(devices, (list, str)):
        raise LitlabError(f"trainer.devices must be an integer, a list of device ids or auto, got {devices!r}.")
