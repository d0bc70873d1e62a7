"""``--help`` of the entrypoints: what the command does, its config groups and its keys.

Hydra's own help lists every folder of ``conf/`` for every entrypoint, base files included
(``_base``), although eval and predict take none of the training groups and no command takes a
base. This help lists the groups the entrypoint's config uses, their choices and the current
one, then the composed keys (the command line's overrides applied), of the config Hydra runs:
with ``--config-dir DIR --config-name NAME`` the user's own. ``--hydra-help`` still gives Hydra's.
"""

from __future__ import annotations

from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from litlab.config_check import choices, compose_checked, expand_sweeps, explain, overrides_of
from litlab.config_flags import CONF_DIR, config_dirs, primary_of

WHAT = {
    "train": "trains, tests and optionally compresses and exports one model; -m sweeps over values "
             "(model=mlp,cnn) and runs hparams_search=NAME",
    "eval": "tests a checkpoint (or compressed model) on its run's test or val split: ckpt_path=PATH "
            "[split=val]; data.KEY=VALUE and model.KEY=VALUE change the run stored in the checkpoint "
            "(its .hydra/config.yaml lists them)",
    "predict": "classifies image files, folders or an .npz with a checkpoint: ckpt_path=PATH input=PATH",
    "lr_find": "a learning-rate range test: trains as litlab.train would (same groups and overrides) while the "
               "rate rises from lr_find.min_lr to lr_find.max_lr, and suggests a model.optimizer.lr "
               "(lr_find.csv, lr_find.png, metrics.json)",
}


def groups_of(cfg) -> list[str]:
    """The config groups of a composed config, in its defaults list's order (Hydra's own left out).
    Read from what Hydra chose (``hydra.runtime.choices``, filled from the end of the defaults
    list), so a user's own primary config (``--config-name``) lists its own groups."""
    return [group for group in reversed(list(cfg.hydra.runtime.choices))
            if group != "hydra" and not group.startswith("hydra/")]


def help_text(config_name: str, argv: list[str]) -> str:
    """The help of ``python -m litlab.<config_name> argv`` (in a sweep, with its first job's values)."""
    primary = primary_of(argv, config_name)
    dirs = config_dirs(argv, primary) or [CONF_DIR]  # a user's own config folders add choices
    overrides = overrides_of(argv)
    if "-m" in argv or "--multirun" in argv:
        try:
            overrides = expand_sweeps(overrides, dirs=dirs)[0]
        except OverrideParseException as e:
            raise explain(e, overrides, primary) from None
    cfg = compose_checked(overrides, return_hydra_config=True, primary=primary)
    chosen = cfg.hydra.runtime.choices
    lines = [f"{primary.command()}: {WHAT.get(config_name, '')}.", "",
             "Config groups (group=choice; the current one in brackets):"]
    for group in groups_of(cfg):
        names = sorted({name for d in dirs if (d / group).is_dir() for name in choices(group, d)})
        lines.append(f"  {group:<15} [{chosen.get(group) or 'none'}] {', '.join(names)}")
    keys = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)
    lines += ["", "Keys (key=value, group.key=value; +key=value adds one), with this command line's overrides:", "",
              keys.rstrip(), "",
              f"The composed config only: {primary.command()} --cfg job. Hydra's options: --hydra-help."]
    return "\n".join(lines)
