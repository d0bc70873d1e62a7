"""metrics.json: the machine-readable record of a run, always written, even when it fails."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from litlab.atomic_files import atomic_write


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


def update_metrics(run_dir: Path, **fields: Any) -> dict:
    """Merges ``fields`` into ``run_dir/metrics.json`` and returns the whole record."""
    path = Path(run_dir) / "metrics.json"
    data = read_json(path) if path.is_file() else {}
    data.update(_clean(fields))
    write_json(path, data)
    return data


HYDRA_RECORD = ("config.yaml", "hydra.yaml", "overrides.yaml")


def keep_config_record(run_dir: Path) -> Path | None:
    """Copies the config record of the run's latest start to ``.hydra/start-<n>/``.

    Hydra rewrites ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` each time a run
    starts in its folder, so resuming with ``ckpt_path=last`` would lose the first start's
    command. Called before a resume: the record in ``.hydra/`` is then the latest start's and
    ``start-1/``, ``start-2/``, ... those before it. Returns the copy's folder, or None when the
    folder has no record yet.
    """
    record = Path(run_dir) / ".hydra"
    if not (record / "overrides.yaml").is_file():
        return None
    taken = [int(p.name[len("start-"):]) for p in record.glob("start-*") if p.name[len("start-"):].isdigit()]
    dest = record / f"start-{max(taken, default=0) + 1}"
    dest.mkdir()
    for name in HYDRA_RECORD:
        if (record / name).is_file():
            shutil.copy2(record / name, dest / name)
    return dest
