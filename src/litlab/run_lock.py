"""The lock on a run's folder: one command at a time works in it, and the lock tells a running run
from one killed before it could record its end (``recorded_status``). An exclusive ``flock`` on the
folder itself (no file is written into it), taken by the checks before any work (``hold_run_dir``)
or by the run (``hold_for_run``), and let go when the process ends; a shared, non-blocking probe
reads it (``is_running``)."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: run folders are then not locked
    fcntl = None

from litlab.errors import LitlabError

# the status of a run whose record says running but whose folder no command holds (``recorded_status``)
KILLED = "killed"
# what that status means, where a table shows it (the record names no error of its own)
KILLED_MEANS = "ended without recording its end: killed, out of memory or a power cut"


def read_record(run_dir: Path) -> dict:
    """The folder's ``metrics.json``; an empty dict where there is none or it cannot be read."""
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_status(run_dir: Path, record: dict | None = None) -> str | None:
    """The ``status`` of the run in ``run_dir`` (its ``metrics.json``, or ``record`` already read
    from it), or ``KILLED`` where it says ``running`` and no command holds the folder
    (``is_running``): a run killed before it could record its end (SIGKILL, the out-of-memory
    killer, a power cut) said running forever, and could not be resumed as a stopped one. Only a
    record that says running is probed, and only on the machine it names (``running_elsewhere``);
    where that cannot be told, it stays running."""
    record = read_record(run_dir) if record is None else record
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
        made: list[tuple[Path, tuple[int, int] | None]] = []
        _make_folder(Path(run_dir), made)
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
            raise in_use(run_dir, key) from None
        _made.extend(made)  # nothing holds them: same inode and empty still tells the ones made here
        return  # a file system without locks (ENOLCK): the folder goes unlocked, as without fcntl
    _held[folder] = fd
    _made.extend(made)  # only once held: a folder another command took meanwhile is its, not this one's


# the folders hold_run_dir made and then held (each with its ``_folder_id``), outermost first: a
# command refused after its checks held its folder leaves none of them behind (``remove_made_folders``)
_made: list[tuple[Path, tuple[int, int] | None]] = []


def _make_folder(path: Path, made: list) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, one folder at a time, adding to ``made`` each
    folder this call made itself (not one that existed, nor one another process made meanwhile).
    As ``mkdir`` does, a ``..`` is taken as written: in ``a/new/../x`` it makes ``a/new`` (and
    ``x`` only if ``a/x`` is missing)."""
    if path.parent != path and not os.path.isdir(path.parent):
        _make_folder(path.parent, made)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    made.append((path, _folder_id(path)))


def remove_made_folders() -> None:
    """Undoes ``hold_run_dir``'s folders for a command refused after its checks held them: each
    folder it made is removed, innermost first, while it is still the folder made (the same
    device and inode) and empty (nothing has been written into it; a folder that holds anything
    stays, with everything in it, and so do the folders around it). A held folder is removed
    before its lock is let go, so no other command can have taken it in between."""
    while _made:
        path, made_id = _made.pop()
        if made_id is None or _folder_id(path) != made_id:
            continue
        try:
            path.rmdir()
        except OSError:
            _made.clear()  # not empty: the folders around it are not either
        fd = _held.pop(made_id, None)
        if fd is not None:
            os.close(fd)


# flock's errors for a lock another open file holds; any other (ENOLCK, EINVAL) means no locks there
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def in_use(run_dir: Path, key: str | None) -> LitlabError:
    """The error that refuses ``run_dir`` while another command holds it."""
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
    end. A folder ``run_folders.check_run_folders`` took is held already; one of an earlier job of
    a sweep in this process is let go (hundreds of jobs would each keep a file open), its record
    written by then. For rank 0 only: the other ranks of a run work in rank 0's folder."""
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
