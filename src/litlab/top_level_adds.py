"""A key added at the top of the config (``+foo=1``, ``++extras.print_config=false``) that no code reads.

Hydra adds such a key, and the run went ahead with exit 0 as if it had been used: litlab reads the
top-level keys of its own config files (``seed``, ``tags``, ``optimized_metric``, ...) and the nodes
of its groups, nothing else. lightning-hydra-template's habits (``+extras.print_config=False``,
``+extras.enforce_tags=...``) came in this way. A ``+``/``++`` key is let through where its first part
is a key of the config composed without it (the primary file, its groups' nodes, an experiment's
keys), a top-level key of litlab's own ``conf/<entrypoint>.yaml`` (``tags``, ``optimized_metric``,
``lr_find``: read by litlab even where the user's primary file leaves them out), a config group (a folder
Hydra searches: ``+experiment=...``), Hydra's own (``hydra.*``), or a key an interpolation reads
(``+lr=0.01 'model.optimizer.lr=${lr}'``). In a sweep, a key that any job's config has is let through
(``experiment=digits_mlp,wide ++width=16``: only wide's has width).
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from litlab.choice_files import COMPOSE_ERRORS, compose_as_hydra
from litlab.config_flags import CONF_DIR, Primary, config_dirs
from litlab.errors import LitlabError
from litlab.show_node import show_command
from litlab.target_arguments import closest_first


def _head(override: str) -> str:
    """The first part of an override's key: ``extras`` of ``+extras.print_config=False``."""
    return override.lstrip("+").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]


def _litlab_keys(kind: str) -> list[str]:
    """The top-level keys of litlab's own ``conf/<kind>.yaml``, which litlab's code reads."""
    try:
        own = OmegaConf.load(CONF_DIR / f"{kind}.yaml")
    except OSError:
        return []
    return [str(k) for k in own.keys() if k != "defaults"] if isinstance(own, DictConfig) else []


def _strings(value) -> list[str]:
    """Every string in ``value`` (a config's container, unresolved), at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _read_by_interpolation(head: str, texts: list[str]) -> bool:
    """Whether one of ``texts`` reads ``head``: ``${head}``, ``${head.x}``, ``${oc.select:head,...}``."""
    pattern = re.compile(r"(\$\{|oc\.select:\s*)" + re.escape(head) + r"(?![\w-])")
    return any(pattern.search(text) for text in texts)


def check_top_level_adds(argv: list[str], jobs: list[list[str]], primary: Primary) -> None:
    """Refuses a ``+``/``++`` override of ``jobs`` (each job's overrides, sweeps expanded) whose first
    part is neither a key of a job's config composed without it, a key of litlab's own config, a key an
    interpolation reads nor a config group, naming it."""
    dirs = config_dirs(argv, primary)
    if dirs is None or not jobs:  # a package's folder (pkg://): its groups only Hydra can list
        return
    groups = {p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()}
    allowed = {"hydra", *groups, *_litlab_keys(primary.kind)}
    added = [o for o in dict.fromkeys(o for job in jobs for o in job)
             if o.startswith("+") and "=" in o and _head(o) not in allowed]
    values = [o.split("=", 1)[1] for job in jobs for o in job if "=" in o]
    added = [o for o in added if not _read_by_interpolation(_head(o), values)]
    keys: list[str] = []
    for job in jobs:  # until every added head is found in a job's config
        if all(_head(o) in keys for o in added):
            break
        try:
            cfg = compose_as_hydra([o for o in job if o not in added], primary, return_hydra_config=False)
        except COMPOSE_ERRORS:  # the other overrides do not compose: that is refused, in its own words, after this
            return
        if not isinstance(cfg, DictConfig):
            continue
        keys += [str(k) for k in cfg.keys() if str(k) not in keys]
        texts = _strings(OmegaConf.to_container(cfg, resolve=False))
        added = [o for o in added if not _read_by_interpolation(_head(o), texts)]
    for override in added:
        head = _head(override)
        if head in keys:
            continue
        overrides = next(job for job in jobs if override in job)
        key = override.lstrip("+").split("=", 1)[0]
        show = show_command(primary.command(), overrides, leave_out=added)
        if head == "extras":
            raise LitlabError(
                f"{override}: litlab has no extras (lightning-hydra-template's), and a key added at the top of "
                f"the config is read by nothing. litlab saves every run's config to <run>/.hydra/config.yaml, "
                f"and `{show}` prints it; leave {key} out.")
        close, _ = closest_first(head, keys)
        meant = f" Did you mean {close[0]}?" if close else ""
        raise LitlabError(
            f"{override} adds {head} at the top of the config, where nothing reads it: {head} is neither a key "
            f"of the config ({', '.join(keys)}) nor a config group.{meant} Check the spelling with `{show}`.")
