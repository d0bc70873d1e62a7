"""A key the config does not have, set without ``+`` (``data.chanels=3``): the keys close to it.

Hydra's message ends "To append to your config use +data.chanels=3", and a user who followed it
got a second refusal, from the ``+`` check (``target_arguments``: "Did you mean data.channels?").
The paragraph here names the keys of the node the key is under that are close to it (difflib,
``target_arguments.closest_first``), and the arguments of the node's ``_target_`` that the config
does not have yet where they are closer (those are added with ``+``). A key is suggested only
where it exists as written: the rest of the typed key under it, or corrected there
(``callbacks.model_checkpoint.monitor`` for ``callbacks.model_checkpint.monitr``). An argument
litlab passes the node itself (``target_arguments.passed_by_litlab``: ``trainer.logger``, as the
entry point builds its trainer) is never suggested: where it is typed as it is
(``trainer.enable_progress_bar`` to eval, before any key close to it) or is the closest, the
paragraph says why a value for it is not taken. A top-level key is looked for one level down
(``max_epochs``: ``trainer.max_epochs``); where none is close, the top's keys are listed. ``+`` is suggested
only where nothing is close, as the way to add a new key, and never at the top or under
``hydra``, where nothing reads a new key. The ``--cfg job`` command the paragraph ends with keeps the
command line's other overrides and shows the node the key is under (``show_node``). Two keys of
lightning-hydra-template's habits get what litlab does instead: ``train=False`` and eval's ``model=``.
"""

from __future__ import annotations

import difflib
import re

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.choice_files import COMPOSE_ERRORS, compose_as_hydra
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.show_node import show_command
from litlab.source_signatures import target_params
from litlab.target_arguments import ARGUMENT_HINTS, HYDRA_KEYS, closest_first, passed_by_litlab


def not_a_key(typed: str, overrides: list[str], primary: Primary) -> LitlabError:
    """The paragraph for ``typed`` (``data.chanels=3``), whose key Hydra found in no node of the
    config that ``overrides`` compose (from ``primary``'s files)."""
    key = typed.lstrip("+").split("=", 1)[0]
    habit = _template_habit(typed, key, overrides, primary)
    if habit is not None:
        return habit
    cfg, kept = _composed_without_misses(typed, overrides, primary)
    found = _deepest_node(cfg, key) if cfg is not None else None
    # the command that shows the node as this command line composes it (mixing=mixup: not mixing: {})
    command = show_command(primary.command(), kept, package=found[1] if found else None)
    check = f"Check the spelling with `{command}`"
    if found is None:
        return LitlabError(f"{key} is not a key of the config as composed. {check}.")
    node, where, name, below = found
    shown = where or "the config"
    if name in node:  # trainer.max_epochs.foo: the key above is a value, not a node with keys
        return LitlabError(f"{key} is not a key of the config ({_dotted(where, name)} is a value, "
                           f"{OmegaConf.select(node, name, throw_on_resolution_failure=False)!r}, which has no keys). "
                           f"{check}.")
    keys = [str(k) for k in node.keys() if k not in HYDRA_KEYS]
    set_aside = passed_by_litlab(cfg, where, primary.command())  # trainer.logger: never suggested
    takes = _arguments_not_in_config(node, keys, set_aside)
    target = node.get("_target_") if "_target_" in node else None
    known = ARGUMENT_HINTS.get(target, {}).get(name) if isinstance(target, str) and not below else None
    if known:  # save_top_k: what litlab keeps instead, in place of the nearest key (save_last), as the + form says
        return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}). {known} {check}.")
    close, _ = closest_first(name, [*keys, *(takes or ())])
    # only keys that exist as suggested: the rest (.lr of model.optimzer.lr) under a close key, or corrected there
    value = (next((k for k in close if k in keys and not isinstance(_child(node, k), DictConfig)), None)
             if below else None)
    close = [(k, rest) for k in close for rest in [_existing_rest(node, k, below)] if rest is not None]
    if not close and value is not None:  # trainer.max_epoch.x: the key meant is a value, with no keys under it
        return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}; the closest, "
                           f"{_dotted(where, value)}, is a value, {OmegaConf.select(node, value)!r}, which has no "
                           f"keys). {check}.")
    if not close and not where:  # max_epochs=3: a key of a group (trainer.max_epochs), one level down
        close = _one_level_down(node, keys, name, below)
        # suggested as keys ("Did you mean trainer.max_epochs?"); the top's own stay listed where none is close
        keys = [*keys, *(k for k, _ in close)]
    if not close and where == "hydra.sweeper":  # n_trial under the basic sweeper: Optuna's n_trials
        optuna = _optuna_hint(name)
        if optuna is not None:
            return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}). {optuna}")
    passed, _ = closest_first(name, list(set_aside))
    passed = [name] if name in set_aside else passed  # the argument itself, typed as it is: before any close key
    # trainer.loger=csv: the argument meant is one litlab passes itself. No "Check the spelling" tail: the
    # paragraph says what to do instead, and --cfg job would not show the argument (no file sets it)
    if passed and (passed[0] == name or not close):
        named = _dotted(where, passed[0])
        lead = (f"{named} is an argument litlab passes itself" if passed[0] == name else
                f"The closest argument, {named}, is one litlab passes itself")
        return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}). {lead}: "
                           f"{set_aside[passed[0]]}.")
    if not close:
        listed = ", ".join(_dotted(where, k) for k in keys) or "no keys"
        # + only where it would be let through: the + check refuses an argument a litlab target does not take;
        # a new key at the top or under hydra is read by nothing
        add = (f"; {target} takes no argument {name} either" if takes is not None else
               "" if not where or key.startswith("hydra.") else
               f"; if {key} is a key to add, +{key}=... adds it (+ adds a key the config does not have)")
        return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}, nor one close to it; it "
                           f"has {listed}). {check}{add}.")
    best = _dotted(where, close[0][0]) + close[0][1]
    others = [_dotted(where, k) + rest for k, rest in close[1:]]
    also = f" (also close: {', '.join(others)})" if others else ""
    close = [k for k, _ in close]
    if close[0] in keys:
        hint = f"Did you mean {best}?{also}"
    elif close[0] == name:  # trainer.detect_anomaly=true: an argument of the target that its file does not set
        hint = f"{target} takes {name}, which the config does not have yet: +{key}=... adds it."
    else:
        hint = (f"Did you mean +{best}=...?{also} {target} takes {close[0]}, which the config does not have yet: "
                f"+ adds it.")
    return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}). {hint} {check}.")


