"""The output folders a command names, checked before any work: writable, not a file where a
run's folder goes, not an earlier run's or sweep's (litlab never writes over one), and held by
one command at a time. That hold also tells a running run from a killed one (``recorded_status``)."""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

try:
    import fcntl
except ImportError:  # not on Windows: run folders are then not locked
    fcntl = None

from litlab.errors import LitlabError


def check_run_folders(cfg: DictConfig, key: str, multirun: bool, config_name: str) -> None:
    """The run's (or sweep's) output folder ``key`` and ``paths.data_dir`` of a composed config."""
    try:
        out = OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        out = None  # depends on values only known inside the run; Hydra reports it there
    check_data_dir(cfg)
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
            raise _in_use(Path(out), key)  # its run goes on: not one to resume or to be told "already holds a run"
        if not multirun:
            check_not_running_elsewhere(Path(out), key)
        if multirun and config_name == "train":
            check_new_sweep_dir(Path(out))
        # train resumes in its own folder with ckpt_path; eval's and predict's ckpt_path is what they read
        resuming = config_name == "train" and (_resumes_own_run(cfg.get("ckpt_path"), Path(out)) or
                                               resumes_unfinished_start(cfg.get("ckpt_path"), Path(out)))
        if config_name == "train" and not multirun and cfg.get("ckpt_path") == "last":
            _check_last(Path(out), key)
        if not multirun and (Path(out) / "metrics.json").exists() and not resuming and not _failed_attempt(
                Path(out), config_name):
            how = _how_to_go_on(Path(out), config_name)
            if config_name == "train" and cfg.get("ckpt_path") and _other_command(Path(out)) is None:
                own = _own_resume(Path(out))
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


def _record(run_dir: Path) -> dict:
    """The folder's ``metrics.json``; an empty dict where there is none or it cannot be read."""
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_start(run_dir: Path) -> str | None:
    """The checkpoint the latest start of the training run in ``run_dir`` began from, absolute:
    ``started_from`` of its ``metrics.json``, recorded as the start began (``training.train``),
    before any data is set up or Lightning restores the checkpoint. None for a run without one."""
    started = _record(run_dir).get("started_from")
    return str(started) if started else None


# the status of a run whose record says running but whose folder no command holds (``recorded_status``)
KILLED = "killed"
# what that status means, where a table shows it (the record names no error of its own)
KILLED_MEANS = "ended without recording its end: killed, out of memory or a power cut"

# how a start that ended before its work was done says so in its record, and where its resume command is
_UNFINISHED = {"interrupted": ("was interrupted", "its metrics.json's resume is the whole command"),
               "failed": ("failed", "the command it was started with, once the error its metrics.json records is "
                                    "mended"),
               KILLED: ("was killed (its metrics.json still says running, and no command runs in it)",
                        "the command it was started with, in its .hydra/overrides.yaml")}


def recorded_status(run_dir: Path, record: dict | None = None) -> str | None:
    """The ``status`` of the run in ``run_dir`` (its ``metrics.json``, or ``record`` already read
    from it), or ``KILLED`` where it says ``running`` and no command holds the folder
    (``is_running``): a run killed before it could record its end (SIGKILL, the out-of-memory
    killer, a power cut) said running forever, and could not be resumed as a stopped one. Only a
    record that says running is probed, and only on the machine it names (``running_elsewhere``);
    where that cannot be told, it stays running."""
    record = _record(run_dir) if record is None else record
    status = record.get("status")
    if status == "running" and running_elsewhere(record) is None and is_running(run_dir) is False:
        return KILLED
    return status


def running_elsewhere(record: dict) -> str | None:
    """The machine that a record saying running names (``host``, which ``run_files.start_metrics``
    writes), where that is not this one: a folder's lock on a network file system (NFS, Lustre)
    may be seen only by the machine that took it, so from another one a run working there would
    read as killed, and its folder be taken for a resume. None for this machine, and for a record
    without a host (litlab before it wrote one), which only the lock can tell."""
    host = record.get("host")
    return str(host) if host and host != socket.gethostname() else None


def check_not_running_elsewhere(run_dir: Path, key: str) -> None:
    """Refuses a folder whose record says its run is running on another machine
    (``running_elsewhere``): its lock may not be seen from here (NFS, Lustre), so ``is_running``
    found none, and ``ckpt_path=last`` resumed that run here while it went on there, both writing
    the same checkpoints. Only that machine can tell whether it still runs; a record edited by hand
    is the way out where that machine is gone."""
    record = _record(run_dir)
    host = running_elsewhere(record) if record.get("status") == "running" else None
    if host is None:
        return
    raise LitlabError(
        f"{key}={run_dir} is in use by another machine: its metrics.json says its run is running on {host} (pid "
        f"{record.get('pid', 'unknown')}), and a lock there cannot be seen from {socket.gethostname()}. Run this "
        f"command on {host}, which can tell whether that run still works there or was killed, or choose another "
        f"folder. If {host} is gone for good and the run ended with it, set \"status\": \"killed\" in "
        f"{run_dir / 'metrics.json'} and run this command again.")


