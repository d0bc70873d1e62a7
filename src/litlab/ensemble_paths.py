"""The members of an ensemble given to ``python -m litlab.eval``, checked without torch.

``ckpt_path=[A,B,C]`` lists checkpoints or run folders (a run folder means its
``checkpoints/best.ckpt``, as ``model.init_from`` reads one: ``init_from_path.folder_checkpoints``);
``ckpt_path=outputs/multiruns/<ts>`` is a sweep folder, whose job folders' ``best.ckpt`` are the
members in job-number order. A job without one (it failed or was killed before its first
checkpoint) is named in the log and skipped; a sweep with none is refused. Each member then gets
every check eval gives one checkpoint (``eval.check_before_loading``), before torch is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from litlab.checkpoint_record import stored_run_config
from litlab.device_counts import known_device_count
from litlab.distributed.ranks import started_by_launcher
from litlab.errors import LitlabError
from litlab.init_from_path import folder_checkpoint
from litlab.tuning.temperature_setting import checkpoint_fingerprint

log = logging.getLogger(__name__)


def is_ensemble(value: object) -> bool:
    """Whether ``ckpt_path``'s value asks for an ensemble: a list, or a sweep folder."""
    return isinstance(value, (list, tuple, ListConfig)) or (isinstance(value, str) and is_sweep_folder(Path(value)))


def sweep_jobs(folder: Path) -> list[Path]:
    """The job folders of a sweep folder (``hydra.sweep.subdir``: the job number), in job-number order."""
    jobs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: int(p.name))


def is_sweep_folder(folder: Path) -> bool:
    """A folder Hydra made for a sweep: its ``multirun.yaml``, or job folders ``0/``, ``1/``, ... of runs."""
    try:
        return folder.is_dir() and ((folder / "multirun.yaml").is_file() or bool(sweep_jobs(folder)))
    except OSError:
        return False


def member_path(value: object) -> Path:
    """One listed member as a path: a run folder means its ``checkpoints/best.ckpt`` (or the
    ``best.ckpt`` of a ``checkpoints/`` folder); a file is checked later as eval checks any."""
    path = Path(str(value))
    if not path.is_dir():
        return path
    found = folder_checkpoint(path)
    if found is not None:
        return found
    if is_sweep_folder(path):
        raise LitlabError(f"ckpt_path lists {path}, a sweep folder: give it alone (ckpt_path={path}) to take every "
                          f"job's best.ckpt, or list the job folders or checkpoints to combine.")
    raise LitlabError(f"ckpt_path lists {path}, a folder without a checkpoints/best.ckpt. List litlab run folders "
                      f"(outputs/runs/<run>, whose checkpoints/best.ckpt is read) or checkpoint files.")


def sweep_members(folder: Path, tell: bool = False, use: str = "evaluate") -> list[Path]:
    """The ``best.ckpt`` of every job of the sweep ``folder``, in job-number order; a job without
    one is skipped, named in the log where ``tell`` (the run, not the command line's check before
    it); none at all is refused, saying there is no model to ``use`` (the command's verb)."""
    members, skipped = [], []
    for job in sweep_jobs(folder):
        found = folder_checkpoint(job)
        (members if found is not None else skipped).append(found or job)
    for job in skipped if tell else []:
        log.warning("ensemble: skipping job %s of the sweep: it has no checkpoints/best.ckpt (it failed, or was "
                    "stopped before its first checkpoint)", job)
    if not members:
        jobs = f"none of its {len(skipped)} job folders has" if skipped else "it has no job folders (0/, 1/, ...) with"
        raise LitlabError(f"ckpt_path={folder} is a sweep folder, but {jobs} a checkpoints/best.ckpt, so there is no "
                          f"model to {use}. Give the folder of a sweep whose jobs trained, or list checkpoints: "
                          f"'ckpt_path=[A,B]'.")
    return members


