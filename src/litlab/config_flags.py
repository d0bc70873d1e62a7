"""Which config an entrypoint composes, and where Hydra looks for its files.

litlab's own ``conf/<entrypoint>.yaml`` unless Hydra's flags say otherwise: ``--config-name``,
``--config-dir`` and ``--config-path`` (read as Hydra reads them, ``Primary``), and the folders of
``hydra.searchpath``. The start-up checks (``config_check``), ``--help``, the commands litlab writes
for a run (resume, DDP ranks) compose what Hydra will, not litlab's ``train`` whatever the flags said.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from litlab.errors import LitlabError
from litlab.sweeps.sweep_table import is_under

CONF_DIR = Path(__file__).resolve().parent / "conf"


def hydra_args(argv: list[str]) -> argparse.Namespace | None:
    """The command line as Hydra's own parser reads it (its flags, and the overrides between
    them); None where that parser would stop (``--version``, ``--help``, a flag it does not know),
    which Hydra then reports itself."""
    from hydra._internal.utils import get_args_parser

    try:  # quietly: Hydra's own parse, which runs next, prints --version or a usage error once
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return get_args_parser().parse_intermixed_args(argv)  # flags may come between the overrides
    except SystemExit:
        return None


def shows_config(argv: list[str]) -> bool:
    """Whether ``argv`` asks Hydra to print the config instead of running it (``--cfg job``/``-c``,
    ``--info``/``-i``): litlab's messages point there to show a node's keys, so a value that is
    still to be given (``data.path``) must not stop it."""
    args = hydra_args(argv)
    return args is not None and (args.cfg is not None or args.info is not None)


@dataclass(frozen=True)
class Primary:
    """The config an entrypoint composes and the folders Hydra looks in for it: litlab's own
    ``conf/<kind>.yaml``, unless Hydra's flags name another (``--config-dir my_conf --config-name
    mytrain``, a file whose ``defaults: [train, ...]`` builds on litlab's). ``kind`` is the
    entrypoint (train, eval, predict): it picks litlab's checks and the module that runs;
    ``name`` is the file composed. Checks that composed litlab's ``train`` whatever the flags
    said checked another config, and another run folder, than the one Hydra then ran."""

    kind: str = "train"
    name: str = "train"
    # Hydra's "main" folder: litlab's conf/, or --config-path's (a pkg:// string: a package's)
    main: Path | str = CONF_DIR
    # --config-dir (absolute): searched after main, as Hydra adds it (provider "command-line")
    extra: Path | None = None

    def dirs(self) -> list[Path] | None:
        """The folders searched for config files, main first; None where main is a package."""
        if isinstance(self.main, str):
            return None
        return [self.main, *([self.extra] if self.extra is not None else [])]

    def flags(self) -> list[str]:
        """Hydra's flags that compose this config again (one word each, for a command litlab writes)."""
        words = []
        if isinstance(self.main, str) or (self.main != CONF_DIR and self.main.parts[-2:] != ("litlab", "conf")):
            words.append(f"--config-path={self.main}")  # litlab's conf/, of this or another install, is the default
        if self.extra is not None:
            words.append(f"--config-dir={self.extra}")
        if self.name != self.kind:
            words.append(f"--config-name={self.name}")
        return words

    def command(self) -> str:
        """``python -m litlab.<kind>`` with the flags, as the user can type it again."""
        return " ".join([f"python -m litlab.{self.kind}", *map(shlex.quote, self.flags())])

    def start_hydra(self) -> None:
        """Initializes Hydra with the search path its ``hydra.main`` builds from these flags
        (hydra/_internal/utils.py ``_run_hydra``): --config-dir goes before the structured configs."""
        from hydra import version
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery

        version.setbase("1.3")
        search_path = create_config_search_path(self.main if isinstance(self.main, str) else f"file://{self.main}")
        if self.extra is not None:
            search_path.prepend(provider="command-line", path=f"file://{self.extra}",
                                anchor=SearchPathQuery(provider="schema"))
        Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)

    @classmethod
    def of_run(cls, hydra_cfg, kind: str) -> Primary:
        """The primary config a run was composed from, as its Hydra config records it
        (``hydra.job.config_name``; ``hydra.runtime.config_sources``, where --config-dir is the
        provider "command-line"): the live ``HydraConfig`` or a run's ``.hydra/hydra.yaml``."""
        sources = {s.provider: s for s in hydra_cfg.runtime.config_sources or []}
        main, extra = sources.get("main"), sources.get("command-line")
        return cls(kind, str(hydra_cfg.job.config_name or kind),
                   CONF_DIR if main is None else Path(main.path) if main.schema == "file" else f"pkg://{main.path}",
                   None if extra is None else Path(extra.path))


