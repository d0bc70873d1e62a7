"""Settings given to a choice that has none (``averaging=none``, ``mixing=none``, ``compress=none``, ...).

Such a choice is an empty file of its group (``conf/averaging/none.yaml`` holds ``{}``): the run
does without the group and reads none of its keys. Hydra still lets a command add one on top
(``+averaging.decay=0.9``, Hydra's own hint for ``averaging.decay=0.9``), and the run went on
without averaging, without a word. ``config_check`` refuses such a key here, before Hydra makes
the run's folder, in one paragraph that names the key, lists the group's choices and gives the
command with a choice that has the key. Which choices are empty is read from the group's files
where Hydra reads them (its config sources: litlab's conf/, --config-dir, the folders and
packages of ``hydra.searchpath``, ``file://`` or ``pkg://``); no list of them is kept here.

Only a key the command line typed is refused, and not every one:

- a key that a config file sets (an experiment's ``averaging.decay``, run with ``averaging=none``)
  is Hydra's merge of files the user chose, not a setting the user typed: let through;
- in a sweep, a key is the sweep's where some job chooses an option that has settings
  (``-m averaging=none,ema ++averaging.decay=0.9``; each job's choice as composed, so an
  experiment that chooses ``averaging=ema`` counts): the empty job carries it unused;
- in a single run, ``++group.KEY`` (force the key in) is taken as deliberate: it is the form in
  which such a sweep records the key for each job, and the job's resume (``ckpt_path=last
  hydra.run.dir=SWEEP/0``) or the grid's command for a job never started
  (``sweeps/grid_points.job_command``) repeats it; ``+group.KEY`` or ``group.KEY`` is refused.

It covers the groups of which a run takes one file (``config_check.ONE_CHOICE``). The keys of
``logger`` and ``callbacks`` name entries of a collection rather than settings of one choice:
``+callbacks.mine={_target_: ...}`` adds a callback to ``callbacks=none``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigSource
from omegaconf import DictConfig, OmegaConf

from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.mixing_checks import PASTES_BOXES

# where a group's files are read: Hydra's config sources, or plain folders (read as its file:// source)
Where = Sequence[Path | ConfigSource]


def as_sources(where: Where) -> list[ConfigSource]:
    """Hydra's readers of ``where``: a folder as its ``file://`` source, a source as it is."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource

    return [FileConfigSource("litlab", f"file://{w}") if isinstance(w, Path) else w for w in where]


def sources_of(cfg: DictConfig) -> list[ConfigSource] | None:
    """The sources Hydra composed ``cfg`` from, in its search order (``hydra.runtime.config_sources``:
    those of the config flags and of ``hydra.searchpath``, pkg:// too), each with Hydra's reader
    for its scheme; None where ``cfg`` does not record them or names a scheme no reader has."""
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins

    infos = OmegaConf.select(cfg, "hydra.runtime.config_sources", default=None)
    if not infos:
        return None
    Plugins.instance()  # registers Hydra's readers (file, pkg, structured) where nothing has yet
    try:
        return [SourcesRegistry.instance().resolve(i.schema)(i.provider, f"{i.schema}://{i.path}") for i in infos]
    except ValueError:
        return None


def group_choices(group: str, where: Where) -> list[str]:
    """The choices of ``group`` in every source: its files, without the shared bases (``_name``)."""
    return sorted({name for source in as_sources(where) if source.is_group(group)
                   for name in source.list(group, ObjectType.CONFIG) if not name.startswith("_")})


def _files(group: str, name: str, where: Where) -> list[object]:
    """The config of ``group/name`` in each source that has the file, as written (``defaults`` kept)."""
    path = f"{group}/{name}"
    return [source.load_config(path).config for source in as_sources(where) if source.is_config(path)]


