"""The files of a folder given as ``input=``, without litlab's own outputs.

``predict input=.`` run from a folder of photos writes its run into ``outputs/runs/<time>/`` below
that folder; the next run listed that run's ``predict.log``, ``metrics.json`` and CSV as inputs
and gave each an error row. The listing leaves out ``paths.log_dir`` (where it lies below the
folder), the CSV being written, and every litlab run folder found below it (``is_run_folder``).
A run folder that would be made *inside* the inputs otherwise is refused before any work
(``path_checks.check_run_dir_outside_input``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Hydra's record of a run (every litlab run started from the command line has it) and of a sweep
HYDRA_RECORDS = (".hydra/config.yaml", ".hydra/hydra.yaml", "multirun.yaml")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a litlab (or Hydra) run's record: Hydra's ``.hydra/config.yaml`` or
    ``.hydra/hydra.yaml``, a sweep's ``multirun.yaml``, or a ``metrics.json`` that is litlab's (a
    JSON object with a ``status`` text, as every litlab record has; in-process runs have no
    ``.hydra/``). Another ``metrics.json`` among the inputs (not JSON, or without a status) does not
    hide its folder. ``os.path``'s tests never raise."""
    if any(os.path.isfile(os.path.join(folder, name)) for name in HYDRA_RECORDS):
        return True
    metrics = os.path.join(folder, "metrics.json")
    if not os.path.isfile(metrics):
        return False
    try:
        with open(metrics, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False  # not JSON, not readable: not litlab's record
    return isinstance(record, dict) and isinstance(record.get("status"), str)


def list_files(path: Path, leave_out: tuple[Path, ...] = ()) -> tuple[list[Path], list[Path]]:
    """``path`` itself, or every file below the folder ``path``, sorted; and the folders left out.

    Hidden files and folders are skipped (as in training's ``visible_files``), and so are
    ``leave_out`` (folders or files: ``paths.log_dir``, the CSV written) and run folders below
    ``path`` (``is_run_folder``), which are not walked. ``path`` itself is listed even if it is a
    run folder: it was named. Symbolic links to folders are not followed, as ``Path.rglob`` does not.

    Returns ``(files, left_out_folders)``."""
    if path.is_file():
        return [path], []
    skip = {os.path.realpath(p) for p in leave_out}
    # realpath (system calls per name) only for names that may be one of them: as given or as linked to
    skip_names = {os.path.basename(os.path.normpath(p)) for p in (*map(str, leave_out), *skip)}
    files: list[Path] = []
    left_out: list[Path] = []
    for top, dirs, names in os.walk(path):
        kept = []
        for d in sorted(dirs):
            sub = os.path.join(top, d)
            if d.startswith("."):
                continue
            if (d in skip_names and os.path.realpath(sub) in skip) or is_run_folder(Path(sub)):
                left_out.append(Path(sub))
                continue
            kept.append(d)
        dirs[:] = kept  # os.walk descends only into these
        for name in names:
            f = os.path.join(top, name)
            if name.startswith(".") or (name in skip_names and os.path.realpath(f) in skip):
                continue
            if os.path.isfile(f):  # not a broken link
                files.append(Path(f))
    return sorted(files), sorted(left_out)
