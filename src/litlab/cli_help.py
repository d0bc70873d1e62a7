"""``--help`` of the entrypoints: what the command does, its config groups and its keys.

Hydra's own help lists every folder of ``conf/`` for every entrypoint, base files included
(``_base``), although eval and predict take none of the training groups and no command takes a
base. This help lists the groups the entrypoint's config uses, their choices and the current
one, then the composed keys (the command line's overrides applied). ``--hydra-help`` still gives
Hydra's.
"""

from __future__ import annotations

from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from litlab.config_check import (CONF_DIR, choices, compose_checked, expand_sweeps, explain, overrides_of,
                                 searched_dirs)

WHAT = {
    "train": "trains, tests and optionally compresses and exports one model; -m sweeps over values "
             "(model=mlp,cnn) and runs hparams_search=NAME",
    "eval": "tests a checkpoint (or compressed model) on its run's test or val split: ckpt_path=PATH "
            "[split=val]; data.KEY=VALUE and model.KEY=VALUE change the run stored in the checkpoint "
            "(its .hydra/config.yaml lists them)",
    "predict": "classifies image files, folders or an .npz with a checkpoint: ckpt_path=PATH input=PATH",
}


def groups_of(config_name: str) -> list[str]:
    """The config groups of an entrypoint, in its defaults list's order (Hydra's own left out)."""
    found = []
    for entry in OmegaConf.load(CONF_DIR / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, str) or not entry:
            continue
        group = next(iter(entry)).removeprefix("override ").removeprefix("optional ")
        if group != "hydra":
            found.append(group)
    return found


def help_text(config_name: str, argv: list[str]) -> str:
    """The help of ``python -m litlab.<config_name> argv`` (in a sweep, with its first job's values)."""
    overrides = overrides_of(argv)
    if "-m" in argv or "--multirun" in argv:
        try:
            overrides = expand_sweeps(overrides)[0]
        except OverrideParseException as e:
            raise explain(e, overrides, config_name) from None
    cfg = compose_checked(overrides, config_name, return_hydra_config=True)
    chosen = cfg.hydra.runtime.choices
    lines = [f"python -m litlab.{config_name}: {WHAT.get(config_name, '')}.", "",
             "Config groups (group=choice; the current one in brackets):"]
    extra = searched_dirs(argv) or []  # a user's own config folders (hydra.searchpath) add choices
    for group in groups_of(config_name):
        names = sorted({name for d in (CONF_DIR, *extra) if (d / group).is_dir() for name in choices(group, d)})
        lines.append(f"  {group:<15} [{chosen.get(group) or 'none'}] {', '.join(names)}")
    keys = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)
    lines += ["", "Keys (key=value, group.key=value; +key=value adds one), with this command line's overrides:", "",
              keys.rstrip(), "",
              f"The composed config only: python -m litlab.{config_name} --cfg job. Hydra's options: --hydra-help."]
    return "\n".join(lines)
