"""What ``predict`` checks of an ensemble (``ckpt_path=[A,B]`` or a sweep folder) before torch.

The members are those eval's ensemble takes (``ensemble_paths.ensemble_members``: listed
checkpoints or run folders, or every job's ``best.ckpt`` of a sweep folder, a failed job skipped
and named). Each member gets every check predict gives one checkpoint; the same model twice (the
same sha256 under two paths) is refused; and each member's temperature is found: a number is every
member's T, and the folder of an ensemble eval run with ``temperature=...`` gives each member the T
recorded for its bytes (sha256). What needs the models (class names, input shapes) is checked once
they are loaded (``prediction.ensemble``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.ensemble_paths import check_different_checkpoints, ensemble_members, member_cfg
from litlab.errors import LitlabError
from litlab.listing import first_of
from litlab.tuning.temperature_setting import checkpoint_fingerprint, predict_temperature

# (T or None, where it came from, how it was found), as ``predict_temperature`` returns it
Temperature = tuple[float | None, str | None, str | None]


def check_ensemble_before_loading(cfg: DictConfig, out: Path | None, run_dir: tuple[str, Path] | None,
                                  check_member: Callable, tell: bool = False
                                  ) -> tuple[int, int, list[Path], list[Temperature]]:
    """Every check of an ensemble predict that needs no torch; returns ``(top_k, batch_size,
    members, each member's temperature)``. ``check_member``: predict's check of one checkpoint
    (``path_checks.check_before_loading``), given each member's config without its temperature;
    ``tell``: name the skipped jobs of a sweep folder in the log (the run, not the command line)."""
    members = ensemble_members(cfg.ckpt_path, tell)
    top_k = batch_size = 0
    for path in members:
        one = member_cfg(cfg, path)
        OmegaConf.update(one, "temperature", None, force_add=True)  # checked for all below
        top_k, batch_size = check_member(one, out, run_dir)
    check_different_checkpoints(members)
    return top_k, batch_size, members, member_temperatures(cfg, members)


def member_temperatures(cfg: DictConfig, members: list[Path]) -> list[Temperature]:
    """Each member's T: none, the number given (for every member), or the T an ensemble eval
    (``temperature=<its folder>``) recorded for that member's checkpoint."""
    value = cfg.get("temperature")
    if isinstance(value, str) and Path(value).is_dir():
        return ensemble_record_temperatures(Path(value), members)
    one = predict_temperature(member_cfg(cfg, members[0]))  # None, a number, or its error
    return [one] * len(members)


def ensemble_record_temperatures(folder: Path, members: list[Path]) -> list[Temperature]:
    """The T that the ensemble eval recorded in ``folder/metrics.json`` for each member, matched by
    the checkpoint's sha256 (``members[i].temperature.ckpt_sha256``): a member's path may differ
    from eval's (a moved folder), its bytes may not. A member without one is refused, naming it."""
    from litlab.reporting.run_files import read_json  # no torch

    where, path, source = f"temperature={folder}", folder / "metrics.json", str(folder.absolute())
    again = ("Give the folder of python -m litlab.eval with the same members and temperature=auto, or a number "
             "(every member's T).")
    try:
        record = read_json(path)
    except (OSError, ValueError):
        raise LitlabError(f"{where}: {path} is missing or unreadable, so it is not the folder of a finished eval "
                          f"run. {again}") from None
    if not isinstance(record, dict) or record.get("ensemble") is not True:
        ran = record.get("ckpt_path") if isinstance(record, dict) else None
        raise LitlabError(f"{where}: {path} is not the record of an ensemble eval (it evaluated {ran}), and each "
                          f"member of this ensemble takes the T fitted for it. {again}")
    fitted: dict[str, dict] = {}
    for member in record.get("members") or []:
        t = member.get("temperature") if isinstance(member, dict) else None
        if isinstance(t, dict) and isinstance(t.get("value"), (int, float)) and t["value"] > 0:
            fitted[str(t.get("ckpt_sha256"))] = t
    found: list[Temperature] = []
    missing = []
    for member in members:
        t = fitted.get(checkpoint_fingerprint(member)["ckpt_sha256"])
        if t is None:
            missing.append(member)
            continue
        how = f"{'fitted by eval' if t.get('fitted_on') else 'given to the eval'} in {source}"
        found.append((float(t["value"]), source, how))
    if missing:
        raise LitlabError(f"{where}: {path} records no temperature for the checkpoint of member(s) "
                          f"{first_of(missing, 3)} (matched by sha256: an eval without temperature=..., of other "
                          f"members, or a checkpoint written over since). {again}")
    return found
