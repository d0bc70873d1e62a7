"""metrics.json: the machine-readable record of a run, always written, even when it fails."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from litlab.atomic_files import atomic_write
from litlab.errors import LitlabError


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf or tensors: numbers become floats, non-finite ones null."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file, then rename)."""
    text = json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# the metrics.json files this process has written: a record of an earlier start of the same run
# folder that this process never wrote to is left as it is when this start fails before it begins
_WRITTEN: set[Path] = set()


def update_metrics(run_dir: Path, **fields: Any) -> dict:
    """Merges ``fields`` into ``run_dir/metrics.json`` and returns the whole record."""
    path = Path(run_dir) / "metrics.json"
    data = read_json(path) if path.is_file() else {}
    data.update(_clean(fields))
    return _write_metrics(path, data)


def tags_of(cfg: Any) -> list[str]:
    """A job's ``tags`` as a list of strings, whatever form they were typed in: ``tags=[dev,mine]``
    gives its items, ``tags=dev`` or ``tags=5`` that one value, no tags an empty list. A mapping
    (``tags={a:1}``) is one tag, its text: tags label runs, and nothing reads their parts."""
    value = cfg.get("tags")
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(t) for t in value]
    return [str(value)]


def labels_of(cfg: Any) -> dict:
    """``seed`` and ``tags`` (``tags_of``: a list of strings) of a job's config, those it has: what a
    run's metrics.json says it trained with and how it was labelled (every start's record begins
    with them)."""
    labels = {}
    for key in ("seed", "tags"):
        try:
            value = cfg.get(key)
            value = tags_of(cfg) if key == "tags" and value is not None else value
        except Exception:  # an interpolation that does not resolve: the run reports it
            continue
        if value is not None:
            labels[key] = value
    return labels


def start_metrics(run_dir: Path, **fields: Any) -> dict:
    """Begins this start's ``run_dir/metrics.json`` with ``fields`` alone: a resumed run's record
    describes the resumed start only, with no figures left from an earlier one (compression or
    export it did not repeat); ``keep_config_record`` kept the earlier record.

    A start that says ``running`` also names the machine and process it runs in (``host``,
    ``pid``): the folder's lock that tells it from a killed one may be seen only on that machine
    (``run_lock.recorded_status``)."""
    if fields.get("status") == "running":
        fields = {**fields, "host": socket.gethostname(), "pid": os.getpid()}
    return _write_metrics(Path(run_dir) / "metrics.json", _clean(fields))


def start_origin(ckpt_path: str | Path | None) -> dict:
    """``{"started_from": <ckpt_path, absolute>}`` for a training start from a checkpoint, ``{}`` for a
    new run: what every first record of such a start carries (``training.train``'s, or
    ``entry``'s of a start stopped or failed before it), so that a start stopped before a
    checkpoint of its own resumes from this one in its folder (``run_folders._unfinished_start``).
    Absolute because the command's folder is the process's (``hydra.job.chdir`` is refused)."""
    return {} if ckpt_path is None else {"started_from": str(Path(ckpt_path).absolute())}


def _write_metrics(path: Path, data: dict) -> dict:
    write_json(path, data)
    _WRITTEN.add(path.absolute())
    return data


def written_here(run_dir: Path) -> bool:
    """Whether ``run_dir/metrics.json`` is missing or was written by this process."""
    path = Path(run_dir) / "metrics.json"
    return not path.is_file() or path.absolute() in _WRITTEN


HYDRA_RECORD = ("config.yaml", "hydra.yaml", "overrides.yaml")


# what compression and export wrote for a start: a resume moves them to that start's record, so
# that the folder never shows a compressed or exported model of weights it no longer trains
EARLIER_OUTPUTS = ("compressed", "compression.json", "export")


def keep_config_record(run_dir: Path) -> Path | None:
    """Copies the record of the run's latest start to ``.hydra/start-<n>/``: its config record and
    its ``metrics.json``; its compression and export outputs are moved there.

    Hydra rewrites ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` each time a run
    starts in its folder, and a resumed start begins a new ``metrics.json``, so resuming with
    ``ckpt_path=last`` would lose the first start's command and results. Called before a resume:
    the record in ``.hydra/`` is then the latest start's and ``start-1/``, ``start-2/``, ... those
    before it. Returns the copy's folder, or None when the folder has no record yet.
    """
    record = Path(run_dir) / ".hydra"
    if not (record / "overrides.yaml").is_file():
        return None
    taken = [int(p.name[len("start-"):]) for p in record.glob("start-*") if p.name[len("start-"):].isdigit()]
    dest = record / f"start-{max(taken, default=0) + 1}"
    partial = record / f".{dest.name}.partial"  # complete or absent: a full disk leaves no half record
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for name in HYDRA_RECORD:
            if (record / name).is_file():
                shutil.copy2(record / name, partial / name)
        if (Path(run_dir) / "metrics.json").is_file():
            shutil.copy2(Path(run_dir) / "metrics.json", partial / "metrics.json")
        for name in EARLIER_OUTPUTS:  # moved, not copied: a rename in the same folder tree
            if (Path(run_dir) / name).exists():
                (Path(run_dir) / name).rename(partial / name)
        partial.rename(dest)
    except OSError as e:
        _move_outputs(partial, Path(run_dir))
        shutil.rmtree(partial, ignore_errors=True)
        raise LitlabError(f"Could not keep the record of the run's earlier start in {dest} before resuming "
                          f"({e.strerror or e}); nothing was changed. Free space on that disk (or make the folder "
                          f"writable) and resume again.") from None
    return dest


def restore_config_record(kept: Path) -> None:
    """Undoes ``keep_config_record`` for a start that never began (a rejected resume): the config
    record Hydra wrote for it is replaced by the kept one, and the copy is removed."""
    for name in HYDRA_RECORD:
        if (kept / name).is_file():
            shutil.copy2(kept / name, kept.parent / name)
    _move_outputs(kept, kept.parent.parent)
    shutil.rmtree(kept, ignore_errors=True)


def _move_outputs(src: Path, run_dir: Path) -> None:
    """Puts the earlier start's compression and export outputs kept in ``src`` back into ``run_dir``."""
    for name in EARLIER_OUTPUTS:
        if (src / name).exists() and not (run_dir / name).exists():
            (src / name).rename(run_dir / name)
