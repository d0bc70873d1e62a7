"""One job's config per choice that a search makes of a config group (``hydra.sweeper.params``).

A search over a group (``params: {model: choice(cnn,mlp)}`` in a conf/hparams_search/ file)
starts from the group's default choice, and the sweeper composes the other choices' jobs one
trial at a time. The command line's checks compose each searched choice once as well, so a key
given to every trial that the class of one choice does not take (``++model.net.channels=[8]``:
CNN's, not MLP's) is refused before any trial with the grid's advice (``-m model=cnn,mlp``), not
in MLP's trials after their data is prepared. Torch-free, like the checks that call it.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from litlab.choice_files import COMPOSE_ERRORS, compose_as_hydra, composed_with
from litlab.config_flags import Primary
from litlab.errors import LitlabError


def searched_groups(cfg: DictConfig, overrides: list[str]) -> dict[str, list[str]]:
    """The config groups that ``cfg``'s sweeper searches (``hydra.sweeper.params``), each with the
    choices it lists: Optuna's ``choice(cnn,mlp)`` or the basic sweeper's ``cnn,mlp``. A range or
    an interval names no file, and a group the command line gives (``model=cnn``) is not searched:
    both sweepers then take the command line's value. Hydra's own groups are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None, throw_on_resolution_failure=False)
    groups = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    typed = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    found: dict[str, list[str]] = {}
    for name, space in (params.items() if isinstance(params, DictConfig) else []):
        group = str(name).lstrip("+")
        if group not in groups or group in typed or group == "hydra" or group.startswith("hydra/"):
            continue
        try:
            parsed = OverridesParser.create().parse_override(f"{group}={space}")
        except HydraException:  # refused in its own words by the sweeper's checks
            continue
        if parsed.is_sweep_override() and isinstance(parsed.value(), ChoiceSweep):
            found[group] = list(dict.fromkeys(c for c in parsed.sweep_string_iterator() if c != "null"))
    return found


def searched_group_jobs(cfg: DictConfig, overrides: list[str], primary: Primary,
                        groups: dict[str, list[str]] | None = None) -> list[DictConfig]:
    """The trials of a searched group, composed: ``cfg`` (a job of the sweep, composed from its
    overrides) with each searched group (``searched_groups``) at its first choice, then with each
    other choice of one group at a time, as the sweeper composes a trial. ``cfg`` itself has each
    group's default, which may be no trial at all (``choice(mlp,gru)`` where the default is
    ``model=cnn``). Empty where no group is searched. A choice whose trial does not compose because
    a key the command sets is not in it (``model.net.hidden_size=8``: CNN's, not MLP's) is refused
    (``_lacking_key``); one that fails otherwise is left out, for the sweeper's trial to report."""
    groups = searched_groups(cfg, overrides) if groups is None else groups  # the caller's, where it has them
    # its overrides as typed (${hydra:runtime.output_dir} does not resolve before the run), Hydra's
    # own (hydra.searchpath=..., where the search's file may be) with them
    recorded = OmegaConf.select(cfg, "hydra.overrides", default=None)
    job = ([str(o) for key in ("hydra", "task") for o in OmegaConf.to_container(recorded, resolve=False).get(key) or []]
           if recorded is not None else list(overrides))
    first = {group: options[0] for group, options in groups.items() if options}
    lines = [tuple(f"{group}={choice}" for group, choice in first.items())] if first else []
    for group, options in groups.items():
        lines += [tuple(f"{g}={option if g == group else c}" for g, c in first.items()) for option in options[1:]]
    composed = [(line, composed_with([*job, *line], primary)) for line in lines]
    failed = [line for line, c in composed if c is None]
    if failed:
        refusal = _lacking_key(groups, lines, failed, job, overrides, primary)
        if refusal is not None:
            raise refusal
    return [c for _, c in composed if c is not None]


def _lacking_key(groups: dict[str, list[str]], lines: list[tuple[str, ...]], failed: list[tuple[str, ...]],
                 job: list[str], overrides: list[str], primary: Primary) -> LitlabError | None:
    """The refusal of an override of ``overrides`` that sets a key of a searched group which the
    trial of a choice (a line of ``failed``) does not have, as Hydra names it when that trial is
    composed; before, that choice was left out of the checks, and the search died in Hydra's own
    error at its first such trial. None where Hydra names no override of a group's key."""
    from litlab.split_sweeps import separate_sweeps
    from litlab.sweep_keys import names_group, of_group

    named = _missing_key([*job, *failed[0]], primary)
    o = next((o for o in overrides if named and o.lstrip("+~").split("=", 1)[0] == named), None)
    group = next((g for g in groups if o is not None and of_group(o, g)), None)
    if group is None:
        return None
    # a line's choice of the group: the one it differs in, else (the first line) the group's first option
    choice = {line: next((c.split("=", 1)[1] for c in line if c.startswith(f"{group}=")), "") for line in lines}
    others = list(dict.fromkeys(choice[line] for line in failed))
    having = [c for c in dict.fromkeys(choice[line] for line in lines) if c not in others]
    key = o.lstrip("+~").split("=", 1)[0]
    lacks = (f"the trial with {group}={others[0]} has no key {key}, and the search would stop in Hydra's error at "
             f"its first such trial")
    if not having:
        return LitlabError(f"{o} is given to every trial of the search, but {lacks}, as would every searched choice "
                           f"of {group} ({', '.join(others)}). Check the key with `{primary.command()} "
                           f"{group}={others[0]} --cfg job`.")
    rest = [r for r in overrides if not of_group(r, group) and not names_group(r, group)]
    typed = [t for t in overrides if of_group(t, group)]
    return LitlabError(f"{o} is given to every trial of the search, but only {group}={','.join(having)} of it "
                       f"{'has' if len(having) == 1 else 'have'} {key}: {lacks}. "
                       f"{separate_sweeps(primary, rest, group, having, typed, others, refused=o)}")


def _missing_key(overrides: list[str], primary: Primary) -> str | None:
    """The key Hydra names where ``overrides`` do not compose for want of it ("Could not override
    'model.net.hidden_size'"); None where they compose or fail otherwise."""
    try:
        compose_as_hydra(overrides, primary)
    except COMPOSE_ERRORS as e:
        named = re.search(r"Could not (?:override|append to) '([^']+)'", str(e))
        return named.group(1) if named else None
    return None


def is_trial(job: DictConfig, groups: dict[str, list[str]]) -> bool:
    """Whether ``job`` makes one of the searched choices of each group of ``groups``; a grid job
    composed with a searched group at its default choice may make none."""
    return all(OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None) in options
               for group, options in groups.items())
