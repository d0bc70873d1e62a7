"""A resume that left out the run's overrides, refused with the command that resumes it.

``python -m litlab.train ckpt_path=last hydra.run.dir=RUN`` composes the default config, not the
run's: without the run's ``experiment=...`` or ``model=...`` it builds another net, which was
refused as "a different model" once the data was prepared and the net built, without saying what
the run was started with. The run's folder records it (``.hydra/overrides.yaml``, and the choices
Hydra made in ``.hydra/hydra.yaml``): where this command chooses another experiment, model or data
than the run, and its net (``model.net``) is not the checkpoint's, the refusal names the run's
overrides and the whole resume command. A command that chooses otherwise but builds the same net
(``model=mlp`` for a run of ``experiment=digits_mlp``) is left to the other checks, as are keys a
resume may change (``trainer.max_epochs``). Needs no torch: the checkpoint's config is read by
``checkpoint_record`` where the file is not loaded yet.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError
from litlab.resume_overrides import shown_value
from litlab.run_commands import record_words, recorded_overrides, run_dir_override

# the groups whose choice decides which net a run builds (an experiment chooses model and data)
GROUPS = ("experiment", "model", "data")


def earlier_record(run_dir: Path, overrides: list[str] | None) -> Path | None:
    """The config record of the run's latest start before this command: its ``.hydra/``, unless
    Hydra has already rewritten that with this command's ``overrides`` (within the run), in which
    case the copy made before (``reporting.run_files.keep_config_record``: the highest
    ``.hydra/start-<n>/``); None where there is none."""
    record = Path(run_dir) / ".hydra"
    if overrides is None or recorded_overrides(record) != overrides:
        return record if (record / "overrides.yaml").is_file() else None
    kept = [p for p in record.glob("start-*") if p.name[len("start-"):].isdigit()]
    return max(kept, key=lambda p: int(p.name[len("start-"):]), default=None)


def check_same_choices(cfg: DictConfig, run_dir: Path, record: Path | None, stored: dict | None,
                       choices: dict | None, path: Path) -> None:
    """Refuses ``ckpt_path=last`` for the run in ``run_dir`` (its checkpoint ``path``) where this
    command's ``choices`` of ``GROUPS`` (``hydra.runtime.choices``) differ from those of the run's
    ``record`` and its ``model.net`` from the checkpoint's config (``stored``); nothing where one
    is unknown."""
    old = _recorded_choices(record) if record is not None else None
    if old is None or not choices or not stored:
        return
    differ = [g for g in GROUPS if old.get(g) != choices.get(g)]
    net = ((stored.get("model") or {}) if isinstance(stored.get("model"), dict) else {}).get("net")
    try:
        here = OmegaConf.to_container(cfg.model.net, resolve=True)
    except Exception:  # a net this config cannot resolve yet: the net is compared once it is built
        return
    if not differ or net is None or here == net:
        return
    ours = " ".join(f"{g}={shown_value(choices.get(g))}" for g in differ)
    theirs = " ".join(f"{g}={shown_value(old.get(g))}" for g in differ)
    raise LitlabError(
        f"ckpt_path=last: {path} belongs to a different model than this command builds: it chooses {ours}, the "
        f"run {theirs} ({started_with(record, run_dir)}). A resume composes its config from its own overrides, "
        f"so it needs the run's; keys a resume may change (a larger trainer.max_epochs) may follow "
        f"them. The run's checkpoints and results are as they were.")


def command_choices(cfg: DictConfig) -> dict | None:
    """The group choices of this command (``hydra.runtime.choices``): the composed config's (tests
    compose with it), or the running Hydra job's; None outside both."""
    found = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if found is not None:
        return OmegaConf.to_container(found)
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.to_container(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else None


def check_choices_before_start(cfg: DictConfig) -> None:
    """``check_same_choices`` for the command line's composed ``cfg`` (with its ``hydra`` node), as
    it is checked before torch is imported and before Hydra rewrites the run's record: the run's
    own ``.hydra/`` is the one to compare with, and the checkpoint's config is read from the file
    without loading it (``checkpoint_record.stored_run_config``). ``ckpt_path=last`` only."""
    run_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None, throw_on_resolution_failure=False)
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None, throw_on_resolution_failure=False)
    if cfg.get("ckpt_path") != "last" or not run_dir or choices is None:
        return
    from litlab.checkpoint_record import stored_run_config

    path = run_checkpoint(Path(run_dir))
    stored = stored_run_config(path) if path.is_file() else None
    check_same_choices(cfg, Path(run_dir), earlier_record(Path(run_dir), None), stored,
                       OmegaConf.to_container(choices), path)


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint ``ckpt_path=last`` resumes the run in ``run_dir`` from: its ``last.ckpt``, or
    its ``best.ckpt`` where the run was killed while its first last.ckpt was being written (best.ckpt,
    written just before, is complete)."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    best = last.with_name("best.ckpt")
    return best if not last.is_file() and best.is_file() else last


def started_with(record: Path | None, run_dir: Path, ckpt_override: str = "ckpt_path=last") -> str:
    """``the run was started with: OVERRIDES; resume with python -m litlab.train ...``, from the
    run's ``record`` (``.hydra/``, or a start's copy of it); a pointer to the record where it
    cannot be read."""
    words = record_words(record) if record is not None else None
    if words is None:
        return f"its overrides are listed in {Path(run_dir) / '.hydra' / 'overrides.yaml'}"
    run = " ".join(shlex.quote(w) for w in words)
    command = " ".join(["python -m litlab.train", *map(shlex.quote, words), ckpt_override,
                        run_dir_override(run_dir)])
    return f"the run was started with: {run or '(no overrides)'}; resume with {command}"


def started_from(record: Path | None, run_dir: Path, ckpt_override: str, run_dir_word: str | None) -> str:
    """``The checkpoint is RUN's, which was started with: OVERRIDES; to start a run from it with that
    net, use python -m litlab.train ...``: for a new run started from another run's checkpoint
    (``ckpt_path=PATH``), whose command keeps ``run_dir_word`` (this command's ``hydra.run.dir=...``,
    where it gave one) and never names the other run's folder, which it would train in."""
    words = record_words(record) if record is not None else None
    if words is None:
        listed = Path(run_dir) / ".hydra" / "overrides.yaml"
        return f"The checkpoint is {run_dir}'s; that run's overrides are listed in {listed}"
    run = " ".join(shlex.quote(w) for w in words)
    command = " ".join(["python -m litlab.train", *map(shlex.quote, words), ckpt_override,
                        *([run_dir_word] if run_dir_word else [])])
    return (f"The checkpoint is {run_dir}'s, which was started with: {run or '(no overrides)'}; to start a run "
            f"from it with that net, use {command}")


def _recorded_choices(record: Path) -> dict | None:
    """The group choices Hydra made for the run of ``record`` (``hydra.yaml``'s ``runtime.choices``)."""
    try:
        found = yaml.safe_load((record / "hydra.yaml").read_text())
        choices = found["hydra"]["runtime"]["choices"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return choices if isinstance(choices, dict) else None
