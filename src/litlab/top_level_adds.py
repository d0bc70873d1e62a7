"""A key added at the top of the config (``+foo=1``, ``++extras.print_config=false``) that no code reads.

Hydra adds such a key, and the run went ahead with exit 0 as if it had been used: litlab reads the
top-level keys of its own config files (``seed``, ``tags``, ``optimized_metric``, ...) and the nodes
of its groups, nothing else. lightning-hydra-template's habits (``+extras.print_config=False``,
``+extras.enforce_tags=...``) came in this way. A ``+``/``++`` key is let through where its first part
is a key of the config composed without it (the primary file, its groups' nodes, an experiment's
keys), a config group (a folder Hydra searches: ``+experiment=...``), or Hydra's own (``hydra.*``).
"""

from __future__ import annotations

from omegaconf import DictConfig

from litlab.choice_files import COMPOSE_ERRORS, compose_as_hydra
from litlab.config_flags import Primary, config_dirs
from litlab.errors import LitlabError
from litlab.show_node import show_command
from litlab.target_arguments import closest_first


def _head(override: str) -> str:
    """The first part of an override's key: ``extras`` of ``+extras.print_config=False``."""
    return override.lstrip("+").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]


def check_top_level_adds(argv: list[str], overrides: list[str], primary: Primary) -> None:
    """Refuses a ``+``/``++`` override of ``overrides`` (one job's, without sweeps) whose first part is
    neither a key of the config composed without it nor a config group, naming it."""
    dirs = config_dirs(argv, primary)
    if dirs is None:  # a package's folder (pkg://): its groups only Hydra can list
        return
    groups = {p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()}
    added = [o for o in overrides if o.startswith("+") and "=" in o and _head(o) not in ("hydra", *groups)]
    if not added:
        return
    try:
        cfg = compose_as_hydra([o for o in overrides if o not in added], primary, return_hydra_config=False)
    except COMPOSE_ERRORS:  # the other overrides do not compose: that is refused, in its own words, after this
        return
    keys = [str(k) for k in cfg.keys()] if isinstance(cfg, DictConfig) else []
    for override in added:
        head = _head(override)
        if head in keys:
            continue
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
