"""Hydra's flags that print the config instead of running it (``--cfg``, ``--info``), given with a sweep.

Hydra prints one job's config, composed as a single run. With ``-m`` it stops with a traceback
("Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"); without
``-m``, a swept value (``hparams_search=digits_optuna model=cnn,mlp --cfg job``) stops it with
advice to add ``--multirun``, which fails in turn. Both are refused here in one paragraph with the
command that prints the config: without ``-m``, each swept key at its first value. A search file
(``hparams_search=NAME``, which sets ``hydra.mode=MULTIRUN``) prints fine without ``-m``. Any other
two of Hydra's commands given together (``-m --run``, ``--cfg job --info``) got the same traceback:
refused with which one does what.
"""

from __future__ import annotations

import argparse
import shlex

from litlab.config_flags import CONF_DIR, Primary, config_dirs, hydra_args, primary_of
from litlab.errors import LitlabError


def check_print_flags(argv: list[str], config_name: str = "train") -> None:
    """Refuses ``--cfg``/``--info`` with ``-m`` or with a swept value on the command line, and any
    other two of Hydra's commands given together (``-m --run``, ``--cfg job --info``): Hydra takes
    one at a time."""
    args = hydra_args(argv)
    if args is None:  # --help, --version, a flag Hydra does not know: Hydra deals with them
        return
    commands = [flag for flag, given in (("-m (--multirun)", args.multirun), ("--run", args.run),
                                         ("--cfg", args.cfg is not None), ("--info", args.info is not None),
                                         ("--shell-completion", args.shell_completion)) if given]
    if len(commands) > 1 and commands not in (["-m (--multirun)", "--cfg"], ["-m (--multirun)", "--info"]):
        raise LitlabError(f"{' and '.join(commands)} are given together, and Hydra takes one of them: -m sweeps, "
                          f"--run runs once, --cfg and --info print the config, --shell-completion sets up the "
                          f"shell's completion. Keep one.")
    printing = _printing_flags(args)
    swept = _swept(args.overrides) if printing else []
    if not printing or not (args.multirun or swept):
        return
    primary = primary_of(argv, config_name)
    first = _first_values(args.overrides, argv, primary) if swept else args.overrides
    again = " ".join([primary.command(), *map(shlex.quote, first), *printing])
    sweeper = " ".join([primary.command(), *map(shlex.quote, first), "--cfg", "hydra", "--package", "hydra.sweeper"])
    flag = printing[0]
    if args.multirun:
        problem = (f"-m (--multirun) with {flag}: Hydra takes one of them, as {flag} prints one job's config and "
                   f"runs no sweep")
    else:
        problem = (f"{flag} with {' '.join(swept)}: {flag} prints one job's config, which Hydra composes as a single "
                   f"run, where a key takes one value")
    fix = (f"{'Drop -m and g' if args.multirun else 'G'}ive each swept key one value to print that job's config"
           if swept else "Drop -m to print the config the sweep's jobs start from")
    # values swept on the command line join the search when it runs: the printed params lack them
    left_out = (f", which leaves out {' '.join(swept)}: a value swept on the command line is added to the search "
                f"when it runs" if swept else "")
    shows = f"shows the sweeper's settings (a search's space is its hydra.sweeper.params{left_out})"
    if again == sweeper:  # --cfg hydra --package hydra.sweeper already: one command, not the same one twice
        raise LitlabError(f"{problem}. {fix}: {again}, which {shows}.")
    raise LitlabError(f"{problem}. {fix}: {again}; {sweeper} {shows}.")


def _printing_flags(args: argparse.Namespace) -> list[str]:
    """Hydra's flags of ``args`` that print the config instead of running it, as they can be typed again."""
    flags = []
    if args.cfg is not None:
        flags += ["--cfg", args.cfg, *(["--package", args.package] if args.package else [])]
    if args.info is not None:
        flags += ["--info"] if args.info == "all" else ["--info", args.info]
    return [*flags, "--resolve"] if flags and args.resolve else flags


def _swept(overrides: list[str]) -> list[str]:
    """The overrides that give a key several values (``model=cnn,mlp``, ``lr=interval(0.1,1)``), as typed;
    none where Hydra cannot parse them (its own message says why)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []
    return [o.input_line for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]


def _first_values(overrides: list[str], argv: list[str], primary: Primary) -> list[str]:
    """``overrides`` with each swept one at its first value (``model=cnn`` of ``model=cnn,mlp``, a
    range's low end), as the checks compose a sweep's first job (``config_check.expand_sweeps``)."""
    from litlab.config_check import expand_sweeps

    try:
        return expand_sweeps(overrides, dirs=config_dirs(argv, primary) or [CONF_DIR])[0]
    except (LitlabError, ValueError):
        return overrides
