"""The ``temperature`` key of eval and predict, checked without torch (the command line runs
these checks before torch is imported, so a mistyped value is reported at once).

Temperature scaling divides a classifier's logits by one number ``T > 0`` before the softmax:
``T > 1`` softens overconfident probabilities, ``T < 1`` sharpens underconfident ones, and the
ranking of the classes (so the accuracy) stays as it is.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from litlab.errors import LitlabError
from litlab.listing import first_of

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
    on the data T was fitted to (an image folder without test/, whose test split is the validation
    split, is refused for that once the data is read: ``evaluation.calibrate``). On several
    processes every rank fits the one T of all ranks' validation logits
    (``temperature_scaling.fit_on_validation``)."""
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
    return AUTO


def predict_temperature(cfg) -> tuple[float | None, str | None, str | None]:
    """Predict's ``temperature`` as ``(T, source, how)``: ``(None, None, None)`` for T = 1,
    ``(T, "given", "given")`` for a positive number, ``(T, <folder>, "fitted by eval in <folder>")``
    (or ``"given to the eval in <folder>"``) for the folder of a ``litlab.eval ... temperature=...``
    run of the same checkpoint, whose ``metrics.json`` holds the T it used."""
    value = cfg.get("temperature")
    if value is None:
        return None, None, None
    number = _number_or_none(value, "the folder of an eval run that fitted it")
    if number is not None:
        return number, "given", "given"
    if value == AUTO:
        raise LitlabError("temperature=auto needs labelled data to fit T on, which predict does not have. Fit it with "
                          "python -m litlab.eval ckpt_path=... temperature=auto, then give that eval's folder: "
                          "temperature=outputs/runs/<eval run>.")
    folder = Path(str(value))
    temperature, fitted = eval_record_temperature(folder, cfg.get("ckpt_path"))
    source = str(folder.absolute())
    return temperature, source, f"{'fitted by eval' if fitted else 'given to the eval'} in {source}"


def eval_record_temperature(folder: Path, ckpt_path: object) -> tuple[float, bool]:
    """The T recorded in ``folder/metrics.json`` by an eval of ``ckpt_path``, and whether the eval
    fitted it (else it was given to the eval). The checkpoint must have the size and sha256 that
    the eval recorded: a resume that wrote over ``last.ckpt`` since is another model under the same
    path, and a run folder moved since is the same model under another. Errors name both paths.
    An ensemble eval's folder gives the T it recorded for the member with this checkpoint's sha256."""
    where = f"temperature={folder}"
    if not folder.is_dir():
        raise LitlabError(f"{where} is neither a positive number nor a folder. Give a number (temperature=1.5) or the "
                          f"folder of an eval run with temperature=auto (it holds metrics.json).")
    path, record = read_eval_record(folder, f"Give the folder of python -m litlab.eval ckpt_path={ckpt_path} "
                                            f"temperature=auto, or a number.")
    if record.get("ensemble") is True:
        return _member_temperature(where, path, record, Path(str(ckpt_path)))
    fitted = record.get("temperature")
    if not _is_temperature(fitted):
        raise LitlabError(f"{where}: {path} records no temperature (an eval run without temperature=...). Run python "
                          f"-m litlab.eval ckpt_path={ckpt_path} temperature=auto and give its folder, or give a "
                          f"number.")
    recorded = fitted.get("ckpt_path") or record.get("ckpt_path")
    how = "fitted for" if fitted.get("fitted_on") else "given to the eval of"
    again = (f"Run python -m litlab.eval ckpt_path={ckpt_path} temperature=auto again and give its folder, or give "
             f"a number.")
    kept = {key: fitted.get(key) for key in FINGERPRINT_KEYS}
    if not isinstance(kept["ckpt_bytes"], int) or not isinstance(kept["ckpt_sha256"], str):
        raise LitlabError(f"{where}: {path} records no size and sha256 of the checkpoint its temperature was {how} "
                          f"({recorded}; an eval from before litlab recorded them), so it cannot be told whether "
                          f"ckpt_path={ckpt_path} is that model. {again}")
    if _has_fingerprint(Path(str(ckpt_path)), kept):
        return float(fitted["value"]), bool(fitted.get("fitted_on"))
    now = Path(str(ckpt_path)).stat().st_size
    if recorded and _same_file(Path(str(recorded)), Path(str(ckpt_path))):
        raise LitlabError(f"{where}: the checkpoint changed since the eval. The temperature in {path} was {how} "
                          f"{recorded} as it was then ({kept['ckpt_bytes']} bytes, sha256 "
                          f"{kept['ckpt_sha256'][:16]}...), and ckpt_path={ckpt_path} now holds other contents "
                          f"({now} bytes{', another sha256' if now == kept['ckpt_bytes'] else ''}): a resume or "
                          f"another run wrote over it, so that T calibrates the model it held before. {again}")
    raise LitlabError(f"{where}: the temperature in {path} was {how} the checkpoint {recorded}, and "
                      f"ckpt_path={ckpt_path} is another file with other contents ({now} bytes, where the eval "
                      f"recorded {kept['ckpt_bytes']}{' and another sha256' if now == kept['ckpt_bytes'] else ''}), "
                      f"so another model, which that T does not calibrate. Give the folder of an eval of "
                      f"{ckpt_path} (python -m litlab.eval ckpt_path={ckpt_path} temperature=auto).")


