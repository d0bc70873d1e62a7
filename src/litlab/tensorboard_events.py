"""TensorBoard event files written by the training thread itself, buffered, with no writer thread."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter as _TorchSummaryWriter
from torch.utils.tensorboard.writer import FileWriter

from litlab.errors import LitlabError

_FILE_NUMBERS = itertools.count()
# a buffer this full goes to disk whatever the time: ~1000 scalar events. Python allocates it
# whole when the file opens (at 1 MiB it was the largest Python allocation of a small run); a
# record larger than the buffer (an image) is written straight through.
_BUFFER_BYTES = 64 << 10


class EventFile:
    """One ``events.out.tfevents.*`` file, the records of TensorBoard's format in a buffered file.

    TensorBoard's own writer hands every event to a thread, which opens the file, appends the one
    record and closes it again: on a small model each logged step paid a thread wake-up and three
    system calls, and the thread's work competed with the step's kernels for the cores. Here an
    event is framed into the file's buffer by the calling thread (a memory copy) and the buffer
    reaches the disk in one write once ``flush_secs`` have passed since the last, when it holds
    ``_BUFFER_BYTES``, and at ``flush()`` and ``close()`` (also when the interpreter exits: Python
    flushes open files then).

    The same interface as TensorBoard's ``EventFileWriter`` (``add_event``, ``flush``, ``close``,
    ``reopen``, ``get_logdir``); the file name has its pattern (TensorBoard finds files by it),
    and an existing file is never overwritten.
    """

    def __init__(self, logdir: str, flush_secs: float = 5.0, filename_suffix: str = ""):
        self._logdir = str(logdir)
        self._suffix = filename_suffix
        self._flush_secs = float(flush_secs)
        self._lock = threading.Lock()
        self._file = None
        self._open()

    @contextlib.contextmanager
    def _disk(self):
        """A failed write (full disk, lost permissions) as one clear message naming the file."""
        try:
            yield
        except FileExistsError:
            raise
        except OSError as e:
            raise LitlabError(f"could not write TensorBoard events to {self.path} ({e.strerror or e}); the "
                              f"events written before are kept. Free space on that disk, choose another output "
                              f"folder (hydra.run.dir=DIR) or run without TensorBoard (logger=csv or "
                              f"logger=none).") from None

    def _open(self) -> None:
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_FILE_NUMBERS)}{self._suffix}")
        self.path = os.path.join(self._logdir, name)
        with self._disk():
            os.makedirs(self._logdir, exist_ok=True)
            self._file = open(self.path, "xb", buffering=_BUFFER_BYTES)
        self._records = RecordWriter(self._file)
        self._last_flush = time.monotonic()
        self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def get_logdir(self) -> str:
        return self._logdir

    def add_event(self, event: Event) -> None:
        with self._lock:
            if self._file is None:
                raise ValueError(f"TensorBoard event file {self.path} is closed; reopen() it first.")
            with self._disk():
                self._records.write(event.SerializeToString())
            if time.monotonic() - self._last_flush >= self._flush_secs:
                self._flush_locked()

    def _flush_locked(self) -> None:
        with self._disk():
            self._file.flush()
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                file, self._file = self._file, None
                with self._disk():
                    file.close()

    def reopen(self) -> None:
        """A closed writer starts a new file in the same folder (as TensorBoard's does)."""
        with self._lock:
            if self._file is not None:
                return
        self._open()


class _BufferedFileWriter(FileWriter):
    """torch's ``FileWriter`` (event and summary framing) over an :class:`EventFile`."""

    def __init__(self, log_dir, flush_secs: float, filename_suffix: str = ""):
        # not FileWriter.__init__: it would open TensorBoard's own writer and start its thread
        self.event_writer = EventFile(str(log_dir), flush_secs, filename_suffix)


class SummaryWriter(_TorchSummaryWriter):
    """torch's ``SummaryWriter`` whose run folder file is an :class:`EventFile` (``add_scalars``'s
    per-curve subfolders keep torch's writer). Events are written out once ``flush_secs`` have
    passed since the last write, and at ``flush()`` and ``close()``. Remote folders (``s3://...``) use torch's writer as they are."""

    def _get_file_writer(self):
        if "://" in str(self.log_dir):
            return super()._get_file_writer()
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = _BufferedFileWriter(self.log_dir, self.flush_secs, self.filename_suffix)
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
        return self.file_writer


def drop_events_from(log_dir: str | os.PathLike, step: int, skip_suffix: str = "") -> int:
    """Removes the events at optimizer step ``step`` or later from the event files in ``log_dir``
    (and its subfolders), for a run that resumes at ``step`` in the same folder; returns how many.

    TensorBoard's own way, a ``purge_step`` marker in the new file, is read differently by each of
    its readers: the default (Rust) server kept the events at exactly that step (the first start's
    test results, logged at the checkpoint's step, showed beside the resumed run's), the Python
    one ignored the marker in the first file it read (the unfinished epoch's steps twice), and the
    legacy one kept text summaries. The files are rewritten instead, each through a copy that
    replaces it in one rename, so a crash leaves the old file or the new one, never half of one.
    Files whose name ends with ``skip_suffix`` are left alone.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    dropped = 0
    for path in sorted(p for p in _event_paths(log_dir) if not (skip_suffix and p.endswith(skip_suffix))):
        kept, gone = [], 0
        for record in RawEventFileLoader(path).Load():
            event = Event.FromString(record)
            if event.HasField("file_version") or event.step < step and not event.HasField("session_log"):
                kept.append(record)
            else:
                gone += 1
        if not gone:
            continue
        partial = os.path.join(os.path.dirname(path), f".resume-{os.path.basename(path).replace('tfevents', 'tfe')}")
        try:
            with open(partial, "wb") as file:
                writer = RecordWriter(file)
                for record in kept:
                    writer.write(record)
            os.replace(partial, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise LitlabError(f"could not rewrite the TensorBoard events in {path} for the resume ({e.strerror or e}); "
                              f"the file is as it was. Free space on that disk and resume again, or resume with "
                              f"logger=csv.") from None
        dropped += gone
    return dropped


def _event_paths(log_dir) -> list[str]:
    found = []
    for folder, _, names in os.walk(log_dir):
        found += [os.path.join(folder, n) for n in names if "tfevents" in n]
    return found
