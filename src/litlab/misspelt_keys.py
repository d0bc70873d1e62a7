"""A key the config does not have, set without ``+`` (``data.chanels=3``): the keys close to it.

Hydra's message ends "To append to your config use +data.chanels=3", and a user who followed it
got a second refusal, from the ``+`` check (``target_arguments``: "Did you mean data.channels?").
The paragraph here names the keys of the node the key is under that are close to it (difflib,
``target_arguments.closest_first``), and the arguments of the node's ``_target_`` that the config
does not have yet where they are closer (those are added with ``+``). ``+`` is suggested only
where nothing is close, as the way to add a new key.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.choice_files import composed_with
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.source_signatures import target_params
from litlab.target_arguments import HYDRA_KEYS, SET_BY_LITLAB, closest_first


def not_a_key(typed: str, overrides: list[str], primary: Primary) -> LitlabError:
    """The paragraph for ``typed`` (``data.chanels=3``), whose key Hydra found in no node of the
    config that ``overrides`` compose (from ``primary``'s files)."""
    key = typed.lstrip("+").split("=", 1)[0]
    check = f"Check the spelling with `{primary.command()} --cfg job`"
    cfg = composed_with([o for o in overrides if o != typed], primary)
    found = _deepest_node(cfg, key) if cfg is not None else None
    if found is None:
        return LitlabError(f"{key} is not a key of the config as composed. {check}; +{key}=... adds a key the "
                           f"config does not have.")
    node, where, name, below = found
    shown = where or "the config"
    if name in node:  # trainer.max_epochs.foo: the key above is a value, not a node with keys
        return LitlabError(f"{key} is not a key of the config ({_dotted(where, name)} is a value, "
                           f"{OmegaConf.select(node, name, throw_on_resolution_failure=False)!r}, which has no keys). "
                           f"{check}.")
    keys = [str(k) for k in node.keys() if k not in HYDRA_KEYS]
    takes = _arguments_not_in_config(node, where, keys)
    target = node.get("_target_") if "_target_" in node else None
    close, _ = closest_first(name, [*keys, *(takes or ())])
    if not close:
        listed = ", ".join(_dotted(where, k) for k in keys) or "no keys"
        # + only where it would be let through: the + check refuses an argument a litlab target does not take
        add = (f"; {target} takes no argument {name} either" if takes is not None else
               f"; if {key} is a key to add, +{key}=... adds it (+ adds a key the config does not have)")
        return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}, nor one close to it; it "
                           f"has {listed}). {check}{add}.")
    best = _dotted(where, close[0]) + below
    others = [_dotted(where, k) + below for k in close[1:]]
    also = f" (also close: {', '.join(others)})" if others else ""
    if close[0] in keys:
        hint = f"Did you mean {best}?{also}"
    elif close[0] == name:  # trainer.detect_anomaly=true: an argument of the target that its file does not set
        hint = f"{target} takes {name}, which the config does not have yet: +{key}=... adds it."
    else:
        hint = (f"Did you mean +{best}=...?{also} {target} takes {close[0]}, which the config does not have yet: "
                f"+ adds it.")
    return LitlabError(f"{key} is not a key of the config ({shown} has no key {name}). {hint} {check}.")


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


def _arguments_not_in_config(node: DictConfig, where: str, keys: list[str]) -> list[str] | None:
    """The arguments of ``node``'s ``_target_`` (read from litlab's, Lightning's or torch.optim's
    source) that the node does not set, less those litlab passes itself; None where they cannot
    be read (no target, the user's own, ``**kwargs``)."""
    target = node.get("_target_") if "_target_" in node else None
    params = target_params(target) if isinstance(target, str) else None
    if params is None:
        return None
    set_aside = SET_BY_LITLAB.get(where, {})
    return [p for p in params if p not in keys and p not in set_aside and p not in HYDRA_KEYS]


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