def ensemble_members(value: object, tell: bool = False, use: str = "evaluate") -> list[Path]:
    """The member checkpoints ``ckpt_path`` names (a list, or a sweep folder); at least one.
    ``use``: what the command does with them, for a sweep without any (``sweep_members``)."""
    if isinstance(value, str):
        return sweep_members(Path(value), tell, use)
    listed = list(value)
    if not listed:
        raise LitlabError("ckpt_path=[] lists no checkpoint. List the checkpoints or run folders of the ensemble: "
                          "'ckpt_path=[outputs/runs/<a>,outputs/runs/<b>]', or give a sweep folder.")
    members = [member_path(v) for v in listed]
    seen = [str(p.resolve()) for p in members]
    twice = next((str(p) for i, p in enumerate(members) if seen[i] in seen[:i]), None)
    if twice is not None:
        raise LitlabError(f"ckpt_path lists {twice} twice: an ensemble averages different models. List each once.")
    return members


def check_different_checkpoints(members: list[Path]) -> None:
    """No checkpoint twice under two paths (a copy): it would be weighted twice in the average.
    Told without torch (the sha256 of each file, kept for the members' records)."""
    seen: dict[str, Path] = {}
    for path in members:
        digest = checkpoint_fingerprint(path)["ckpt_sha256"]
        if digest in seen:
            raise LitlabError(f"The ensemble's members {seen[digest]} and {path} are the same checkpoint (the same "
                              f"sha256, {digest[:16]}...): one model under two paths, which the average would weight "
                              f"twice. List each model once.")
        seen[digest] = path


def member_cfg(cfg: DictConfig, path: Path) -> DictConfig:
    """Eval's config for one member: the same command line, ``ckpt_path`` that member's."""
    one = cfg.copy()
    OmegaConf.update(one, "ckpt_path", str(path), force_add=True)
    return one


def check_one_process(cfg: DictConfig) -> None:
    """An ensemble is scored in one process (its members one after another): refused up front
    under DDP (``trainer=ddp_cpu``, ``trainer.devices`` other than 1, torchrun or SLURM)."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if known_device_count(devices) != 1 or nodes not in (1, None) or started_by_launcher():
        raise LitlabError(f"An ensemble (ckpt_path given as a list or a sweep folder) is evaluated in one process, and "
                          f"trainer.devices={devices}, trainer.num_nodes={nodes} "
                          + ("may ask for several processes (auto)" if str(devices) == "auto" else "asks for several")
                          + " (or the command was started by torchrun or SLURM). Give trainer.devices=1 (e.g. "
                          "trainer=default); a test split is scored in seconds per member.")


def check_val_folds(members: list[Path], split: str) -> None:
    """``split=val`` with members trained on different folds (or other data): each has its own
    validation split, so there is no one split to average over."""
    if split != "val":
        return
    seen: dict[tuple, Path] = {}
    for path in members:
        data = (stored_run_config(path) or {}).get("data") or {}
        key = (data.get("folds"), data.get("fold", 0)) if isinstance(data, dict) else (None, 0)
        if seen and key not in seen:
            first_key, first = next(iter(seen.items()))
            raise LitlabError(f"split=val: {first} validates on data.folds={first_key[0]} data.fold={first_key[1]} "
                              f"and {path} on data.folds={key[0]} data.fold={key[1]}, so each member has a different "
                              f"validation split (each fold model's val split is the fold it held out), and their "
                              f"probabilities cannot be averaged per sample. Score the ensemble on split=test, which "
                              f"the members share.")
        seen.setdefault(key, path)


def check_ensemble_before_loading(cfg: DictConfig, check_member, tell: bool = False) -> tuple[str, list[Path]]:
    """Every check of an ensemble that needs no torch: the members (``ensemble_members``), each
    given ``check_member`` (eval's ``check_before_loading``), one process, and ``split=val`` only
    with members sharing a validation split. Returns (split, members)."""
    members = ensemble_members(cfg.ckpt_path, tell)
    check_one_process(cfg)
    split = "test"
    for path in members:
        split = check_member(member_cfg(cfg, path))
    check_val_folds(members, split)
    return split, members
