"""Settings given to a choice that has none (``averaging=none``, ``mixing=none``, ``compress=none``, ...).

Such a choice is an empty file of its group (``conf/averaging/none.yaml`` holds ``{}``): the run
does without the group and reads none of its keys. Hydra still lets a command add one on top
(``+averaging.decay=0.9``, Hydra's own hint for ``averaging.decay=0.9``), and the run went on
without averaging, without a word. ``config_check`` refuses such a key here, before Hydra makes
the run's folder, in one paragraph that names the key, lists the group's choices and gives the
command with a choice that has the key. Which choices are empty is read from the group's files
where Hydra reads them (its config sources: litlab's conf/, --config-dir, the folders and
packages of ``hydra.searchpath``, ``file://`` or ``pkg://``), each choice from the one file Hydra
composes, the first in search order; no list of them is kept here.

Only a key the command line typed is refused, and not every one:

- a key that a config file sets (an experiment's ``averaging.decay``, run with ``averaging=none``)
  is Hydra's merge of files the user chose, not a setting the user typed: let through;
- in a sweep, a key is the sweep's where some job chooses an option that has that very key
  (``-m averaging=none,ema ++averaging.decay=0.9``; each job's choice as composed, so an
  experiment that chooses ``averaging=ema`` counts, and each option of a group searched in
  ``hydra.sweeper.params``): the empty job carries it unused. A key no job's choice has
  (``averaging=none,swa ++averaging.decay=0.9``: SWA has no decay) is refused; so is one that
  some choice has where a job's choice has settings but not that key (``averaging=none,ema,swa
  ++averaging.decay=0.9``: Hydra gives the key to every job, and SWA's is not built);
- in a single run, a line such a sweep recorded for the job in the run's folder
  (``hydra.run.dir``): ``++averaging.decay=0.9`` in the job's ``.hydra/overrides.yaml`` (its resume,
  ``ckpt_path=last hydra.run.dir=SWEEP/0``), or else in the grid's job of that number where the
  folder's parent holds the sweep's ``multirun.yaml`` (``sweeps/grid_points.job_command``, for a
  job never started); the same key, type (``+``/``++``) and value as Hydra parses them
  (``1e-3`` is ``0.001``), and only where the record's lines choose the option composed now
  (job 1 of that sweep chose ``averaging=ema``: its line does not let a key through under
  ``none``). Any other key typed in a single run is refused, ``++group.KEY`` too: in a new
  folder, it was kept in the config and read by nothing.

It covers the groups of which a run takes one file (``config_check.ONE_CHOICE``). The keys of
``logger`` and ``callbacks`` name entries of a collection rather than settings of one choice:
``+callbacks.mine={_target_: ...}`` adds a callback to ``callbacks=none``. Under ``lr_find``, a key
of a group it never builds (averaging, compress, export) is refused with no choice suggested.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from hydra.plugins.config_source import ConfigSource
from omegaconf import DictConfig, OmegaConf

from litlab.choice_files import (Where, as_sources, choice_keys, composed_with, group_choices, is_empty_choice,
                                 read_file, sources_of)
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.mixing_checks import PASTES_BOXES
from litlab.sweep_keys import (names_group, of_group, recorded_for_folder, same_choice_lines, same_override,
                               setting_key, sweep_choices)
from litlab.sweep_refusals import check_each_choice_takes


def check_empty_choices(cfg: DictConfig, groups: Sequence[str], overrides: list[str], primary: Primary,
                        sweep: Sequence[DictConfig] | None = None, multirun_flag: bool = False) -> None:
    """Refuses a key of one of ``groups`` that the command typed for a chosen file that sets
    nothing (``+averaging.decay=0.9`` under ``averaging=none``), as the module's docstring says.
    ``cfg``: one job's config, with its ``hydra`` node (the choices, the config sources);
    ``overrides``: the command's, as typed; ``sweep``: every job's composed config in a sweep
    (None for a single run), where a job whose choice has the key makes it the sweep's."""
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    sources = sources_of(cfg)
    recorded = None if sweep is not None else recorded_for_folder(cfg)
    for group in groups:
        node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False)
        typed = typed_settings(group, overrides)
        if not typed or not isinstance(node, DictConfig):
            continue
        have = sweep_choices(group, cfg, sweep, overrides) if sweep is not None else {}
        if sweep is not None:
            check_each_choice_takes(group, typed, overrides, primary, have)
        if not _sets_nothing(group, chosen.get(group), node, typed, sources):
            continue
        if sweep is not None:
            refused = [o for o in typed if setting_key(o) not in set().union(*have.values())]
        else:
            lines = same_choice_lines(group, chosen[group], recorded or [], overrides, primary)
            refused = [o for o in typed if not any(same_override(o, line) for line in lines)]
        if refused:
            raise setting_of_empty_choice(group, chosen[group], overrides, primary, _where(sources, primary),
                                          multirun_flag, refused)


