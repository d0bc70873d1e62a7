"""The command lines that run a run again: its overrides, read from its record, as shell words.

A run's folder records how it was composed (``.hydra/overrides.yaml``, and the config flags in
``.hydra/hydra.yaml``); the resume hints of an interrupted run, of a killed rank and of a
refused resume, and the commands of a sweep's jobs, are built from it here. Needs no torch, so a
check that runs before torch is imported can name the command too.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from litlab.config_flags import recorded_config_words
from litlab.sweeps.sweep_table import is_under


def sets_key(override: str, *keys: str) -> bool:
    """Whether ``override`` (``key=value``, ``+key=...``, ``~key``) sets one of ``keys`` or a key under them."""
    return is_under(override.lstrip("+~").split("=", 1)[0], keys)


def path_override(key: str, path: Path | str) -> str:
    """``key=path`` as a shell word that Hydra reads back as ``path``: quoted for Hydra where the
    path has characters its override grammar reserves (spaces, ``=``, commas, brackets, ...), then
    for the shell."""
    value = str(path)
    if not re.fullmatch(r"[\w./@:+~-]+", value):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return shlex.quote(f"{key}={value}")


def run_dir_override(run_dir: Path) -> str:
    """``hydra.run.dir=...`` as a shell word that Hydra reads back as ``run_dir``."""
    return path_override("hydra.run.dir", run_dir)


def recorded_overrides(record: Path) -> list[str] | None:
    """The overrides in ``record`` (a run's ``.hydra/``, or a start's copy of it) as Hydra wrote
    them (``overrides.yaml``); None where that file is missing or not a list."""
    try:
        found = yaml.safe_load((Path(record) / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in found] if isinstance(found, list) else None


def record_words(record: Path, *dropped: str) -> list[str] | None:
    """The words after ``python -m litlab.train`` that compose the run of ``record`` again: the
    config flags it was started with (``--config-dir``, ``--config-name``) and its
    ``hydra.searchpath`` (where its own config files are), then its overrides without those of
    ``ckpt_path``, other ``hydra.*`` keys and ``hparams_search`` (a sweep's settings, which would
    start a new sweep) and ``dropped``; None where the record cannot be read. Without the flags
    and the search path a pasted command composed litlab's ``train`` config, which refused the
    run's own choices (``model=tiny is not a choice``)."""
    overrides = recorded_overrides(record)
    if overrides is None:
        return None
    kept = [o for o in overrides if not sets_key(o, "ckpt_path", "hparams_search", "hydra", *dropped)]
    return [*recorded_config_words(Path(record) / "hydra.yaml"), *kept]


def run_overrides(run_dir: Path, *dropped: str) -> list[str] | None:
    """``record_words`` of the run in ``run_dir`` (its ``.hydra/``, as its latest start wrote it)."""
    return record_words(Path(run_dir) / ".hydra", *dropped)


def resume_command(run_dir: Path, ckpt: Path | None = None) -> str:
    """The command that resumes the run in ``run_dir``: its own config flags and overrides
    (``run_overrides``), shell-quoted, then ``ckpt_path=last`` (or ``ckpt``, the checkpoint of
    another run that a run without one of its own started from) and the folder. A resume without
    them is refused (the default model is another net), and the placeholder the record held
    (``<same overrides>``) was a shell redirect when pasted."""
    kept = run_overrides(run_dir)
    start = "ckpt_path=last" if ckpt is None else path_override("ckpt_path", ckpt)
    run = ["<the run's overrides>"] if kept is None else [shlex.quote(o) for o in kept]
    return " ".join(["python -m litlab.train", *run, start, run_dir_override(run_dir)])
