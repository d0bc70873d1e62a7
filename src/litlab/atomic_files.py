"""Files that are replaced whole or not at all: written to a temporary sibling, then renamed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

# the process's umask, read once at import (reading it means setting it, which is not thread-safe)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "wb", fsync: bool = False) -> None:
    """Calls ``write(file)`` on a temporary file in ``path``'s folder, then renames it to ``path``.

    A crash at any moment leaves either the old complete file or the new one; a failed write
    removes the temporary file and leaves ``path`` as it was. ``fsync`` also flushes the data to
    the disk before the rename (for files that must survive a power loss, like checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            try:  # mkstemp makes the file private (0600); it gets a new file's usual mode (umask applied)
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            except OSError:
                pass  # a file system without modes (vfat, some network mounts): the write matters, not the mode
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
