"""Refusing a key that a sweep gives every job where some of its choices would fail on it.

``check_each_choice_takes`` refuses it before any job (``empty_choices`` calls it with each
choice's keys, ``sweep_keys.sweep_choices``); ``append_in_sweep`` words Hydra's refusal of a
``+group.KEY`` that swept choices already have. Both end in the separate sweeps of
``split_sweeps``. Torch-free: ``config_check`` reaches them before torch is imported.
"""

from __future__ import annotations

import shlex

from litlab.choice_files import composed_with, sources_of
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.split_sweeps import separate_sweeps
from litlab.sweep_keys import choice_paths, names_group, of_group, rejecting_choices, setting_path


def check_each_choice_takes(group: str, typed: list[str], overrides: list[str], primary: Primary,
                            have: dict[str, set[str]]) -> None:
    """Refuses a key the command line gives every job of a sweep where some choice of the sweep
    (``have``) would fail on it: ``+averaging.decay`` where a searched option already sets decay
    (Hydra: "Could not append to config"), or a key some choice has given to a choice with
    settings but not that key (``-m averaging=none,ema,swa ++averaging.decay=0.9``: SWA's job was
    not built, after its data was prepared). A choice with no settings carries it unread.

    A key is its full dotted path below the group: ``+model.optimizer.amsgrad`` appends to a
    choice that sets ``optimizer`` but not ``optimizer.amsgrad``, as a single run does: a node
    inside the choice (an optimizer) may well take it. A choice with settings lacks a nested key
    whose first part it has not (``finetune.epochs`` of ``compress=quantize``): even where its
    class took ``finetune`` as an argument, it would get a plain dict, so the sweep is refused."""
    rest = [o for o in overrides if not of_group(o, group) and not names_group(o, group)]
    again = " ".join([primary.command(), "-m", *map(shlex.quote, rest)])
    for o in typed:
        key = setting_path(o)
        having = sorted(c for c, k in have.items() if key in k)
        if having and o.startswith("+") and not o.startswith("++"):
            raise LitlabError(
                f"{o} appends {group}.{key} to every job of the sweep, but {group}={having[0]} of the sweep already "
                f"sets {key}: Hydra cannot append it there and that job would fail. Set it with ++ instead "
                f"({again} +{o}).")
        lacking = sorted(c for c, k in have.items() if k and having and key not in k and key.split(".")[0] not in k)
        lacking = rejecting_choices(group, key, lacking, typed, overrides, primary) if lacking else lacking
        if lacking:
            others = sorted(c for c in have if c not in having)
            raise LitlabError(
                f"{o.lstrip('+')} is given to every job of the sweep, and the job with {group}={lacking[0]} has no "
                f"key {key} (of the sweep's choices, {group}={'|'.join(having)} {'has' if len(having) == 1 else 'have'}"
                f" it): that job would fail when {group} is built, after its data is prepared. "
                f"{separate_sweeps(primary, rest, group, having, typed, others, have, o)}")


def append_in_sweep(e: LitlabError, overrides: list[str], primary: Primary | None = None) -> LitlabError:
    """The paragraph for ``+group.KEY=V`` that Hydra cannot append in a sweep over ``group``
    (``-m compress=prune,lowrank +compress.finetune.epochs=1``: swept choices already have the
    key): ``++`` only, naming the swept choices that have it. The single run's advice
    (``config_check.explain``: drop the + or use ++) fails here once the + is dropped, as the
    sweep starts from the group's default choice, which may lack the key
    (``config_check.check_sweep_start``). Where a swept choice with settings lacks the key
    (``-m compress=prune,quantize``: quantize has no ``finetune``), ``++`` would crash its job:
    separate sweeps instead. ``e`` as it is for any other error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return e
    swept = {p.get_key_element().lstrip("+~"): p for p in parsed if p.is_sweep_override()}
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+")
        group = key.split(".", 1)[0]
        if (o.startswith("+") and not o.startswith("++") and "." in key and group in swept
                and str(e).startswith(f"+{key} adds a new key, but ")):
            return _append_advice(o, group, list(swept[group].sweep_string_iterator()), overrides, primary) or e
    return e


def _append_advice(typed: str, group: str, choices: list[str], overrides: list[str],
                   primary: Primary | None) -> LitlabError | None:
    """``append_in_sweep``'s paragraph for ``typed`` (``+compress.finetune.epochs=1``) in a sweep of
    ``choices`` of ``group``: ``++`` where every swept choice with settings has the key, else the
    separate sweeps (those that have it with ``++``, then the others without it). None where the
    choices' files cannot be read."""
    key, path = typed.split("=", 1)[0].lstrip("+"), setting_path(typed)
    cfg = composed_with([o for o in overrides if o.startswith("hydra.")], primary) if primary else None
    sources = sources_of(cfg) if cfg is not None else None
    paths = {c: choice_paths(group, c, sources) for c in choices} if sources is not None else {}
    if not paths or any(k is None for k in paths.values()):
        return None
    having = [c for c in choices if path in paths[c]]
    lacking = [c for c in choices if paths[c] and c not in having]
    if not lacking:
        return LitlabError(
            f"{typed} adds a new key, but the swept choices {group}={','.join(having)} already have {key}. Write it "
            f"as +{typed}: ++ sets the key where it exists and adds it where not, both in the sweep's jobs and in the "
            f"default choice of {group} that the sweep starts from (without a +, a sweep is refused at its start "
            f"where that choice lacks the key).")
    rest = [o for o in overrides if not of_group(o, group) and not names_group(o, group)]
    mine = [o for o in overrides if of_group(o, group)]
    others = [c for c in choices if c not in having]
    fixed = [f"+{o}" if o == typed else o for o in mine]
    return LitlabError(
        f"{typed} adds a new key, but {group}={','.join(having)} of the sweep {'has' if len(having) == 1 else 'have'} "
        f"{key} (Hydra cannot append it there), and {group}={lacking[0]} has settings but not that key: with ++ its "
        f"job would fail when {group} is built, after its data is prepared. "
        f"{separate_sweeps(primary, rest, group, having, fixed, others, paths, f'+{typed}')}")
