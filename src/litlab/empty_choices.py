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

import re
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
# a defaults entry naming a file of the same group, in the same package (``_base``)
_PLAIN_NAME = re.compile(r"[\w.-]+")


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


def read_file(group: str, name: str, where: Where) -> object | None:
    """The config of ``group/name`` as written (``defaults`` kept), from the file Hydra composes:
    that of the first source in search order that has it, as Hydra's loader takes it. A copy of
    the same name further on is never read (litlab's conf/ comes before --config-dir and
    ``hydra.searchpath``: a ``--config-dir`` of one's own with ``averaging/none.yaml`` holding keys
    still composes litlab's empty file). None where no source has the file."""
    path = f"{group}/{name}"
    return next((s.load_config(path).config for s in as_sources(where) if s.is_config(path)), None)


def choice_keys(group: str, name: str, where: Where, _seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The top-level keys that ``group=name`` sets: those of the file Hydra reads (``read_file``),
    with those of the group's files it builds on (``defaults: [_base, _self_]``, each found again
    in search order); None (not known: the caller reads the node as composed) where no source has
    the file or one it builds on, or where it builds on an entry that is not a plain name of its
    group (``cutmix@_here_``, ``/other/file``, ``override ...``)."""
    sources = as_sources(where)
    node = read_file(group, name, sources)
    if node is None or name in _seen:
        return None
    if not isinstance(node, DictConfig):
        return set()
    keys = {str(k) for k in node if k != "defaults"}
    for base in node.get("defaults") or []:
        if base == "_self_":
            continue
        if not isinstance(base, str) or not _PLAIN_NAME.fullmatch(base):
            return None
        more = choice_keys(group, base, sources, _seen | {name})
        if more is None:
            return None
        keys |= more
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
    (None for a single run), where a job whose choice has the key makes it the sweep's."""
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    sources = sources_of(cfg)
    recorded = None if sweep is not None else recorded_for_folder(cfg)
    for group in groups:
        node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False)
        typed = typed_settings(group, overrides)
        if not typed or not isinstance(node, DictConfig):
            continue
        have = _sweep_choices(group, cfg, sweep, overrides) if sweep is not None else {}
        if sweep is not None:
            _check_each_choice_takes(group, typed, overrides, primary, have)
        if not _sets_nothing(group, chosen.get(group), node, typed, sources):
            continue
        if sweep is not None:
            refused = [o for o in typed if _setting_key(o) not in set().union(*have.values())]
        else:
            lines = _same_choice_lines(group, chosen[group], recorded or [], overrides, primary)
            refused = [o for o in typed if not any(_same_override(o, line) for line in lines)]
        if refused:
            raise setting_of_empty_choice(group, chosen[group], overrides, primary, _where(sources, primary),
                                          multirun_flag, refused)


def typed_settings(group: str, overrides: list[str]) -> list[str]:
    """The overrides that set a key of ``group`` (``+averaging.decay=0.9``, ``averaging.decay=0.9``,
    ``++averaging.decay=0.9``)."""
    return [o for o in overrides if _of_group(o, group) and not o.startswith("~")]


def _setting_key(override: str) -> str:
    """The key of its group an override sets: ``decay`` of ``++averaging.decay=0.9``."""
    return override.lstrip("+~").split("=", 1)[0].split(".")[1]


def _sweep_choices(group: str, cfg: DictConfig, sweep: Sequence[DictConfig],
                   overrides: list[str]) -> dict[str, set[str]]:
    """The choices of ``group`` a sweep makes, each with the keys it has: each job's choice as
    composed, and each option a sweeper searches for the group (``hydra.sweeper.params``) unless
    the command line gives the group (``averaging=none``: both sweepers then take its value)."""
    keys: dict[str, set[str]] = {}
    for job in sweep:
        choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
        if isinstance(choice, str):
            keys.setdefault(choice, set()).update(_job_keys(group, job))
    searched = OmegaConf.select(cfg, f"hydra.sweeper.params.{group}", default=None,
                                throw_on_resolution_failure=False)
    if searched is not None and not any(_names_group(o, group) for o in overrides):
        sources = sources_of(cfg)
        for option in _options(group, str(searched)):
            found = choice_keys(group, option, sources) if sources is not None else None
            keys.setdefault(option, set()).update(found or set())
    return keys


def _check_each_choice_takes(group: str, typed: list[str], overrides: list[str], primary: Primary,
                             have: dict[str, set[str]]) -> None:
    """Refuses a key the command line gives every job of a sweep where some choice of the sweep
    (``have``) would fail on it: ``+averaging.decay`` where a searched option already sets decay
    (Hydra: "Could not append to config"), or a key some choice has given to a choice with
    settings but not that key (``-m averaging=none,ema,swa ++averaging.decay=0.9``: SWA's job was
    not built, after its data was prepared). A choice with no settings carries it unread."""
    rest = [o for o in overrides if not _of_group(o, group) and not _names_group(o, group)]
    again = " ".join([primary.command(), "-m", *map(shlex.quote, rest)])
    for o in typed:
        key = _setting_key(o)
        having = sorted(c for c, k in have.items() if key in k)
        if having and o.startswith("+") and not o.startswith("++"):
            raise LitlabError(
                f"{o} appends {group}.{key} to every job of the sweep, but {group}={having[0]} of the sweep already "
                f"sets {key}: Hydra cannot append it there and that job would fail. Set it with ++ instead "
                f"({again} +{o}).")
        lacking = sorted(c for c, k in have.items() if k and having and key not in k)
        if lacking:
            raise LitlabError(
                f"{o.lstrip('+')} is given to every job of the sweep, and the job with {group}={lacking[0]} has no "
                f"key {key} (of the sweep's choices, {group}={'|'.join(having)} {'has' if len(having) == 1 else 'have'}"
                f" it): that job would fail when {group} is built, after its data is prepared. Sweep them "
                f"separately: {again} {group}={','.join(having)} {' '.join(map(shlex.quote, typed))}, then {again} "
                f"{group}={','.join(sorted(c for c in have if c not in having))}.")