def primary_of(argv: list[str], kind: str = "train", conf_dir: Path = CONF_DIR) -> Primary:
    """The primary config of ``python -m litlab.<kind> argv``: Hydra's ``--config-name/-cn``,
    ``--config-dir/-cd`` and ``--config-path/-cp`` read as Hydra reads them. A folder that is not
    there is one paragraph naming the flag (Hydra's own error ended in exit status 1)."""
    args = hydra_args(argv)
    if args is None:
        return Primary(kind, kind, conf_dir)
    main: Path | str = conf_dir
    if args.config_path is not None:
        main = _config_path(args.config_path)
    extra = None
    if args.config_dir is not None:
        extra = Path(os.path.abspath(args.config_dir))
        if not extra.is_dir():
            raise LitlabError(
                f"--config-dir {args.config_dir}: {extra} is {'a file, not a folder' if extra.exists() else 'no folder'}. "
                f"Give the folder that holds your own config files (e.g. --config-dir my_conf for my_conf/mytrain.yaml "
                f"and my_conf/model/NAME.yaml), from the current folder {Path.cwd()} or as an absolute path.")
    return Primary(kind, args.config_name or kind, main, extra)


def _config_path(value: str) -> Path | str:
    """``--config-path`` as Hydra reads it: absolute, ``pkg://``, or relative to litlab's package folder."""
    if value.startswith("pkg://"):
        return value
    path = Path(value) if os.path.isabs(value) else Path(os.path.normpath(CONF_DIR.parent / value))
    if not path.is_dir():
        raise LitlabError(
            f"--config-path {value}: {path} is no folder. --config-path replaces litlab's own conf/ and a relative "
            f"one is read from litlab's package folder ({CONF_DIR.parent}), not the current folder. For a folder of "
            f"your own configs next to litlab's, give --config-dir DIR (and --config-name NAME for its primary config).")
    return path


def no_primary(primary: Primary) -> LitlabError:
    """The one paragraph for a primary config that none of the searched folders holds."""
    dirs = primary.dirs() or []
    names = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
    where = " and ".join(f"{d}/" for d in dirs) or "the folders Hydra searches"
    held = f"they hold {', '.join(names)}" if names else "they hold no .yaml file"
    if primary.name != primary.kind:
        return LitlabError(
            f"--config-name {primary.name}: there is no {primary.name}.yaml in {where}, where Hydra looks for the "
            f"config to compose ({held}). Give one of those (its name without .yaml), put {primary.name}.yaml into "
            f"the folder given with --config-dir DIR, or leave --config-name out for litlab's own {primary.kind} config.")
    return LitlabError(
        f"--config-path {primary.main}: there is no {primary.kind}.yaml in {where}, the config python -m "
        f"litlab.{primary.kind} composes ({held}). Name one of those with --config-name NAME, or give your own folder "
        f"with --config-dir DIR instead of --config-path (litlab's own conf/ is then still searched).")


def searched_dirs(argv: list[str]) -> list[Path] | None:
    """The folders of ``hydra.searchpath=[file://DIR,...]`` on the command line, where Hydra also
    looks for config files (a user's own conf/model/my_net.yaml); None when one of them is not a
    plain folder (``pkg://``), whose files only Hydra can list."""
    dirs = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") != "hydra.searchpath":
            continue
        for entry in value.strip().strip("[]").split(","):
            entry = entry.strip().strip("'\"")
            if entry.startswith("pkg://"):
                return None
            if entry:
                dirs.append(Path(entry.removeprefix("file://")))
    return dirs


def config_dirs(argv: list[str], primary: Primary) -> list[Path] | None:
    """Every folder Hydra looks in for config files: litlab's conf/ (or --config-path's), the
    --config-dir and those of ``hydra.searchpath``; None where one is a package (``pkg://``),
    whose files only Hydra can list."""
    own, searched = primary.dirs(), searched_dirs(argv)
    return None if own is None or searched is None else [*own, *searched]


def config_words(hydra_cfg, kind: str = "train") -> list[str]:
    """The config flags and ``hydra.searchpath`` overrides that compose a run's config again, from
    its ``hydra`` node (``hydra.job.config_name``, ``hydra.runtime.config_sources``,
    ``hydra.overrides.hydra``; a run's ``.hydra/hydra.yaml`` or a sweep's ``multirun.yaml``); none
    where the node lacks them. Without them a command litlab writes for the run (a resume, a
    sweep's job) composed litlab's ``train`` config, which refused the run's own choices."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        flags = Primary.of_run(hydra_cfg, kind).flags()
        searchpath = [str(o) for o in hydra_cfg.overrides.hydra or []
                      if is_under(str(o).lstrip("+~").split("=", 1)[0], ("hydra.searchpath",))]
    except (OmegaConfBaseException, AttributeError, TypeError):  # no such keys
        return []
    return [*flags, *searchpath]


def recorded_config_words(record: Path, kind: str = "train") -> list[str]:
    """``config_words`` of the ``hydra`` node in ``record`` (a run's ``.hydra/hydra.yaml``, a
    sweep's ``multirun.yaml``); none where that record is missing or unreadable (older, or hand-made)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return config_words(OmegaConf.load(record).hydra, kind)
    except (OSError, yaml.YAMLError, OmegaConfBaseException):
        return []