def read_eval_record(folder: Path, again: str) -> tuple[Path, dict]:
    """``folder/metrics.json`` and its record, which must be a finished eval's (``task: eval``,
    ``status: completed``): the folder of a training run or of a predict holds no T fitted for a
    checkpoint, nor that of an eval that failed or was stopped (its ``error`` is named). ``again``:
    what to give instead, the last sentence of the refusals, which name the record's task and
    ``ckpt_path``."""
    from litlab.reporting.run_files import read_json  # no torch

    where, path = f"temperature={folder}", folder / "metrics.json"
    try:
        record = read_json(path)
    except (OSError, ValueError):
        raise LitlabError(f"{where}: {path} is missing or unreadable, so it is not the folder of a finished eval "
                          f"run. {again}") from None
    if not isinstance(record, dict) or record.get("task") != "eval":
        task = record.get("task") if isinstance(record, dict) else None
        ran = record.get("ckpt_path") if isinstance(record, dict) else None
        what = f"the record of a {task} run" if task else "no run's record"
        of = f" of ckpt_path={as_given(ran)}" if ran else ""
        raise LitlabError(f"{where}: {path} records no temperature: it is {what}{of}, not of an eval (python -m "
                          f"litlab.eval ... temperature=...). {again}")
    status = record.get("status")
    if status != "completed":  # eval records its T with its end (status completed): the T there is of no finished eval
        error = str(record.get("error") or "").strip()
        if status == "failed":
            ended = f"that failed: {error.rstrip('.') or 'no error recorded'}. Fix that and run it again"
        elif status == "interrupted":
            ended = f"stopped before it finished ({error or 'interrupted'}). Run it again"
        else:
            ended = f"that did not finish (status {status}). Run it again"
        raise LitlabError(f"{where}: {path} records no temperature: it is the record of an eval {ended}. {again}")
    return path, record


def recorded_temperatures(record: dict) -> dict[str, dict]:
    """The temperatures of an eval's record by the sha256 of the checkpoint each was fitted for
    (or given to): a single eval's ``temperature``, an ensemble eval's ``members[].temperature``."""
    return {t["ckpt_sha256"]: t for t in _temperatures(record) if isinstance(t.get("ckpt_sha256"), str)}


def unmatched_temperatures(record: dict) -> list[dict]:
    """The temperatures of an eval's record without the sha256 of their checkpoint (an eval from
    before litlab recorded it), which no checkpoint can be matched to."""
    return [t for t in _temperatures(record) if not isinstance(t.get("ckpt_sha256"), str)]


def _temperatures(record: dict) -> list[dict]:
    found = [record.get("temperature")] + [m.get("temperature") for m in record.get("members") or []
                                           if isinstance(m, dict)]
    return [t for t in found if _is_temperature(t)]


def _is_temperature(t: object) -> bool:
    return (isinstance(t, dict) and isinstance(t.get("value"), (int, float)) and not isinstance(t["value"], bool)
            and t["value"] > 0)


def _member_temperature(where: str, path: Path, record: dict, ckpt_path: Path) -> tuple[float, bool]:
    """The T an ensemble eval's record holds for the member with ``ckpt_path``'s sha256."""
    t = recorded_temperatures(record).get(checkpoint_fingerprint(ckpt_path)["ckpt_sha256"])
    if t is not None:
        return float(t["value"]), bool(t.get("fitted_on"))
    members = [m.get("ckpt_path") for m in record.get("members") or [] if isinstance(m, dict)]
    raise LitlabError(f"{where}: {path}, the record of an ensemble eval of {len(members)} member(s) "
                      f"({as_given(members)}), records no temperature for the checkpoint ckpt_path={ckpt_path} "
                      f"(matched by sha256: an eval without temperature=..., of other members, or a checkpoint "
                      f"written over since). Give the folder of an eval with temperature=auto of this checkpoint "
                      f"(python -m litlab.eval ckpt_path={ckpt_path} temperature=auto) or of an ensemble with it "
                      f"among its members, or give a number.")


def as_given(value: object) -> str:
    """A recorded ``ckpt_path`` as the refusals show it: a path, or a list as ``[A, B, C and 2 more]``."""
    if isinstance(value, list):
        return "[" + first_of(value, 3) + "]"
    return str(value)


FINGERPRINT_KEYS = ("ckpt_bytes", "ckpt_sha256")
_DIGESTS: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256, for this process


def checkpoint_fingerprint(path: str | Path) -> dict:
    """``{"ckpt_bytes": size, "ckpt_sha256": hex digest}`` of the file at ``path``, which eval
    records beside a temperature and predict compares: T follows the model's bytes, not its path.
    A file is hashed once per process while its size and modification time stay (predict checks
    on the command line and again in the run); hashing reads the file, about 1 s for a few hundred MB."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return {"ckpt_bytes": stat.st_size, "ckpt_sha256": _DIGESTS[key]}


def _has_fingerprint(path: Path, kept: dict) -> bool:
    """Whether the file at ``path`` has the size and sha256 in ``kept`` (of another size: not hashed)."""
    try:
        return path.stat().st_size == kept["ckpt_bytes"] and checkpoint_fingerprint(path) == kept
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()
