"""Settings given to a choice that has none (``averaging=none``, ``mixing=none``, ``compress=none``, ...).

Such a choice is an empty file of its group (``conf/averaging/none.yaml`` holds ``{}``): the run
does without the group and reads none of its keys. Hydra still lets a command add one on top
(``+averaging.decay=0.9``, Hydra's own hint for ``averaging.decay=0.9``), and the run went on
without averaging, without a word. ``config_check`` refuses such a key here, before Hydra makes
the run's folder, in one paragraph that names the key, lists the group's choices and gives the
command with a choice that has the key. Which choices are empty is read from the group's files in
the searched folders; no list of them is kept here.

It covers the groups of which a run takes one file (``config_check.ONE_CHOICE``). The keys of
``logger`` and ``callbacks`` name entries of a collection rather than settings of one choice:
``+callbacks.mine={_target_: ...}`` adds a callback to ``callbacks=none``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.mixing_checks import PASTES_BOXES


def group_choices(group: str, dirs: Sequence[Path]) -> list[str]:
    """The choices of ``group`` in the searched folders: its files, without the shared bases (``_name``)."""
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml") if not p.stem.startswith("_")})


def choice_keys(group: str, name: str, dirs: Sequence[Path], _seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The top-level keys that ``group=name`` sets: those of its file, with those of the group's
    files it builds on (``defaults: [_base, _self_]``); None where no searched folder has the file.
    Every folder's copy counts, so a user's own file of the same name with keys is not empty."""
    paths = [d / group / f"{name}.yaml" for d in dirs if (d / group / f"{name}.yaml").is_file()]
    if not paths or name in _seen:
        return None
    keys: set[str] = set()
    for path in paths:
        node = OmegaConf.load(path)
        if not isinstance(node, DictConfig):
            continue
        keys |= {str(k) for k in node if k != "defaults"}
        for base in node.get("defaults") or []:
            if isinstance(base, str) and base != "_self_":
                keys |= choice_keys(group, base, dirs, _seen | {name}) or set()
    return keys


def is_empty_choice(group: str, name: object, dirs: Sequence[Path]) -> bool:
    """Whether ``group=name`` is a file that sets nothing (``none.yaml``: ``{}``)."""
    return isinstance(name, str) and choice_keys(group, name, dirs) == set()


def check_empty_choices(cfg: DictConfig, groups: Sequence[str], dirs: Sequence[Path], overrides: list[str],
                        primary: Primary, sweep: list[list[str]] | None = None, multirun_flag: bool = False) -> None:
    """Refuses a key of one of ``groups`` whose chosen file sets nothing (``+averaging.decay=0.9``
    under ``averaging=none``). ``cfg``: one job's config, with its ``hydra`` node (the choices);
    ``overrides``: the command's, as typed; ``sweep``: every job's overrides, where a job that
    chooses another option of the group (``-m averaging=none,ema ++averaging.decay=0.9``) makes the
    key the sweep's, which the empty job carries unused."""
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    searched = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    for group in groups:
        node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False)
        if not isinstance(node, DictConfig) or not len(node) or not is_empty_choice(group, chosen.get(group), dirs):
            continue
        if sweep is not None and (group in searched or _sweep_chooses(group, sweep, dirs)):
            continue
        given = [f"{group}.{k}={v}" for k, v in OmegaConf.to_container(node, resolve=False).items()]
        raise setting_of_empty_choice(group, chosen[group], overrides, primary, dirs, given, multirun_flag)


def _sweep_chooses(group: str, sweep: list[list[str]], dirs: Sequence[Path]) -> bool:
    """Whether some job of a sweep chooses an option of ``group`` that has settings."""
    return any(o.lstrip("+~").split("=", 1)[0] == group and o.split("=", 1)[1].strip() != "null"
               and not is_empty_choice(group, o.split("=", 1)[1].strip(), dirs)
               for job in sweep for o in job if "=" in o)


def _of_group(override: str, group: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0].startswith(f"{group}.")


