"""The output folders a command names, checked before any work: writable, not a file where a
run's folder goes, not an earlier run's or sweep's (litlab never writes over one), and held by
one command at a time (``run_lock``). A refusal says how the folder's run ended and how it goes
on, from its metrics.json read once for all the checks of the folder (``FolderRecord``)."""

from __future__ import annotations

import errno
import os
import shlex
import socket
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.errors import LitlabError
from litlab.run_lock import (KILLED, hold_run_dir, holds, in_use, is_running, read_record, recorded_status,
                             running_elsewhere)


def check_run_folders(cfg: DictConfig, key: str, multirun: bool, config_name: str,
                      jobs: list[DictConfig] = ()) -> None:
    """The run's (or sweep's) output folder ``key`` and ``paths.data_dir`` of a composed config.
    ``jobs``: every composed job of a sweep (``cfg`` is one of them), each checked for ``ckpt_path=last``:
    ``ckpt_path=last,null`` is refused as ``null,last`` is, not only when the last job resumes."""
    try:
        out = OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        out = None  # depends on values only known inside the run; Hydra reports it there
    check_data_dir(cfg)
    if multirun and config_name == "train" and any(c.get("ckpt_path") == "last" for c in (cfg, *jobs)):
        raise _sweep_resume_refused(cfg, key)
    if out:
        log_dir = select_or_none(cfg, "paths.log_dir")
        if log_dir and Path(out).is_relative_to(log_dir) and not os.path.lexists(log_dir):
            # the default outputs/runs/<time>: a problem of paths.log_dir (a name too long, a file in
            # the way) is named as its own; an existing one is the run folder's to pass (a read-only
            # outputs/ may hold a writable run folder)
            check_writable(Path(log_dir), "paths.log_dir")
        check_writable(Path(out), key)
        for name in ("checkpoints", ".hydra", "tensorboard", "csv", "export", "compressed"):
            if (Path(out) / name).exists() and not (Path(out) / name).is_dir():
                raise LitlabError(f"{key}={out} holds a file named {name} where the run writes its {name}/ folder. "
                                  f"Move that file, or choose another folder with {key}=DIR.")
        if not holds(Path(out)) and is_running(Path(out)):
            raise in_use(Path(out), key)  # its run goes on: not one to resume or to be told "already holds a run"
        folder = FolderRecord(Path(out))  # its metrics.json, read (once) by the first check that asks
        if not multirun:
            _check_not_running_elsewhere(folder, key)
        if multirun and config_name == "train":
            check_new_sweep_dir(Path(out))
        # train resumes in its own folder with ckpt_path; eval's and predict's ckpt_path is what they read
        resuming = config_name == "train" and (_resumes_own_run(cfg.get("ckpt_path"), Path(out)) or
                                               _resumes_unfinished_start(cfg.get("ckpt_path"), folder))
        if config_name == "train" and not multirun and cfg.get("ckpt_path") == "last":
            _check_last(folder, key)
        if not multirun and (Path(out) / "metrics.json").exists() and not resuming and not _failed_attempt(
                folder, config_name):
            how = _how_to_go_on(folder, config_name)
            if config_name == "train" and cfg.get("ckpt_path") and _other_command(folder) is None:
                own = _own_resume(folder)
                own = (f", or this folder's own run with {own}" if own is not None else
                       "; this folder's run stopped before its first checkpoint and cannot be resumed")
                how = (f"ckpt_path={cfg.ckpt_path} is a checkpoint of another run, and resuming it here would mix the "
                       f"two runs' checkpoints and logs. Resume the other run in a new folder (leave {key} out){own}")
            raise LitlabError(f"{key}={out} already holds a run. {how}; litlab does not write over a run.")
        if not reads_the_clock(cfg, key):
            hold_run_dir(Path(out), key)  # a folder named twice at once: the second start is refused