def unfinished_start(run_dir: Path) -> str | None:
    """The checkpoint (another run's) that the training run in ``run_dir`` started from, where that
    start was interrupted, failed or was killed before it wrote a checkpoint of its own
    (``recorded_start``). None for any other folder."""
    if has_checkpoint(run_dir) or recorded_status(run_dir) not in _UNFINISHED:
        return None
    return recorded_start(run_dir)


def _how_it_ended(run_dir: Path) -> tuple[str, str]:
    """How the ``unfinished_start`` of ``run_dir`` ended (``was interrupted``, ``failed``) and where
    the command that resumes it is, for messages. Only for a folder that has one, whose status is
    therefore one of ``_UNFINISHED``."""
    return _UNFINISHED[recorded_status(run_dir)]


def _own_resume(run_dir: Path) -> str | None:
    """The ``ckpt_path`` that resumes the run in ``run_dir``: the checkpoint its unfinished start
    began from, or ``last`` where it wrote one of its own; None where nothing resumes it."""
    started = unfinished_start(run_dir)
    if started is not None:
        return f"ckpt_path={started}, the checkpoint it started from"
    return "ckpt_path=last" if has_checkpoint(run_dir) else None


def resumes_unfinished_start(ckpt_path, run_dir: Path) -> bool:
    """Whether ``ckpt_path`` is the checkpoint the run in ``run_dir`` started from and was stopped
    before its own first one (``unfinished_start``): the command it was started with, which an
    interrupted run's record advises. It resumes that run in its folder as ``ckpt_path=last`` does
    one with a checkpoint of its own (the earlier start's record is kept in ``.hydra/start-<n>/``,
    its logs from the checkpoint's step on are dropped); it was refused as another run's
    checkpoint, and ``ckpt_path=last`` found none."""
    started = unfinished_start(run_dir)
    if not ckpt_path or str(ckpt_path) == "last" or started is None:
        return False
    return Path(ckpt_path).absolute().resolve() == Path(started).resolve()


# what to give instead of ckpt_path=last where the folder holds no run to resume
LAST_NEEDS_A_RUN = ("Pass hydra.run.dir=outputs/runs/<run> with the run's folder, or ckpt_path=PATH with a "
                    "checkpoint file.")


def _check_last(run_dir: Path, key: str) -> None:
    """``ckpt_path=last`` resumes from ``<run_dir>/checkpoints/last.ckpt``. Without that file the run
    failed ("last.ckpt does not exist") only once torch was imported (seconds), after Hydra had made
    the folder (or rewritten the record of an existing one) and marked it failed. Refused here: a
    folder that does not exist or holds no run, and a run that stopped (or was killed) before its
    first checkpoint, which the checkpoint an ``unfinished_start`` began from resumes. A run killed
    after writing last.ckpt resumes from it."""
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return
    if not run_dir.is_dir():
        raise LitlabError(f"ckpt_path=last resumes the run in the folder given by hydra.run.dir, and {key}={run_dir} "
                          f"does not exist. {LAST_NEEDS_A_RUN}")
    started = unfinished_start(run_dir)
    if started is not None:
        ended, command = _how_it_ended(run_dir)
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
    raise LitlabError(f"ckpt_path=last: {run_dir} holds no checkpoint. {_how_to_go_on(run_dir, 'train')}.")


def _failed_attempt(run_dir: Path, config_name: str) -> bool:
    """Whether ``run_dir`` holds a failed eval or predict of the same command: a second try may
    take its folder (a training run, failed or not, keeps its own: it resumes with ckpt_path)."""
    if config_name == "train":
        return False
    record = _record(run_dir)
    return record.get("status") == "failed" and record.get("task") == config_name


def take_failed_attempt(run_dir: Path, config_name: str | None) -> None:
    """Where this command (a retry) takes a folder its failed try left (``_failed_attempt``), the
    retry's record begins afresh: records of eval and predict are merged into
    (``update_metrics``), and a retry that completed kept the first try's ``error`` next to its
    ``status: completed``, while one that failed again kept the first try's record whole (not
    written by this process: ``run_files.written_here``)."""
    if config_name and _failed_attempt(run_dir, config_name):
        (run_dir / "metrics.json").unlink(missing_ok=True)


def _how_to_go_on(run_dir: Path, config_name: str) -> str:
    """What to do instead of starting a run in ``run_dir``, which holds one."""
    if config_name != "train":
        return "Choose a new folder (or leave hydra.run.dir out: each run gets its own)"
    other = _other_command(run_dir)
    if other is not None:  # no training run: "stopped before its first checkpoint" was false of it
        return (f"It holds the results of python -m litlab.{other} (its metrics.json says task: {other}), not a "
                f"training run, so there is nothing to resume there: choose a new folder (or leave hydra.run.dir "
                f"out: each run gets its own)")
    started = unfinished_start(run_dir)
    if started is not None:
        ended, command = _how_it_ended(run_dir)
        return (f"It {ended} before its first checkpoint; resume it from the checkpoint it started from with "
                f"ckpt_path={started} ({command}), or choose a new folder")
    if not has_checkpoint(run_dir):  # stopped or failed before its first checkpoint
        return (f"It stopped before its first checkpoint, so it cannot be resumed: choose a new folder, or delete "
                f"{run_dir} to start over there")
    return "Resume it with ckpt_path=last, or choose a new folder"


