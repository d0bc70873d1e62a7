"""The output folders a command names, checked before any work: writable, not a file where a
run's folder goes, not an earlier run's or sweep's (litlab never writes over one), and held by
one command at a time."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

try:
    import fcntl
except ImportError:  # not on Windows: run folders are then not locked
    fcntl = None

from litlab.errors import LitlabError


def check_run_folders(cfg: DictConfig, key: str, overrides: list[str], multirun: bool, config_name: str) -> None:
    """The run's (or sweep's) output folder ``key`` and ``paths.data_dir`` of a composed config."""
    try:
        out = OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        out = None  # depends on values only known inside the run; Hydra reports it there
    try:
        data_dir = OmegaConf.select(cfg, "paths.data_dir")
    except OmegaConfBaseException:
        data_dir = None
    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise LitlabError(f"paths.data_dir={data_dir} is a file, not a folder; datasets are kept (and the digits "
                          f"written) in that folder. Give a folder with paths.data_dir=DIR.")
    if out:
        check_writable(Path(out), key)
        for name in ("checkpoints", ".hydra", "tensorboard", "csv", "export", "compressed"):
            if (Path(out) / name).exists() and not (Path(out) / name).is_dir():
                raise LitlabError(f"{key}={out} holds a file named {name} where the run writes its {name}/ folder. "
                                  f"Move that file, or choose another folder with {key}=DIR.")
        if multirun and config_name == "train":
            check_new_sweep_dir(Path(out))
        # train resumes in its own folder with ckpt_path; eval's and predict's ckpt_path is what they read
        resuming = config_name == "train" and _resumes_own_run(cfg.get("ckpt_path"), Path(out))
        if not multirun and (Path(out) / "metrics.json").exists() and not resuming and not _failed_attempt(
                Path(out), config_name):
            how = _how_to_go_on(Path(out), config_name)
            if config_name == "train" and cfg.get("ckpt_path"):
                how = (f"ckpt_path={cfg.ckpt_path} is a checkpoint of another run, and resuming it here would mix the "
                       f"two runs' checkpoints and logs. Resume the other run in a new folder (leave {key} out), or "
                       f"this folder's own run with ckpt_path=last")
            raise LitlabError(f"{key}={out} already holds a run. {how}; litlab does not write over a run.")
        if not multirun and any(a.startswith(("hydra.run.dir=", "+hydra.run.dir=", "++hydra.run.dir="))
                                for a in overrides):
            hold_run_dir(Path(out), key)  # a folder named twice at once: the second start is refused


def check_writable(path: Path, key: str) -> None:
    """The output folder (or its nearest existing parent) must be a folder this process can write."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    problem = None if existing.is_dir() else f"{existing} is a file, not a folder"
    if problem is None:
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as e:
            problem = f"{existing} is not writable ({e.strerror})"
    if problem:
        raise LitlabError(f"{key}={path} cannot hold the run's outputs: {problem}. Choose another folder "
                          f"with {key}=DIR (or paths.log_dir=DIR).")


def check_new_sweep_dir(path: Path) -> None:
    """A sweep writes its jobs into ``0/``, ``1/``, ...: into the folder of an earlier sweep it would
    replace that sweep's results job by job and mix the two in ``summarize``."""
    jobs = sorted({p.parent.name for p in path.glob("*/metrics.json")}) if path.is_dir() else []
    if jobs or (path / "multirun.yaml").exists() or (path / "optimization_results.yaml").exists():
        raise LitlabError(
            f"hydra.sweep.dir={path} already holds a sweep ({len(jobs)} job(s) with results). Choose a new folder "
            f"(or leave hydra.sweep.dir out: each sweep gets its own timestamped one); litlab does not write over "
            f"finished runs."
        )


def _resumes_own_run(ckpt_path, run_dir: Path) -> bool:
    """Whether ``ckpt_path`` continues the run in ``run_dir``: ``last``, or a checkpoint inside it."""
    if not ckpt_path:
        return False
    if str(ckpt_path) == "last":
        return True
    return Path(ckpt_path).absolute().resolve().is_relative_to(run_dir.absolute().resolve())


def _failed_attempt(run_dir: Path, config_name: str) -> bool:
    """Whether ``run_dir`` holds a failed eval or predict of the same command: a second try may
    take its folder (a training run, failed or not, keeps its own: it resumes with ckpt_path)."""
    if config_name == "train":
        return False
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("status") == "failed" and record.get("task") == config_name


def _how_to_go_on(run_dir: Path, config_name: str) -> str:
    """What to do instead of starting a run in ``run_dir``, which holds one."""
    if config_name != "train":
        return "Choose a new folder (or leave hydra.run.dir out: each run gets its own)"
    if not any((run_dir / "checkpoints").glob("*.ckpt")):  # stopped or failed before its first epoch's end
        return (f"It stopped before its first checkpoint, so it cannot be resumed: choose a new folder, or delete "
                f"{run_dir} to start over there")
    return "Resume it with ckpt_path=last, or choose a new folder"


# run folders this process holds (path -> the open lock file), for as long as it runs
_held: dict[str, int] = {}


def hold_run_dir(run_dir: Path, key: str) -> None:
    """Takes ``run_dir`` for this process: an exclusive lock on the folder itself (no file is
    written into it), released when the process ends. Two commands started at once into one folder
    both passed the check for an earlier run and wrote over each other; the second is refused now."""
    path = str(Path(run_dir).absolute())
    if path in _held or fcntl is None:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise LitlabError(f"{key}={run_dir} is in use: another litlab command is running in it now. Wait for it "
                          f"to end, or choose another folder.") from None
    _held[path] = fd