def reads_the_clock(cfg: DictConfig, key: str) -> bool:
    """Whether the folder ``key`` of ``cfg`` (``hydra.run.dir``, ``hydra.sweep.dir``) is timestamped
    (``config_values.reads_clock``), from the command line or a config file. Any other folder is
    held by the checks (``hold_run_dir``), before Hydra writes its ``.hydra/`` record there: a second
    start into it was refused only after that had replaced the running one's. A timestamped one is
    held by the run (``hold_for_run``): the checks' clock is not the run's, and their folder not its."""
    from litlab.config_values import reads_clock  # not at the top: config_values imports this module

    tree = OmegaConf.to_container(cfg, resolve=False)
    node = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return reads_clock(tree, node)


def check_writable(path: Path, key: str) -> None:
    """The output folder (or its nearest existing parent) must be a folder this process can write."""
    problem = path_problem(Path(path), writable=True)
    if problem:
        also = "" if key == "paths.log_dir" else " (or paths.log_dir=DIR)"
        raise LitlabError(f"{key}={path} cannot hold the run's outputs: {problem}. Choose another folder "
                          f"with {key}=DIR{also}.")


def check_data_dir(cfg: DictConfig) -> None:
    """``paths.data_dir`` must be a folder or one litlab can make: one that is a file, under a file, a
    symbolic link to nowhere or with a name too long failed in a traceback as the digits were written.
    It must be writable only where the digits are still to be written into it (a shared, read-only
    copy of them is fine)."""
    data_dir = select_or_none(cfg, "paths.data_dir")
    if not data_dir:
        return
    if os.path.isfile(data_dir):
        raise LitlabError(f"paths.data_dir={data_dir} is a file, not a folder; datasets are kept (and the digits "
                          f"written) in that folder. Give a folder with paths.data_dir=DIR.")
    problem = path_problem(Path(data_dir), writable=_writes_digits_into(cfg, Path(data_dir)))
    if problem:
        raise LitlabError(f"paths.data_dir={data_dir} cannot hold the datasets litlab prepares (the digits are "
                          f"written into it): {problem}. Give another folder with paths.data_dir=DIR.")


def _writes_digits_into(cfg: DictConfig, data_dir: Path) -> bool:
    """Whether the run writes the digits tree inside ``data_dir`` (data=digits, not written there yet)."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or not str(data.get("_target_", "")).endswith("DigitsDataModule"):
        return False
    root = select_or_none(cfg, "data.root")
    return bool(root) and Path(root).absolute().is_relative_to(data_dir.absolute()) and not os.path.isfile(
        Path(root) / "split.json")


def path_problem(path: Path, writable: bool) -> str | None:
    """Why ``path`` cannot be (made into) a folder, or None. Each of these failed in a traceback from
    ``exists()`` or ``mkdir`` (Python 3.11 raises for a name too long, and takes a symbolic link to
    nowhere for a missing folder, which mkdir then cannot make); ``writable``: this process must be
    able to create files in it (or in its nearest existing parent, where it is made)."""
    existing = Path(path).absolute()
    while not os.path.lexists(existing):  # lexists, unlike Path.exists, never raises
        existing = existing.parent
    limit = name_limit(existing)
    for name in Path(path).absolute().parts:
        if len(os.fsencode(name)) > limit:
            return (f"the name {name} is too long: {len(os.fsencode(name))} bytes, where the file system allows at "
                    f"most {limit} per name")
    if os.path.islink(existing) and not os.path.exists(existing):
        what = "a loop of symbolic links" if _stat_errno(existing) == errno.ELOOP else "a target that does not exist"
        return f"{existing} is a symbolic link to {os.readlink(existing)}, {what}"
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    if writable:
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as e:
            return f"{existing} is not writable ({e.strerror})"
    return None


def _stat_errno(path: Path) -> int | None:
    """The errno of ``os.stat(path)`` (ELOOP for a loop of symbolic links), None where it succeeds."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno
    return None