def typed_settings(group: str, overrides: list[str]) -> list[str]:
    """The overrides that set a key of ``group`` (``+averaging.decay=0.9``, ``averaging.decay=0.9``,
    ``++averaging.decay=0.9``)."""
    return [o for o in overrides if of_group(o, group) and not o.startswith("~")]


def _sets_nothing(group: str, choice: object, node: DictConfig, typed: list[str],
                  sources: list[ConfigSource] | None) -> bool:
    """Whether ``group=choice`` sets nothing: its file, read from ``sources``; where no source has
    it (or the config does not record them), its node as composed: no ``_target_`` and no key but
    those ``typed``."""
    if not isinstance(choice, str):
        return False  # group=null: no file chosen
    keys = choice_keys(group, choice, sources) if sources is not None else None
    if keys is not None:
        return not keys
    given = {setting_key(o) for o in typed}
    return "_target_" not in node and {str(k) for k in node} <= given


def _where(sources: list[ConfigSource] | None, primary: Primary) -> Where:
    """Where to list a group's choices for the message: the config's sources, else the primary's folders."""
    return sources if sources is not None else (primary.dirs() or [])


def setting_of_empty_choice(group: str, choice: str, overrides: list[str], primary: Primary, where: Where,
                            multirun_flag: bool = False, refused: Sequence[str] = ()) -> LitlabError:
    """The paragraph for keys of ``group`` given to its empty choice ``choice``: the keys as typed
    (those ``refused`` first, then ``+``/``=`` before ``++``), the group's choices, those that have
    every key given, and the command again with the one ``suggested_choice`` picks (the user's
    other overrides kept). Where no choice has them all (``decay`` is EMA's, ``start_epoch``
    SWA's), which choices have each: a command with either would fail on the other key."""
    typed = sorted((o for o in overrides if of_group(o, group)),
                   key=lambda o: (o not in refused, o.startswith(("++", "~"))))
    settings = [o.lstrip("+") for o in typed] or [f"{group}.KEY=VALUE"]
    name = setting_key(settings[0])
    wanted = list(dict.fromkeys(setting_key(s) for s in settings if not s.startswith("~"))) or [name]
    default = "" if any(names_group(o, group) for o in overrides) else " (the default)"
    where = as_sources(where)
    names = group_choices(group, where)
    keys_of = {c: choice_keys(group, c, where) or set() for c in names}
    having = [c for c in names if set(wanted) <= keys_of[c]]
    start = (f"{settings[0]} sets a key of {group}={choice}{default}, which has no settings: nothing would read "
             f"it. The choices of {group} are {', '.join(names)}")
    if primary.kind == "lr_find" and group in _unused_by_lr_find():
        return LitlabError(f"{start}, but {primary.command()} does not use {group} at all, whatever the choice: "
                           f"drop the key here, and give it with a choice that has it to python -m litlab.train, "
                           f"which does.")
    if not having and len(wanted) > 1:
        each = [f"{k}: {group}={'|'.join(c for c in names if k in keys_of[c])}" if any(k in keys_of[c] for c in names)
                else f"{k}: no choice" for k in wanted]
        return LitlabError(f"{start}, and none of them has all of {_listed(wanted)} ({'; '.join(each)}): give only "
                           f"the keys of the choice you mean ({primary.command()} {group}=CHOICE --cfg job lists "
                           f"them).")
    if not having:
        return LitlabError(f"{start}, and none of them has a key {name}: check its spelling in the choice you mean "
                           f"({primary.command()} {group}=CHOICE --cfg job).")
    rest = [o for o in overrides if not of_group(o, group) and not names_group(o, group)]
    suggested = suggested_choice(group, having, where)
    words = [primary.command(), *(["-m"] if multirun_flag else []), *map(shlex.quote, rest), f"{group}={suggested}",
             *map(shlex.quote, settings)]
    return LitlabError(f"{start}; choose one that has {_listed(wanted)} first: {group}={'|'.join(having)} "
                       f"({' '.join(words)}).")


