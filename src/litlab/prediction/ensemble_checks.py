"""What ``predict`` checks of an ensemble (``ckpt_path=[A,B]`` or a sweep folder) before torch.

The members are those eval's ensemble takes (``ensemble_paths.ensemble_members``: listed
checkpoints or run folders, or every job's ``best.ckpt`` of a sweep folder, a failed job skipped
and named). Each member gets every check predict gives one checkpoint; the same model twice (the
same sha256 under two paths) is refused; and each member's temperature is found: a number is every
member's T, and the folder of an eval run with ``temperature=...`` (an ensemble's, or one member's)
gives each member the T recorded for its bytes (sha256). What needs the models (class names, input
shapes) is checked once they are loaded (``prediction.ensemble``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.ensemble_paths import check_different_checkpoints, ensemble_members, member_cfg
from litlab.errors import LitlabError
from litlab.listing import first_of
from litlab.tuning.temperature_setting import (AUTO, as_given, checkpoint_fingerprint, predict_temperature,
                                               read_eval_record, recorded_temperatures, unmatched_temperatures)

# (T or None, where it came from, how it was found), as ``predict_temperature`` returns it
Temperature = tuple[float | None, str | None, str | None]


def check_ensemble_before_loading(cfg: DictConfig, out: Path | None, run_dir: tuple[str, Path] | None,
                                  check_member: Callable, tell: bool = False
                                  ) -> tuple[int, int, list[Path], list[Temperature]]:
    """Every check of an ensemble predict that needs no torch; returns ``(top_k, batch_size,
    members, each member's temperature)``. ``check_member``: predict's check of one checkpoint
    (``path_checks.check_before_loading``), given each member's config without its temperature;
    ``tell``: name the skipped jobs of a sweep folder in the log (the run, not the command line)."""
    members = ensemble_members(cfg.ckpt_path, tell, use="predict with")
    top_k = batch_size = 0
    for path in members:
        one = member_cfg(cfg, path)
        OmegaConf.update(one, "temperature", None, force_add=True)  # checked for all below
        top_k, batch_size = check_member(one, out, run_dir)
    check_different_checkpoints(members)
    return top_k, batch_size, members, member_temperatures(cfg, members)


def member_temperatures(cfg: DictConfig, members: list[Path]) -> list[Temperature]:
    """Each member's T: none, the number given (for every member), or the T an eval
    (``temperature=<its folder>``) recorded for that member's checkpoint."""
    value = cfg.get("temperature")
    if value == AUTO:
        given = cfg.ckpt_path
        ensemble = f"ckpt_path={given}" if isinstance(given, str) else f"'ckpt_path=[{','.join(map(str, given))}]'"
        raise LitlabError(f"temperature=auto needs labelled data to fit T on, which predict does not have. Fit each "
                          f"member's T with python -m litlab.eval {ensemble} temperature=auto, then give that eval's "
                          f"folder: temperature=outputs/runs/<eval run>.")
    if isinstance(value, str) and Path(value).is_dir():
        return eval_record_temperatures(Path(value), members)
    one = predict_temperature(member_cfg(cfg, members[0]))  # None, a number, or its error
    return [one] * len(members)


def eval_record_temperatures(folder: Path, members: list[Path]) -> list[Temperature]:
    """The T that the eval recorded in ``folder/metrics.json`` for each member, matched by the
    checkpoint's sha256: an ensemble eval's ``members[i].temperature`` or a single eval's
    ``temperature`` (``temperature_setting.recorded_temperatures``). A member's path may differ
    from eval's (a moved folder), its bytes may not. A member without one is refused, naming it; a
    record whose T has no sha256 (an eval from before litlab recorded it) is refused as such."""
    where, source = f"temperature={folder}", str(folder.absolute())
    again = ("Give the folder of python -m litlab.eval with the same members and temperature=auto, or a number "
             "(every member's T).")
    path, record = read_eval_record(folder, again)
    fitted = recorded_temperatures(record)
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
        old = unmatched_temperatures(record)
        if old:  # as predict of one checkpoint says it (``temperature_setting.eval_record_temperature``)
            how = "was fitted for" if len(old) == 1 and old[0].get("fitted_on") else "was recorded for"
            recorded = first_of([t.get("ckpt_path") or as_given(record.get("ckpt_path")) for t in old], 3)
            raise LitlabError(f"{where}: {path} records no size and sha256 of the checkpoint its temperature {how} "
                              f"({recorded}; an eval from before litlab recorded them), so it cannot be told whether "
                              f"a member ({first_of(missing, 3)}) is that model. {again}")
        raise LitlabError(f"{where}: {path} records no temperature for the checkpoint of member(s) "
                          f"{first_of(missing, 3)} (matched by sha256; it is the eval of "
                          f"ckpt_path={as_given(record.get('ckpt_path'))}: of other members, without "
                          f"temperature=..., or of a checkpoint written over since). {again}")
    return found
