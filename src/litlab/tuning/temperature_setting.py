"""The ``temperature`` key of eval and predict, checked without torch (the command line runs
these checks before torch is imported, so a mistyped value is reported at once).

Temperature scaling divides a classifier's logits by one number ``T > 0`` before the softmax:
``T > 1`` softens overconfident probabilities, ``T < 1`` sharpens underconfident ones, and the
ranking of the classes (so the accuracy) stays as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

from litlab.errors import LitlabError

AUTO = "auto"


def _number_or_none(value: object, other: str) -> float | None:
    """A positive finite number as a float; None for a value that is no number; an error for a
    number (or bool) that cannot be a temperature. ``other``: what else the key takes."""
    if isinstance(value, bool):
        raise LitlabError(f"temperature={str(value).lower()} is a yes/no value, not a temperature. Give a positive "
                          f"number (e.g. temperature=1.5) or {other}, or leave temperature out for T = 1.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise LitlabError(f"temperature must be a positive finite number (the logits are divided by it), got "
                              f"{value!r}. Give e.g. temperature=1.5 or {other}, or leave temperature out for T = 1.")
        return float(value)
    return None


def eval_temperature(cfg) -> float | str | None:
    """Eval's ``temperature``: None (T = 1), a positive number used as it is, or ``auto`` (fitted on
    the run's validation split). ``auto`` with ``split=val`` is refused: the figures would be scored
    on the data T was fitted to. Several processes are refused with ``auto`` too (the fit needs every
    validation logit in one place; see ``evaluation``)."""
    value = cfg.get("temperature")
    if value is None:
        return None
    number = _number_or_none(value, "auto (fitted on the validation split)")
    if number is not None:
        return number
    if value != AUTO:
        raise LitlabError(f"temperature must be a positive number or auto, got {value!r}. Give temperature=auto to fit "
                          f"T on the run's validation split, or a number such as temperature=1.5.")
    if cfg.get("split", "test") == "val":
        raise LitlabError("temperature=auto fits T on the validation split, so with split=val the calibration would be "
                          "scored on the very data T was fitted to and look better than it is. Score the test split "
                          "(split=test temperature=auto), or give split=val a temperature fitted elsewhere "
                          "(temperature=<number>).")
    if _several_processes(cfg):
        raise LitlabError("temperature=auto fits T on every validation logit in one process, and this evaluation runs "
                          "in several (trainer.devices or trainer.num_nodes above 1). Run the fit on one device "
                          "(trainer.devices=1), then give the T it reports to the multi-device evaluation "
                          "(temperature=<number>).")
    return AUTO


def _several_processes(cfg) -> bool:
    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    several = isinstance(devices, int) and not isinstance(devices, bool) and devices > 1
    several = several or (not isinstance(devices, (int, str)) and devices is not None and len(devices) > 1)
    return several or (isinstance(nodes, int) and nodes > 1)


def predict_temperature(cfg) -> tuple[float | None, str | None]:
    """Predict's ``temperature``: ``(None, None)`` for T = 1, ``(T, "given")`` for a positive number,
    ``(T, <folder>)`` for the folder of a ``litlab.eval ... temperature=...`` run of the same
    checkpoint, whose ``metrics.json`` holds the T it used."""
    value = cfg.get("temperature")
    if value is None:
        return None, None
    number = _number_or_none(value, "the folder of an eval run that fitted it")
    if number is not None:
        return number, "given"
    if value == AUTO:
        raise LitlabError("temperature=auto needs labelled data to fit T on, which predict does not have. Fit it with "
                          "python -m litlab.eval ckpt_path=... temperature=auto, then give that eval's folder: "
                          "temperature=outputs/runs/<eval run>.")
    folder = Path(str(value))
    return eval_record_temperature(folder, cfg.get("ckpt_path")), str(folder.absolute())


def eval_record_temperature(folder: Path, ckpt_path: object) -> float:
    """The T recorded in ``folder/metrics.json`` by an eval of ``ckpt_path``; errors name both paths."""
    from litlab.reporting.run_files import read_json  # no torch

    where = f"temperature={folder}"
    if not folder.is_dir():
        raise LitlabError(f"{where} is neither a positive number nor a folder. Give a number (temperature=1.5) or the "
                          f"folder of an eval run with temperature=auto (it holds metrics.json).")
    path = folder / "metrics.json"
    try:
        record = read_json(path)
    except (OSError, ValueError):
        raise LitlabError(f"{where}: {path} is missing or unreadable, so it is not the folder of a finished eval "
                          f"run. Give the folder of python -m litlab.eval ckpt_path={ckpt_path} temperature=auto.") \
            from None
    fitted = record.get("temperature") if isinstance(record, dict) else None
    if not isinstance(fitted, dict) or not isinstance(fitted.get("value"), (int, float)) or fitted["value"] <= 0:
        raise LitlabError(f"{where}: {path} records no temperature (an eval run without temperature=..., or a run of "
                          f"another command). Run python -m litlab.eval ckpt_path={ckpt_path} temperature=auto and "
                          f"give its folder, or give a number.")
    recorded = fitted.get("ckpt_path") or record.get("ckpt_path")
    if not recorded or not _same_file(Path(str(recorded)), Path(str(ckpt_path))):
        raise LitlabError(f"{where}: the temperature in {path} was fitted for the checkpoint {recorded}, not for "
                          f"ckpt_path={ckpt_path}; another model's T does not calibrate this one. Give the folder of an "
                          f"eval of {ckpt_path} (python -m litlab.eval ckpt_path={ckpt_path} temperature=auto).")
    return float(fitted["value"])


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()
