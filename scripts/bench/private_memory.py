"""Peak private memory of a piece of work in this process, without shared-library code pages.

The kernel's peak resident size (``VmHWM``) counts every page mapped into the process,
including pages of ``libtorch_cpu.so`` and the other shared libraries that are read from disk
the first time a kernel runs. Those pages are code: shared with every other process, clean and
dropped under memory pressure. A run that calls a few more kernels (a fused optimizer step,
an ``argmax``) faults in a few more MiB of them, which on the digits runs was most of the
measured "memory" (13.8 of raw's 19.6 MiB, 16.8 of litlab's 25.8 MiB).

``measure`` therefore maps every page of every file-backed mapping first
(``madvise(MADV_POPULATE_READ)``, Linux 5.14+), then resets the peak. What the peak grows by
afterwards is anonymous memory: tensors, optimizer state, activations, Python objects, malloc
arenas, thread stacks; plus files mapped during the work, if any.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable
from pathlib import Path

MADV_POPULATE_READ = 22


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def populate_file_mappings() -> bool:
    """Maps in every page of every readable file-backed mapping; False where the kernel cannot
    (then code pages stay in the figure, and the record says so)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = failed = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/") or "r" not in parts[1]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if libc.madvise(start, end - start, MADV_POPULATE_READ) == 0:
            done += 1
        else:
            failed += 1
    return done > 0 and failed == 0


def _release_free_heap() -> None:
    """Hands the allocator's free pages back to the kernel (glibc ``malloc_trim``), so the work
    starts from the same state whatever ran before it: free heap left by earlier imports would
    otherwise absorb part of the work's allocations uncounted, differently from run to run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def measure(work: Callable[[], object]) -> dict:
    """Runs ``work`` once; its peak private memory in MiB above the resident size before it."""
    code_excluded = populate_file_mappings()
    gc.collect()
    _release_free_heap()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    before = {k: status_kib(k) for k in ("VmRSS", "RssAnon", "RssFile")}
    work()
    after = {k: status_kib(k) for k in ("VmHWM", "RssAnon", "RssFile")}
    return {"delta_mib": (after["VmHWM"] - before["VmRSS"]) / 1024,
            "anon_end_mib": (after["RssAnon"] - before["RssAnon"]) / 1024,
            "file_pages_added_mib": (after["RssFile"] - before["RssFile"]) / 1024,
            "code_pages_excluded": code_excluded}