def name_limit(path: Path) -> int:
    """The longest name (in bytes) the file system holding ``path`` (or its nearest existing
    parent) allows: 255 on most, and where it does not say."""
    folder = Path(path).absolute()
    while not os.path.isdir(folder) and folder != folder.parent:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # a link to nowhere, or not on POSIX
        return 255
    return limit if limit > 0 else 255  # -1: no limit known


def select_or_none(cfg: DictConfig, key: str):
    """The value of ``key``, or None where it is missing or resolves only inside the run (Hydra
    reports it there)."""
    try:
        return OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        return None


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


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` wrote a checkpoint of its own (any ``checkpoints/*.ckpt``)."""
    return any((run_dir / "checkpoints").glob("*.ckpt"))


@dataclass(frozen=True)
class FolderRecord:
    """The ``metrics.json`` of the folder ``run_dir`` as one check of it sees it: read at the first
    question asked and kept for the rest. Where each of a refusal's helpers (where the run started
    from, how it ended, which command wrote it) read the file itself, one start read it up to seven
    times, and two reads could disagree where a run wrote its record in between."""

    run_dir: Path

    @cached_property
    def fields(self) -> dict:
        """The record (``run_lock.read_record``): empty where there is none or it cannot be read."""
        return read_record(self.run_dir)

    @cached_property
    def status(self) -> str | None:
        """Its ``status``; ``killed`` where it says running and no command holds the folder
        (``run_lock.recorded_status``, which probes the lock only for such a record)."""
        return recorded_status(self.run_dir, self.fields)


def recorded_start(run_dir: Path) -> str | None:
    """The checkpoint the latest start of the training run in ``run_dir`` began from, absolute:
    ``started_from`` of its ``metrics.json``, recorded as the start began (``training.train``),
    before any data is set up or Lightning restores the checkpoint. None for a run without one."""
    return _started_from(FolderRecord(Path(run_dir)))


def _started_from(folder: FolderRecord) -> str | None:
    """``recorded_start`` of a folder whose record a check holds."""
    started = folder.fields.get("started_from")
    return str(started) if started else None


# how a start that ended before its work was done says so in its record, and where its resume command is
_UNFINISHED = {"interrupted": ("was interrupted", "its metrics.json's resume is the whole command"),
               "failed": ("failed", "the command it was started with, once the error its metrics.json records is "
                                    "mended"),
               KILLED: ("was killed (its metrics.json still says running, and no command runs in it)",
                        "the command it was started with, in its .hydra/overrides.yaml")}


def _check_not_running_elsewhere(folder: FolderRecord, key: str) -> None:
    """Refuses a folder whose record says its run is running on another machine
    (``running_elsewhere``): its lock may not be seen from here (NFS, Lustre), so ``is_running``
    found none, and ``ckpt_path=last`` resumed that run here while it went on there, both writing
    the same checkpoints. Only that machine can tell whether it still runs; a record edited by hand
    is the way out where that machine is gone."""
    record, run_dir = folder.fields, folder.run_dir
    host = running_elsewhere(record) if record.get("status") == "running" else None
    if host is None:
        return
    raise LitlabError(
        f"{key}={run_dir} is in use by another machine: its metrics.json says its run is running on {host} (pid "
        f"{record.get('pid', 'unknown')}), and a lock there cannot be seen from {socket.gethostname()}. Run this "
        f"command on {host}, which can tell whether that run still works there or was killed, or choose another "
        f"folder. If {host} is gone for good and the run ended with it, set \"status\": \"killed\" in "
        f"{run_dir / 'metrics.json'} and run this command again.")


def _unfinished_start(folder: FolderRecord) -> str | None:
    """The checkpoint (another run's) that the training run in the folder started from, where that
    start was interrupted, failed or was killed before it wrote a checkpoint of its own
    (``recorded_start``). None for any other folder."""
    if has_checkpoint(folder.run_dir) or folder.status not in _UNFINISHED:
        return None
    return _started_from(folder)


def _how_it_ended(folder: FolderRecord) -> tuple[str, str]:
    """How the ``_unfinished_start`` of the folder ended (``was interrupted``, ``failed``) and where
    the command that resumes it is, for messages. Only for a folder that has one, whose status is
    therefore one of ``_UNFINISHED``."""
    return _UNFINISHED[folder.status]


def _own_resume(folder: FolderRecord) -> str | None:
    """The ``ckpt_path`` that resumes the run in the folder: the checkpoint its unfinished start
    began from, or ``last`` where it wrote one of its own; None where nothing resumes it."""
    started = _unfinished_start(folder)
    if started is not None:
        return f"ckpt_path={started}, the checkpoint it started from"
    return "ckpt_path=last" if has_checkpoint(folder.run_dir) else None


def _resumes_unfinished_start(ckpt_path, folder: FolderRecord) -> bool:
    """Whether ``ckpt_path`` is the checkpoint the run in the folder started from and was stopped
    before its own first one (``_unfinished_start``): the command it was started with, which an
    interrupted run's record advises. It resumes that run in its folder as ``ckpt_path=last`` does
    one with a checkpoint of its own (the earlier start's record is kept in ``.hydra/start-<n>/``,
    its logs from the checkpoint's step on are dropped); it was refused as another run's
    checkpoint, and ``ckpt_path=last`` found none."""
    if not ckpt_path or str(ckpt_path) == "last":
        return False
    started = _unfinished_start(folder)
    return started is not None and Path(ckpt_path).absolute().resolve() == Path(started).resolve()


# what to give instead of ckpt_path=last where the folder holds no run to resume
LAST_NEEDS_A_RUN = ("Pass hydra.run.dir=outputs/runs/<run> with the run's folder, or ckpt_path=PATH with a "
                    "checkpoint file.")


def _check_last(folder: FolderRecord, key: str) -> None:
    """``ckpt_path=last`` resumes from ``<run_dir>/checkpoints/last.ckpt``. Without that file the run
    failed ("last.ckpt does not exist") only once torch was imported (seconds), after Hydra had made
    the folder (or rewritten the record of an existing one) and marked it failed. Refused here: a
    folder that does not exist or holds no run, and a run that stopped (or was killed) before its
    first checkpoint, which the checkpoint an ``_unfinished_start`` began from resumes. A run killed
    after writing last.ckpt resumes from it."""
    run_dir = folder.run_dir
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return
    if not run_dir.is_dir():
        raise LitlabError(f"ckpt_path=last resumes the run in the folder given by hydra.run.dir, and {key}={run_dir} "
                          f"does not exist. {LAST_NEEDS_A_RUN}")
    started = _unfinished_start(folder)
    if started is not None:
        ended, command = _how_it_ended(folder)
        raise LitlabError(f"ckpt_path=last: {run_dir} holds no checkpoint: its run started from ckpt_path={started} "
                          f"and {ended} before it wrote one of its own. Resume it from there with ckpt_path={started} "
                          f"({command}).")
    if not (run_dir / "metrics.json").exists():
        raise LitlabError(f"ckpt_path=last: {key}={run_dir} holds no run to resume (no metrics.json, no "
                          f"checkpoints/last.ckpt). {LAST_NEEDS_A_RUN}")
    others = sorted(str(p) for p in (run_dir / "checkpoints").glob("*.ckpt"))
    if others:  # last.ckpt removed, or a best.ckpt of a validation within the first epoch
        raise LitlabError(f"ckpt_path=last: {run_dir} holds no checkpoints/last.ckpt, only {', '.join(others)}. "
                          f"Resume from one of those with ckpt_path=PATH, or choose a new folder.")
    raise LitlabError(f"ckpt_path=last: {run_dir} holds no checkpoint. {_how_to_go_on(folder, 'train')}.")


def _sweep_resume_refused(cfg: DictConfig, key: str) -> LitlabError:
    """``ckpt_path=last`` in a sweep: each job resumes from ``checkpoints/last.ckpt`` of its own
    folder, and a sweep gives each job a new one (the folder of an earlier sweep is refused,
    ``check_new_sweep_dir``): every job failed ("last.ckpt does not exist") once torch was imported,
    then the sweep ("every job of this sweep failed"). Refused before any job, with how a sweep's
    jobs go on: each as a run of its own in its folder of the sweep."""
    out = select_or_none(cfg, key)
    where = shlex.quote(str(out)) if out and not reads_the_clock(cfg, key) else "SWEEP_DIR"
    return LitlabError(
        f"ckpt_path=last resumes a run in its own folder, and a sweep gives each of its jobs a new folder, which "
        f"holds no checkpoint: every job would fail. A sweep's jobs go on one by one, each as a run in its folder of "
        f"the sweep: python -m litlab.train <the job's overrides> ckpt_path=last hydra.run.dir={where}/<job> (an "
        f"interrupted job's metrics.json holds that command as resume, and python -m litlab.summarize {where} lists "
        f"the jobs with their overrides and the commands of those that never started).")


def _failed_attempt(folder: FolderRecord, config_name: str) -> bool:
    """Whether the folder holds a failed eval or predict of the same command: a second try may
    take it (a training run, failed or not, keeps its own: it resumes with ckpt_path)."""
    if config_name == "train":
        return False
    record = folder.fields
    return record.get("status") == "failed" and record.get("task") == config_name


def take_failed_attempt(run_dir: Path, config_name: str | None) -> None:
    """Where this command (a retry) takes a folder its failed try left (``_failed_attempt``), the
    retry's record begins afresh: records of eval and predict are merged into
    (``update_metrics``), and a retry that completed kept the first try's ``error`` next to its
    ``status: completed``, while one that failed again kept the first try's record whole (not
    written by this process: ``run_files.written_here``)."""
    if config_name and _failed_attempt(FolderRecord(Path(run_dir)), config_name):
        (run_dir / "metrics.json").unlink(missing_ok=True)


def _how_to_go_on(folder: FolderRecord, config_name: str) -> str:
    """What to do instead of starting a run in the folder, which holds one."""
    if config_name != "train":
        return "Choose a new folder (or leave hydra.run.dir out: each run gets its own)"
    other = _other_command(folder)
    if other is not None:  # no training run: "stopped before its first checkpoint" was false of it
        return (f"It holds the results of python -m litlab.{other} (its metrics.json says task: {other}), not a "
                f"training run, so there is nothing to resume there: choose a new folder (or leave hydra.run.dir "
                f"out: each run gets its own)")
    started = _unfinished_start(folder)
    if started is not None:
        ended, command = _how_it_ended(folder)
        return (f"It {ended} before its first checkpoint; resume it from the checkpoint it started from with "
                f"ckpt_path={started} ({command}), or choose a new folder")
    if not has_checkpoint(folder.run_dir):  # stopped or failed before its first checkpoint
        return (f"It stopped before its first checkpoint, so it cannot be resumed: choose a new folder, or delete "
                f"{folder.run_dir} to start over there")
    return "Resume it with ckpt_path=last, or choose a new folder"


def _other_command(folder: FolderRecord) -> str | None:
    """The litlab command other than train whose run the folder holds: its metrics.json's
    ``task`` where that is one of litlab's entry configs (eval, predict, lr_find). None for a
    training run, also one whose early failure recorded a ``task_name`` of the user's own."""
    from litlab.config_flags import CONF_DIR  # not at the top: config_flags imports this module

    task = folder.fields.get("task")
    if not isinstance(task, str) or task == "train" or not task.isidentifier():
        return None
    return task if (CONF_DIR / f"{task}.yaml").is_file() else None