def _one_level_down(cfg: DictConfig, keys: list[str], name: str, below: str) -> list[tuple[str, str]]:
    """For a top-level ``name`` of none of ``keys`` (``max_epochs``), the key of each group node under the
    top closest to it (``trainer.max_epochs``), with the rest of the typed key under it (``below``,
    corrected as ``_existing_rest`` does), closest first; Hydra's own node is left out."""
    groups = {k: _child(cfg, k) for k in keys if k != "hydra"}
    close = [(f"{k}.{sub}", rest) for k, group in groups.items() if isinstance(group, DictConfig)
             for sub in closest_first(name, [str(n) for n in group.keys() if n not in HYDRA_KEYS])[0][:1]
             for rest in [_existing_rest(group, sub, below)] if rest is not None]
    return sorted(close, key=lambda c: -difflib.SequenceMatcher(None, name, c[0].rsplit(".", 1)[1]).ratio())


def _optuna_hint(name: str) -> str | None:
    """"Did you mean hydra.sweeper.n_trials?" and that it is the Optuna sweeper's, for ``name`` close to one of
    its settings (``n_trial``) under the basic sweeper; None where none is close."""
    from litlab.config_check import _OPTUNA_KEYS, _optuna_only  # config_check imports this module at its top

    close, _ = closest_first(name, _OPTUNA_KEYS)
    return f"Did you mean hydra.sweeper.{close[0]}? {_optuna_only(f'hydra.sweeper.{close[0]}')}" if close else None


