"""This command's overrides, and its settings beside a checkpoint's, in the words a resume's refusals use.

Shared by ``resume`` (which checkpoint, on which data, with anything left to train) and
``resume_settings`` (the training settings a resume restores from the checkpoint), which
``resume`` imports: a module of their own, so that neither of the two imports the other.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.run_commands import run_overrides, sets_key

ABSENT = object()
"""a key one side has and the other not (the checkpoint's config or this command's)"""


def job_overrides(cfg: DictConfig) -> list[str] | None:
    """This command's overrides: the composed config's record of them (tests compose with it), or
    the running Hydra job's; None outside both."""
    found = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if found is not None:
        return [str(o) for o in found]
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else None


def given_overrides(cfg: DictConfig, groups: list[str]) -> list[str]:
    """This command's overrides of ``groups`` (``compress=prune``, ``compress.amount=0.5``), or a
    ``group=...`` placeholder where they are unknown."""
    given = [o for o in job_overrides(cfg) or [] if sets_key(o, *groups)]
    return given or [f"{group}=..." for group in groups]


def rerun_command(cfg: DictConfig, run_dir: Path, groups: list[str]) -> str:
    """The command that trains the run in ``run_dir`` again, into a new folder, with this command's
    settings of ``groups`` (``compress``, ``export``, ``averaging``) in place of the run's."""
    kept = run_overrides(run_dir, *groups)
    run = ["<the run's overrides>"] if kept is None else [shlex.quote(o) for o in kept]
    return " ".join(["python -m litlab.train", *run, *map(shlex.quote, given_overrides(cfg, groups))])


def flat_keys(value, prefix: str) -> dict:
    """``value`` (a plain config node) as ``{dotted key: leaf}`` under ``prefix``, to compare key by key."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, sub in value.items() for k, v in flat_keys(sub, f"{prefix}.{key}").items()}


def shown_value(value) -> str:
    """A setting as a refusal shows it: ``absent`` where the key is missing, ``null`` for None."""
    return "absent" if value is ABSENT else ("null" if value is None else str(value))
