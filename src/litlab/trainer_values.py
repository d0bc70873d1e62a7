"""``trainer.*`` values that can be refused without torch, before Hydra makes the run's folder.

``trainer_checks.check_trainer_config`` checks them again as the run starts (with what needs torch:
whether a GPU is there), in the same words; here they are refused in a fraction of a second and
leave no failed run folder behind (``trainer.precision=16`` took 5-14 s and left one).
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.device_counts import known_device_count
from litlab.errors import LitlabError
from litlab.slurm_launcher import is_slurm_launcher

PRECISIONS = ("32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def int_key(trainer: DictConfig, key: str, minimum: int, allow_none: bool = False) -> None:
    """``trainer.<key>`` is an integer >= ``minimum`` (or null where ``allow_none``)."""
    value = trainer.get(key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LitlabError(f"trainer.{key} must be an integer >= {minimum}, got {value!r}.")


def check_precision_name(precision: str) -> None:
    """``trainer.precision`` is one of Lightning's names; ``16`` and ``bf16`` (lightning-hydra-template's
    configs) are Lightning 1.x's names for ``16-mixed`` and ``bf16-mixed``."""
    if precision == "16":
        raise LitlabError("trainer.precision=16 is Lightning's old name for 16-mixed: use trainer.precision=16-mixed "
                          "(a CUDA GPU); on the CPU, trainer.precision=32 or bf16-mixed.")
    if precision == "bf16":
        raise LitlabError("trainer.precision=bf16 is Lightning's old name for bf16-mixed: use "
                          "trainer.precision=bf16-mixed.")
    if precision not in PRECISIONS:
        raise LitlabError(f"trainer.precision must be one of 32, 64, 16-mixed, bf16-mixed (or 16-true, bf16-true), "
                          f"got {precision!r}.")


DEVICE_WORDS = {"cuda": "CUDA GPU(s)", "mps": "Apple GPU", "cpu": "CPU cores (one process each)"}


def too_many_devices(count: int, available: int, device: str) -> LitlabError:
    """The refusal of ``trainer.devices=<count>`` on a machine with ``available`` of ``device``
    (cuda, mps, cpu): here without torch, and in ``trainer_checks.check_devices`` as the run starts."""
    return LitlabError(f"trainer.devices={count} but this machine has {available} {DEVICE_WORDS[device]}. "
                       f"Use trainer.devices={available} or fewer.")


def check_cpu_processes(trainer: DictConfig) -> None:
    """``trainer.accelerator=cpu`` (trainer=cpu, trainer=ddp_cpu) with more processes than CPU cores;
    ``trainer_checks.check_devices`` says the rest (the value's form, GPUs) once torch is imported."""
    if trainer.get("accelerator") != "cpu":
        return
    count, available = known_device_count(trainer.get("devices", 1)), os.cpu_count() or 1
    if count is not None and count > available:
        raise too_many_devices(count, available, "cpu")


def check_trainer_values(cfg: DictConfig) -> None:
    """The checks above, on the composed config's ``trainer`` node (skipped where it cannot be read
    here: an interpolation that resolves only in the run)."""
    try:
        trainer = OmegaConf.select(cfg, "trainer")
        if not isinstance(trainer, DictConfig):
            return
        int_key(trainer, "max_epochs", -1, allow_none=True)
        if "min_epochs" in trainer:
            int_key(trainer, "min_epochs", 0, allow_none=True)
        if "max_steps" in trainer:
            int_key(trainer, "max_steps", -1)
        check_precision_name(str(trainer.get("precision", 32)))
        if not is_slurm_launcher(cfg):  # a SLURM job's cores are the compute node's, not this one's
            check_cpu_processes(trainer)
    except OmegaConfBaseException:
        return