def _composed_without_misses(typed: str, overrides: list[str],
                             primary: Primary) -> tuple[DictConfig | None, list[str]]:
    """The config that ``overrides`` compose without ``typed`` and every other override that sets a
    key Hydra finds in no node (``data.batchsize=8`` beside ``trainer.max_epoch=3``), dropped one at
    a time as Hydra names them (None where it fails for another reason), and the overrides kept."""
    kept = [o for o in overrides if o != typed]
    for _ in range(len(overrides)):
        try:
            return compose_as_hydra(kept, primary), kept
        except COMPOSE_ERRORS as e:
            named = re.search(r"'([^']+)'", str(e))
            miss = next((o for o in kept if named and o.lstrip("+~").split("=", 1)[0] == named.group(1)), None)
            if miss is None:
                return None, kept
            kept.remove(miss)
    return None, kept


def _template_habit(typed: str, key: str, overrides: list[str], primary: Primary) -> LitlabError | None:
    """The paragraph for a key that lightning-hydra-template has and litlab has not, said as what
    litlab does instead: ``train=False`` (test only) to train, ``model=``/``data=``/``experiment=``
    to eval (which rebuilds both from the checkpoint); None for any other key."""
    if primary.kind == "train" and key == "train":
        return LitlabError(f"{typed}: litlab.train has no switch train; it always trains (test=false leaves out "
                           f"the test after training). To only test a checkpoint, run python -m litlab.eval "
                           f"ckpt_path=<run>/checkpoints/best.ckpt.")
    if primary.kind == "eval" and key in ("model", "data", "experiment"):
        ckpt = next((o for o in overrides if o.split("=", 1)[0] == "ckpt_path"), "ckpt_path=...")
        return LitlabError(f"{typed}: eval takes the model and the data from the run stored in the checkpoint "
                           f"({ckpt}), so it has no {key} choice. data.KEY=VALUE changes a key of the stored "
                           f"data (e.g. data.root=... after moving the files); to evaluate another model, give "
                           f"its run's checkpoint.")
    return None


def _existing_rest(node: DictConfig, name: str, below: str) -> str | None:
    """``below`` (``.lr`` of ``model.optimzer.lr``) where it is a key under ``node``'s ``name``, else
    corrected one part at a time to the closest key there (``.monitor`` for ``.monitr``); None where
    no such key exists (``name`` is a value, or nothing under it is close)."""
    if not below:
        return ""
    child = _child(node, name) if name in node else None
    if not isinstance(child, DictConfig):
        return None
    head, _, tail = below[1:].partition(".")
    tail = f".{tail}" if tail else ""
    heads = [head] if head in child else closest_first(head, [str(k) for k in child.keys() if k not in HYDRA_KEYS])[0]
    for h in heads:
        rest = _existing_rest(child, h, tail)
        if rest is not None:
            return f".{h}{rest}"
    return None


def _child(node: DictConfig, name: str) -> object:
    """``node``'s ``name``, None where it cannot be resolved here (``${hydra:...}`` outside a run)."""
    return OmegaConf.select(node, name, default=None, throw_on_resolution_failure=False)


def _deepest_node(cfg: DictConfig, key: str) -> tuple[DictConfig, str, str, str] | None:
    """The deepest node with keys above ``key`` (``data`` of ``data.chanels``), its dotted path
    ('' for the top), the part of ``key`` it lacks (``chanels``) and the rest after that part
    (``.y`` of ``data.x.y``, as ``.y``); None where the config cannot be read there."""
    parts = key.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        where = ".".join(parts[:depth])
        try:
            node = OmegaConf.select(cfg, where, throw_on_resolution_failure=False) if where else cfg
        except OmegaConfBaseException:
            return None
        if isinstance(node, DictConfig):
            rest = ".".join(parts[depth + 1:])
            return node, where, parts[depth], f".{rest}" if rest else ""
    return None


def _arguments_not_in_config(node: DictConfig, keys: list[str], set_aside: dict[str, str]) -> list[str] | None:
    """The arguments of ``node``'s ``_target_`` (read from litlab's, Lightning's or torch.optim's
    source) that the node does not set, less those litlab passes itself (``set_aside``); None where
    they cannot be read (no target, the user's own, ``**kwargs``)."""
    target = node.get("_target_") if "_target_" in node else None
    params = target_params(target) if isinstance(target, str) else None
    if params is None:
        return None
    return [p for p in params if p not in keys and p not in set_aside and p not in HYDRA_KEYS]


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