def _unused_by_lr_find() -> tuple[str, ...]:
    """The groups lr_find composes but never builds (``tuning.lr_range.UNUSED_GROUPS``); read only
    for its refusal, as that module brings torch."""
    from litlab.tuning.lr_range import UNUSED_GROUPS

    return UNUSED_GROUPS


def _listed(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def suggested_choice(group: str, having: list[str], where: Where) -> str:
    """The choice the command in the message takes, of ``having`` (the choices with the key, in
    name order). The message names them all; the command should run whatever the user's data, so
    it takes the first that works on every kind of data: a mixer that pastes boxes of images
    (``mixing_checks.PASTES_BOXES``: cutmix, mixup_cutmix) is refused on sequences, and mixup,
    which blends any input, is not (``+mixing.prob=0.5`` gives ``mixing=mixup``, where name order
    gave ``mixing=cutmix``). Only the mixers are known to need a kind of data before the run
    starts; among the others, name order decides."""
    return next((c for c in having if takes_any_data(group, c, where)), having[0])


def takes_any_data(group: str, name: str, where: Where) -> bool:
    """Whether ``group=name`` works on any kind of data (images, sequences, features): false for
    a file of a mixer that pastes boxes of images, read from its ``_target_``."""
    node = read_file(group, name, where)
    return not (isinstance(node, DictConfig) and node.get("_target_") in PASTES_BOXES)


def key_of_empty_choice(key: str, groups: Sequence[str], overrides: list[str], primary: Primary,
                        dirs: Sequence[Path] | None = None) -> LitlabError | None:
    """The paragraph for Hydra's "not a key" about ``key`` (``averaging.decay``) where the command
    chooses an empty option of its group; None where it does not (a misspelt key of a choice).
    ``dirs``: the folders Hydra searches, where known (None where a ``pkg://`` source is among them)."""
    group = key.split(".")[0]
    if "." not in key or group not in groups:
        return None
    if dirs is not None and not any(is_empty_choice(group, c, dirs) for c in group_choices(group, dirs)):
        return None  # no empty choice to be in: spare the second composition
    cfg = composed_without(group, overrides, primary)
    if cfg is None:
        return None
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False)
    sources = sources_of(cfg)
    if not isinstance(node, DictConfig) or not _sets_nothing(group, choice, node, [], sources):
        return None
    return setting_of_empty_choice(group, choice, overrides, primary, _where(sources, primary))


def composed_without(group: str, overrides: list[str], primary: Primary) -> DictConfig | None:
    """``primary``'s config (with its ``hydra`` node) as ``overrides`` compose it without their keys
    of ``group`` (one of which Hydra refused); None where that fails too."""
    return composed_with([o for o in overrides if not of_group(o, group)], primary)