def _other_command(run_dir: Path) -> str | None:
    """The litlab command other than train whose run ``run_dir`` holds: its metrics.json's
    ``task`` where that is one of litlab's entry configs (eval, predict, lr_find). None for a
    training run, also one whose early failure recorded a ``task_name`` of the user's own."""
    from litlab.config_flags import CONF_DIR  # not at the top: config_flags imports this module

    task = _record(run_dir).get("task")
    if not isinstance(task, str) or task == "train" or not task.isidentifier():
        return None
    return task if (CONF_DIR / f"{task}.yaml").is_file() else None


# run folders this process holds (``_folder_id`` -> the open lock file), for as long as it runs: by
# the folder itself, which a path with ``..`` or through a symbolic link names too (Hydra's
# output_dir is the normalised path), so that no second open of it is locked against the first
_held: dict[tuple[int, int], int] = {}


def _folder_id(folder: Path | int) -> tuple[int, int] | None:
    """The folder itself (a path to it, or an open file of it): its device and inode, the same by
    every path that leads to it. None where there is no such folder (yet)."""
    try:
        st = os.fstat(folder) if isinstance(folder, int) else os.stat(folder)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def holds(run_dir: Path) -> bool:
    """Whether this process holds ``run_dir`` (``hold_run_dir``), by whichever path it is named."""
    folder = _folder_id(run_dir)
    return folder is not None and folder in _held


def hold_run_dir(run_dir: Path, key: str | None) -> None:
    """Takes ``run_dir`` for this process: an exclusive lock on the folder itself (no file is
    written into it), released when the process ends. Two commands started at once into one folder
    both passed the check for an earlier run and wrote over each other; the second is refused now.
    ``key``: the setting that names the folder, for messages; None for a sweep's job folder, which
    no setting names alone."""
    if fcntl is None:
        return
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError as e:  # what check_writable did not foresee (a folder made meanwhile, a full disk)
        raise LitlabError(f"{_named(run_dir, key)} cannot be made into the run's folder ({e.strerror or e}). "
                          f"Choose another folder with {key or 'hydra.sweep.dir'}=DIR.") from None
    folder = _folder_id(fd)
    # held already, maybe by another path to it: a second lock would be refused; None (fstat failed):
    # nothing to hold it by, and _held[None] would make every later folder without one read as held
    if folder is None or folder in _held:
        os.close(fd)  # an open file without a lock: closing it leaves the held one's lock in place
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in _HELD:
            raise _in_use(run_dir, key) from None
        return  # a file system without locks (ENOLCK): the folder goes unlocked, as without fcntl
    _held[folder] = fd


# flock's errors for a lock another open file holds; any other (ENOLCK, EINVAL) means no locks there
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _in_use(run_dir: Path, key: str | None) -> LitlabError:
    return LitlabError(f"{_named(run_dir, key)} is in use: another litlab command is running in it now. Wait for "
                       f"it to end, or choose another folder.")


def _named(run_dir: Path, key: str | None) -> str:
    """``run_dir`` as messages name it: by the setting that gives it, or as a sweep's job folder (a
    job's folder is not ``hydra.sweep.dir`` itself, but a folder inside it)."""
    return f"{key}={run_dir}" if key else f"the job's folder {run_dir}"


def is_running(run_dir: Path) -> bool | None:
    """Whether a litlab command runs in ``run_dir`` now: True where one holds its lock
    (``hold_run_dir``, this process's own included), False where none does, None where that cannot
    be told (no fcntl, a file system without locks, a folder that cannot be opened). One open and a
    shared, non-blocking flock, let go at once: two readers never block each other."""
    if fcntl is None:
        return None
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _folder_id(fd) in _held:
            return True
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return True if e.errno in _HELD else None
    finally:
        os.close(fd)  # closing lets go of the probe's own lock
    return False


# the folders (``_folder_id``) hold_for_run took, which the next job of an in-process sweep lets go
_taken_for_runs: list[tuple[int, int]] = []


def hold_for_run(run_dir: Path, key: str | None) -> None:
    """Holds ``run_dir`` while the command's run (a single run, or one job of a sweep) works in it,
    so that ``recorded_status`` can tell a running run from one killed before it could record its
    end. A folder ``check_run_folders`` took is held already; one of an earlier job of a sweep in
    this process is let go (hundreds of jobs would each keep a file open), its record written by
    then. For rank 0 only: the other ranks of a run work in rank 0's folder."""
    folder = _folder_id(run_dir)  # None for a folder not made yet: every earlier one is let go
    for earlier in [f for f in _taken_for_runs if f != folder]:
        _taken_for_runs.remove(earlier)
        fd = _held.pop(earlier, None)
        if fd is not None:
            os.close(fd)  # its lock goes with it
    if folder is not None and folder in _held:
        return
    hold_run_dir(Path(run_dir), key)
    folder = _folder_id(run_dir)
    if folder is not None and folder in _held:
        _taken_for_runs.append(folder)