def setting_of_empty_choice(group: str, choice: str, overrides: list[str], primary: Primary, dirs: Sequence[Path],
                            given: list[str] | None = None, multirun_flag: bool = False) -> LitlabError:
    """The paragraph for keys of ``group`` given to its empty choice ``choice``: the keys as typed
    (else ``given``, the config's), the group's choices, those that have the first key, and the
    command again with the one ``suggested_choice`` picks (the user's other overrides kept)."""
    typed = [o for o in overrides if _of_group(o, group)]
    settings = [o.lstrip("+") for o in typed] or given or [f"{group}.KEY=VALUE"]
    key = settings[0].split("=", 1)[0]
    name = key.split(".")[1]
    default = "" if any(o.lstrip("+~").split("=", 1)[0] == group for o in overrides) else " (the default)"
    names = group_choices(group, dirs)
    having = [c for c in names if name in (choice_keys(group, c, dirs) or set())]
    start = (f"{settings[0]} sets a key of {group}={choice}{default}, which has no settings: nothing would read "
             f"it. The choices of {group} are {', '.join(names)}")
    if not having:
        return LitlabError(f"{start}, and none of them has a key {name}: check its spelling in the choice you mean "
                           f"({primary.command()} {group}=CHOICE --cfg job).")
    rest = [o for o in overrides if not _of_group(o, group) and o.lstrip("+~").split("=", 1)[0] != group]
    suggested = suggested_choice(group, having, dirs)
    words = [primary.command(), *(["-m"] if multirun_flag else []), *map(shlex.quote, rest), f"{group}={suggested}",
             *map(shlex.quote, settings)]
    return LitlabError(f"{start}; choose one that has {name} first: {group}={'|'.join(having)} "
                       f"({' '.join(words)}).")


def suggested_choice(group: str, having: list[str], dirs: Sequence[Path]) -> str:
    """The choice the command in the message takes, of ``having`` (the choices with the key, in
    name order). The message names them all; the command should run whatever the user's data, so
    it takes the first that works on every kind of data: a mixer that pastes boxes of images
    (``mixing_checks.PASTES_BOXES``: cutmix, mixup_cutmix) is refused on sequences, and mixup,
    which blends any input, is not (``+mixing.prob=0.5`` gives ``mixing=mixup``, where name order
    gave ``mixing=cutmix``). Only the mixers are known to need a kind of data before the run
    starts; among the others, name order decides."""
    return next((c for c in having if takes_any_data(group, c, dirs)), having[0])


def takes_any_data(group: str, name: str, dirs: Sequence[Path]) -> bool:
    """Whether ``group=name`` works on any kind of data (images, sequences, features): false for
    a file of a mixer that pastes boxes of images, read from its ``_target_``."""
    paths = [d / group / f"{name}.yaml" for d in dirs if (d / group / f"{name}.yaml").is_file()]
    nodes = [OmegaConf.load(path) for path in paths]
    return not any(isinstance(n, DictConfig) and n.get("_target_") in PASTES_BOXES for n in nodes)


def key_of_empty_choice(key: str, groups: Sequence[str], overrides: list[str], primary: Primary,
                        dirs: Sequence[Path]) -> LitlabError | None:
    """The paragraph for Hydra's "not a key" about ``key`` (``averaging.decay``) where the command
    chooses an empty option of its group; None where it does not (a misspelt key of a choice)."""
    group = key.split(".")[0]
    if "." not in key or group not in groups or not any(is_empty_choice(group, c, dirs)
                                                         for c in group_choices(group, dirs)):
        return None  # no empty choice to be in: spare the second composition
    choice = chosen_option(group, overrides, primary)
    if not is_empty_choice(group, choice, dirs):
        return None
    return setting_of_empty_choice(group, choice, overrides, primary, dirs)


def chosen_option(group: str, overrides: list[str], primary: Primary) -> str | None:
    """The option of ``group`` that ``overrides`` choose in ``primary``'s config, composed without
    their keys of the group (one of which Hydra refused); None where that fails too."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        primary.start_hydra()
        cfg = compose(primary.name, overrides=[o for o in overrides if not _of_group(o, group)],
                      return_hydra_config=True)
        return OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    except (HydraException, OmegaConfBaseException, ValueError):
        return None
    finally:
        GlobalHydra.instance().clear()
