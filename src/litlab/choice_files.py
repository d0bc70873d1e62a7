"""A group's choices and the keys each sets, read from its files where Hydra reads them.

Hydra's config sources (litlab's conf/, --config-dir, the folders and packages of
``hydra.searchpath``, ``file://`` or ``pkg://``) in its search order; each choice from the one file
Hydra composes, the first in search order, with the group's files it builds on. No list of the
choices is kept here; ``composed_with`` composes the whole config as Hydra does. Used by
``empty_choices`` (which choices set nothing) and ``sweep_keys`` (which keys a sweep's choices have).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.errors import HydraException
from hydra.plugins.config_source import ConfigSource
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.config_flags import Primary

# where a group's files are read: Hydra's config sources, or plain folders (read as its file:// source)
Where = Sequence[Path | ConfigSource]
# a defaults entry naming a file of the same group, in the same package (``_base``)
_PLAIN_NAME = re.compile(r"[\w.-]+")
# what composing a config raises for the user's overrides or files (a key in no node, a missing choice)
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException, ValueError)


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


def composed_with(overrides: list[str], primary: Primary) -> DictConfig | None:
    """``primary``'s config (with its ``hydra`` node) as ``overrides`` compose it; None where that fails."""
    try:
        return compose_as_hydra(overrides, primary)
    except COMPOSE_ERRORS:
        return None


def compose_as_hydra(overrides: list[str], primary: Primary, return_hydra_config: bool = True) -> DictConfig:
    """``primary``'s config (with its ``hydra`` node unless ``return_hydra_config`` is False) as
    ``overrides`` compose it, Hydra left as it was found (cleared); where that fails, one of
    ``COMPOSE_ERRORS``, whose text names what failed (``misspelt_keys`` reads the key Hydra found in
    no node from it, ``searched_groups`` the key a trial lacks, ``config_check.compose_checked`` words
    the refusal)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        primary.start_hydra()
        return compose(primary.name, overrides=overrides, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