def _names_group(override: str, group: str) -> bool:
    """Whether ``override`` chooses a file of ``group`` (``averaging=none``, ``+averaging=ema``)."""
    return override.lstrip("+~").split("=", 1)[0] == group


def _options(group: str, value: str) -> list[str]:
    """The choices a sweeper's value for ``group`` names: each of ``choice(none,ema)`` or
    ``none,ema``, or the one given; none where Hydra cannot parse it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(f"{group}={value}")
        return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [
            parsed.get_value_element_as_str()]
    except HydraException:
        return []


def _job_keys(group: str, job: DictConfig) -> set[str]:
    """The keys of ``group`` that a sweep's ``job`` (its composed config) has in the choice it
    makes: its file's, read from the job's sources; where they cannot be read, those of its node
    as composed if it has a class (then every key counts), else none."""
    choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
    node = OmegaConf.select(job, group, throw_on_resolution_failure=False)
    if not isinstance(choice, str) or not isinstance(node, DictConfig):
        return set()
    sources = sources_of(job)
    keys = choice_keys(group, choice, sources) if sources is not None else None
    if keys is not None:
        return keys
    return {str(k) for k in node} if "_target_" in node else set()


def _same_choice_lines(group: str, choice: str, lines: list[str], overrides: list[str],
                       primary: Primary) -> list[str]:
    """``lines`` (a sweep's record for the run's folder) where they choose ``group=choice``, as
    composed now: the record's lines with the command's ``hydra.*`` lines (its search path);
    none where they choose another option, or do not compose."""
    if not lines:
        return []
    cfg = composed_with([*lines, *(o for o in overrides if o.startswith("hydra."))], primary)
    recorded = None if cfg is None else OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    return lines if recorded == choice else []


def _same_override(typed: str, line: str) -> bool:
    """Whether two overrides are the same as Hydra parses them: type (``+``, ``++``), key and value
    (``averaging.decay=1e-3`` is Hydra's record ``averaging.decay=0.001``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        a, b = parser.parse_override(typed), parser.parse_override(line)
    except HydraException:
        return typed == line
    return (a.type, a.key_or_group, a.value()) == (b.type, b.key_or_group, b.value())


def recorded_for_folder(cfg: DictConfig) -> list[str]:
    """The overrides a sweep recorded for the job in the single run's folder (``hydra.run.dir``):
    those of the job's ``.hydra/overrides.yaml`` (its resume: ``ckpt_path=last
    hydra.run.dir=SWEEP/0``), else, where the folder's parent is a grid sweep's (its
    ``multirun.yaml``), those of the grid's job of the folder's number (the command
    ``sweeps/grid_points.job_command`` gives for a job never started). Empty for a folder of
    neither: a new run's."""
    run_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None, throw_on_resolution_failure=False)
    if not run_dir:
        return []
    folder = Path(str(run_dir))
    lines = _override_lines(folder / ".hydra" / "overrides.yaml")
    if not lines and folder.name.isdigit() and (folder.parent / "multirun.yaml").is_file():
        from litlab.sweeps.grid_points import grid_points

        points = grid_points(folder.parent) or []
        lines = list(points[int(folder.name)]) if int(folder.name) < len(points) else []
    return lines


def _override_lines(path: Path) -> list[str]:
    """The overrides listed in a job's ``.hydra/overrides.yaml``; none where it cannot be read."""
    import yaml

    try:
        lines = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    return [str(o) for o in lines] if isinstance(lines, list) else []


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
    given = {_setting_key(o) for o in typed}
    return "_target_" not in node and {str(k) for k in node} <= given


def _where(sources: list[ConfigSource] | None, primary: Primary) -> Where:
    """Where to list a group's choices for the message: the config's sources, else the primary's folders."""
    return sources if sources is not None else (primary.dirs() or [])


def _of_group(override: str, group: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0].startswith(f"{group}.")


def setting_of_empty_choice(group: str, choice: str, overrides: list[str], primary: Primary, where: Where,
                            multirun_flag: bool = False, refused: Sequence[str] = ()) -> LitlabError:
    """The paragraph for keys of ``group`` given to its empty choice ``choice``: the keys as typed
    (those ``refused`` first, then ``+``/``=`` before ``++``), the group's choices, those that have
    every key given, and the command again with the one ``suggested_choice`` picks (the user's
    other overrides kept). Where no choice has them all (``decay`` is EMA's, ``start_epoch``
    SWA's), which choices have each: a command with either would fail on the other key."""
    typed = sorted((o for o in overrides if _of_group(o, group)),
                   key=lambda o: (o not in refused, o.startswith(("++", "~"))))
    settings = [o.lstrip("+") for o in typed] or [f"{group}.KEY=VALUE"]
    name = _setting_key(settings[0])
    wanted = list(dict.fromkeys(_setting_key(s) for s in settings if not s.startswith("~"))) or [name]
    default = "" if any(_names_group(o, group) for o in overrides) else " (the default)"
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
    rest = [o for o in overrides if not _of_group(o, group) and not _names_group(o, group)]
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
    return composed_with([o for o in overrides if not _of_group(o, group)], primary)


def composed_with(overrides: list[str], primary: Primary) -> DictConfig | None:
    """``primary``'s config (with its ``hydra`` node) as ``overrides`` compose it; None where that fails."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        primary.start_hydra()
        return compose(primary.name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError):
        return None
    finally:
        GlobalHydra.instance().clear()