def choice_keys(group: str, name: str, where: Where, _seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The top-level keys that ``group=name`` sets: those of its file, with those of the group's
    files it builds on (``defaults: [_base, _self_]``); None where no source has the file.
    Every source's copy counts, so a user's own file of the same name with keys is not empty."""
    sources = as_sources(where)
    nodes = _files(group, name, sources)
    if not nodes or name in _seen:
        return None
    keys: set[str] = set()
    for node in nodes:
        if not isinstance(node, DictConfig):
            continue
        keys |= {str(k) for k in node if k != "defaults"}
        for base in node.get("defaults") or []:
            if isinstance(base, str) and base != "_self_":
                keys |= choice_keys(group, base, sources, _seen | {name}) or set()
    return keys


def is_empty_choice(group: str, name: object, where: Where) -> bool:
    """Whether ``group=name`` is a file that sets nothing (``none.yaml``: ``{}``)."""
    return isinstance(name, str) and choice_keys(group, name, where) == set()


def check_empty_choices(cfg: DictConfig, groups: Sequence[str], overrides: list[str], primary: Primary,
                        sweep: Sequence[DictConfig] | None = None, multirun_flag: bool = False) -> None:
    """Refuses a key of one of ``groups`` that the command typed for a chosen file that sets
    nothing (``+averaging.decay=0.9`` under ``averaging=none``), as the module's docstring says.
    ``cfg``: one job's config, with its ``hydra`` node (the choices, the config sources);
    ``overrides``: the command's, as typed; ``sweep``: every job's composed config in a sweep
    (None for a single run), where a job whose choice has settings makes the key the sweep's."""
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    searched = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    sources = sources_of(cfg)
    for group in groups:
        node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False)
        typed = typed_settings(group, overrides, forced_too=sweep is not None)
        if not typed or not isinstance(node, DictConfig) or not _sets_nothing(group, chosen.get(group), node,
                                                                             typed, sources):
            continue
        if sweep is not None and (group in searched or any(_has_settings(group, job) for job in sweep)):
            continue
        raise setting_of_empty_choice(group, chosen[group], overrides, primary, _where(sources, primary),
                                      multirun_flag)


def typed_settings(group: str, overrides: list[str], forced_too: bool = False) -> list[str]:
    """The overrides that set a key of ``group`` (``+averaging.decay=0.9``, ``averaging.decay=0.9``);
    ``++averaging.decay=0.9`` too only where ``forced_too`` (a sweep: the form every sweep over an
    empty choice needs, refused where no job has the key; in a single run, a job of such a sweep)."""
    return [o for o in overrides if _of_group(o, group) and not o.startswith("~")
            and (forced_too or not o.startswith("++"))]


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
    given = {o.lstrip("+").split("=", 1)[0].split(".")[1] for o in typed}
    return "_target_" not in node and {str(k) for k in node} <= given


def _has_settings(group: str, job: DictConfig) -> bool:
    """Whether a sweep's ``job`` (its composed config) chooses an option of ``group`` that has settings."""
    choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
    node = OmegaConf.select(job, group, throw_on_resolution_failure=False)
    if not isinstance(choice, str) or not isinstance(node, DictConfig):
        return False
    sources = sources_of(job)
    keys = choice_keys(group, choice, sources) if sources is not None else None
    return bool(keys) if keys is not None else "_target_" in node


def _where(sources: list[ConfigSource] | None, primary: Primary) -> Where:
    """Where to list a group's choices for the message: the config's sources, else the primary's folders."""
    return sources if sources is not None else (primary.dirs() or [])


def _of_group(override: str, group: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0].startswith(f"{group}.")


def setting_of_empty_choice(group: str, choice: str, overrides: list[str], primary: Primary, where: Where,
                            multirun_flag: bool = False) -> LitlabError:
    """The paragraph for keys of ``group`` given to its empty choice ``choice``: the keys as typed
    (a refused one first), the group's choices, those that have the first key, and the command
    again with the one ``suggested_choice`` picks (the user's other overrides kept)."""
    typed = sorted((o for o in overrides if _of_group(o, group)), key=lambda o: o.startswith(("++", "~")))
    settings = [o.lstrip("+") for o in typed] or [f"{group}.KEY=VALUE"]
    key = settings[0].lstrip("~").split("=", 1)[0]
    name = key.split(".")[1]
    default = "" if any(o.lstrip("+~").split("=", 1)[0] == group for o in overrides) else " (the default)"
    where = as_sources(where)
    names = group_choices(group, where)
    having = [c for c in names if name in (choice_keys(group, c, where) or set())]
    start = (f"{settings[0]} sets a key of {group}={choice}{default}, which has no settings: nothing would read "
             f"it. The choices of {group} are {', '.join(names)}")
    if not having:
        return LitlabError(f"{start}, and none of them has a key {name}: check its spelling in the choice you mean "
                           f"({primary.command()} {group}=CHOICE --cfg job).")
    rest = [o for o in overrides if not _of_group(o, group) and o.lstrip("+~").split("=", 1)[0] != group]
    suggested = suggested_choice(group, having, where)
    words = [primary.command(), *(["-m"] if multirun_flag else []), *map(shlex.quote, rest), f"{group}={suggested}",
             *map(shlex.quote, settings)]
    return LitlabError(f"{start}; choose one that has {name} first: {group}={'|'.join(having)} "
                       f"({' '.join(words)}).")


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
    return not any(isinstance(n, DictConfig) and n.get("_target_") in PASTES_BOXES for n in _files(group, name, where))


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
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        primary.start_hydra()
        return compose(primary.name, overrides=[o for o in overrides if not _of_group(o, group)],
                       return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError):
        return None
    finally:
        GlobalHydra.instance().clear()
