"""The files of a folder given as ``input=``, without litlab's own outputs.

``predict input=.`` run from a folder of photos writes its run into ``outputs/runs/<time>/`` below
that folder; the next run listed that run's ``predict.log``, ``metrics.json`` and CSV as inputs
and gave each an error row. The listing leaves out ``paths.log_dir`` (where it lies below the
folder), the run's own folder and the CSV being written, and every litlab run folder found below
it (``is_run_folder``). A run folder that is the input folder or holds it is refused before any
work (``path_checks.check_run_dir_outside_input``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import yaml

from litlab.data.image_folder_settings import IMAGE_SUFFIXES

_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where installed

# litlab's records of a run, read only when small: Hydra's composed config of a run started from the
# command line, a sweep's (the same config with its hydra node), and the metrics.json every run writes
CONFIG_RECORDS = (".hydra/config.yaml", "multirun.yaml")
RECORD_BYTES = 1 << 20


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a litlab run's (or sweep's) record.

    ``.hydra/config.yaml`` or ``multirun.yaml`` counts when it is the config of a litlab entrypoint:
    a ``task_name`` text and a ``paths`` node with ``log_dir`` and ``output_dir`` (conf/paths,
    which train, eval, predict, lr_find and their sweeps all compose); another Hydra tool's record
    does not hide its folder. ``metrics.json`` counts when it is litlab's: a JSON object with the
    ``task`` and ``status`` texts that every litlab record has (in-process runs have no ``.hydra/``).
    Files over ``RECORD_BYTES`` and unreadable ones are not litlab's; nothing here raises."""
    return (any(_is_litlab_config(os.path.join(folder, name)) for name in CONFIG_RECORDS)
            or _is_litlab_metrics(os.path.join(folder, "metrics.json")))


def _small_text(path: str) -> str | None:
    """The text of ``path`` when it is a file of at most ``RECORD_BYTES``, else None."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > RECORD_BYTES:
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, ValueError):  # unreadable, or not UTF-8
        return None


def _is_litlab_config(path: str) -> bool:
    text = _small_text(path)
    if text is None:
        return False
    try:
        config = yaml.load(text, Loader=_YamlLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    if not isinstance(config, dict):
        return False
    paths = config.get("paths")
    return (isinstance(config.get("task_name"), str) and isinstance(paths, dict)
            and {"log_dir", "output_dir"} <= set(paths))


def _is_litlab_metrics(path: str) -> bool:
    text = _small_text(path)
    if text is None:
        return False
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return False  # not JSON: not litlab's record
    return isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("task", "status"))


class Listing(NamedTuple):
    """The files of ``input=`` and what was left out of them."""

    files: list[Path]
    # folders not walked: ``leave_out``'s and the run folders found (``is_run_folder``), sorted
    left_out: list[Path]
    # the run folders left out that hold image files (by suffix), each with its count, sorted
    images_left_out: list[tuple[Path, int]]


def list_files(path: Path, leave_out: tuple[Path, ...] = ()) -> Listing:
    """``path`` itself, or every file below the folder ``path``, sorted; and the folders left out.

    Hidden files and folders are skipped (as in training's ``visible_files``), and so are
    ``leave_out`` (folders or files: ``paths.log_dir``, the run's folder, the CSV written) and run
    folders below ``path`` (``is_run_folder``), which are not walked for inputs; the image files in
    those run folders are counted, so that a folder of the user's taken for a run's is told
    (``leave_out``'s are litlab's by the config and are not walked at all). ``path`` itself is
    listed even if it is a run folder: it was named. Symbolic links to folders are not followed, as
    ``Path.rglob`` does not."""
    if path.is_file():
        return Listing([path], [], [])
    skip = {os.path.realpath(p) for p in leave_out}
    # realpath (system calls per name) only for names that may be one of them: as given or as linked to
    skip_names = {os.path.basename(os.path.normpath(p)) for p in (*map(str, leave_out), *skip)}
    files: list[Path] = []
    left_out: list[Path] = []
    images: list[tuple[Path, int]] = []
    for top, dirs, names in os.walk(path):
        kept = []
        for d in sorted(dirs):
            sub = os.path.join(top, d)
            if d.startswith("."):
                continue
            if d in skip_names and os.path.realpath(sub) in skip:
                left_out.append(Path(sub))
            elif is_run_folder(Path(sub)):
                left_out.append(Path(sub))
                count = count_image_files(Path(sub))
                if count:
                    images.append((Path(sub), count))
            else:
                kept.append(d)
        dirs[:] = kept  # os.walk descends only into these
        for name in names:
            f = os.path.join(top, name)
            if name.startswith(".") or (name in skip_names and os.path.realpath(f) in skip):
                continue
            if os.path.isfile(f):  # not a broken link
                files.append(Path(f))
    return Listing(sorted(files), sorted(left_out), sorted(images))


def count_image_files(folder: Path) -> int:
    """How many visible files below ``folder`` have an image suffix (``IMAGE_SUFFIXES``)."""
    count = 0
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        count += sum(1 for n in names if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES)
    return count
