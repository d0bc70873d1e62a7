"""The keys of a group that a sweep makes its own, and the lines it recorded for a job's folder.

In a sweep, a key typed for a group is the sweep's where some job's choice (as composed, or
searched in ``hydra.sweeper.params``) has it; a key given to every job that one of the sweep's
choices would fail on is refused before any job (``sweep_refusals``; here: a key a choice's class
does not take, ``check_sweep_arguments``). In a single run, a line the sweep recorded for
the job in the run's folder (its ``.hydra/overrides.yaml``, or the grid's job of that number)
lets the same key through. ``empty_choices`` applies these to a key typed on a choice that has no
settings. The separate sweeps a refusal advises instead are ``split_sweeps``'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.choice_files import choice_keys, composed_with, read_file, sources_of
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.split_sweeps import separate_sweeps


def setting_key(override: str) -> str:
    """The key of its group an override sets: ``decay`` of ``++averaging.decay=0.9``, ``optimizer``
    of ``+model.optimizer.amsgrad=true``."""
    return override.lstrip("+~").split("=", 1)[0].split(".")[1]


def setting_path(override: str) -> str:
    """The full dotted path below its group that an override sets: ``optimizer.amsgrad`` of
    ``+model.optimizer.amsgrad=true``, ``decay`` of ``++averaging.decay=0.9``."""
    return override.lstrip("+~").split("=", 1)[0].split(".", 1)[1]


def of_group(override: str, group: str) -> bool:
    """Whether ``override`` sets a key of ``group`` (``+averaging.decay=0.9``, ``~averaging.decay``)."""
    return override.lstrip("+~").split("=", 1)[0].startswith(f"{group}.")


def names_group(override: str, group: str) -> bool:
    """Whether ``override`` chooses a file of ``group`` (``averaging=none``, ``+averaging=ema``)."""
    return override.lstrip("+~").split("=", 1)[0] == group


def sweep_choices(group: str, cfg: DictConfig, sweep: Sequence[DictConfig],
                  overrides: list[str]) -> dict[str, set[str]]:
    """The choices of ``group`` a sweep makes, each with the keys it has, top-level and every dotted
    path below them (``optimizer`` and ``optimizer.lr`` of ``model=cnn``): each job's choice as
    composed, and each option a sweeper searches for the group (``hydra.sweeper.params``) unless
    the command line gives the group (``averaging=none``: both sweepers then take its value). A
    searched group's choice as composed is then its default, which no job of the search makes."""
    keys: dict[str, set[str]] = {}
    searched = OmegaConf.select(cfg, f"hydra.sweeper.params.{group}", default=None,
                                throw_on_resolution_failure=False)
    searched = None if any(names_group(o, group) for o in overrides) else searched
    for job in sweep if searched is None else []:
        choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
        if isinstance(choice, str):
            keys.setdefault(choice, set()).update(_job_keys(group, job))
    if searched is not None:
        sources = sources_of(cfg)
        for option in _options(group, str(searched)):
            found = choice_paths(group, option, sources) if sources is not None else None
            keys.setdefault(option, set()).update(found or set())
    return keys


def choice_paths(group: str, name: str, sources: list) -> set[str] | None:
    """The keys ``group=name`` sets (``choice_keys``) with every dotted path below them, read from
    its file and the group's files it builds on; None where ``choice_keys`` cannot tell."""
    top = choice_keys(group, name, sources)
    if top is None:
        return None
    paths, names, seen = set(top), [name], set()
    while names:  # choice_keys read them all: each base is a plain name of the group
        current = names.pop()
        node = read_file(group, current, sources)
        if current in seen or not isinstance(node, DictConfig):
            continue
        seen.add(current)
        tree = OmegaConf.to_container(node, resolve=False)
        names += [b for b in tree.pop("defaults", None) or [] if isinstance(b, str) and b != "_self_"]
        paths |= _dotted(tree)
    return paths


def _dotted(tree: dict, prefix: str = "") -> set[str]:
    """Every key of a nested dict as a dotted path: ``{"a": {"b": 1}}`` gives ``a`` and ``a.b``."""
    paths = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict):
            paths |= _dotted(value, f"{path}.")
    return paths


def rejecting_choices(group: str, key: str, lacking: list[str], typed: list[str], overrides: list[str],
                primary: Primary) -> list[str]:
    """The choices of ``lacking`` (they have not ``key``'s first part) whose jobs would fail on
    ``key``: not those whose class (its ``_target_``, read from the choice's files) takes the first
    part as an argument where the key is that argument itself (``num_nodes`` of ``trainer=cpu``:
    ``lightning.Trainer`` takes it) or the command also gives that part a ``_target_``
    (``++trainer.strategy._target_=...``: the node is built, then passed). A nested key under an
    argument with no ``_target_`` stays lacking: the class would get a plain dict
    (``finetune.epochs`` of ``compress=quantize``). Where a class's arguments cannot be read, a
    node given its ``_target_`` is taken as built."""
    from litlab.source_signatures import target_params

    first = key.split(".")[0]
    built = any(setting_path(o) == f"{first}._target_" for o in typed)
    if "." in key and not built:
        return lacking
    cfg = composed_with([o for o in overrides if o.startswith("hydra.")], primary)
    sources = sources_of(cfg) if cfg is not None else None
    if sources is None:
        return lacking
    kept = []
    for choice in lacking:
        target = _choice_target(group, choice, sources)
        params = target_params(target) if target else None
        takes = (built and params is None) or (params is not None and first in params)
        if not takes:
            kept.append(choice)
    return kept


def _choice_target(group: str, name: str, sources: list) -> str | None:
    """The ``_target_`` that ``group=name`` builds: its file's, else that of the group's files it
    builds on (a later one in its defaults wins); None where none of them sets one."""
    node = read_file(group, name, sources)
    if not isinstance(node, DictConfig):
        return None
    tree = OmegaConf.to_container(node, resolve=False)
    if isinstance(tree.get("_target_"), str):
        return tree["_target_"]
    for base in reversed([b for b in tree.get("defaults") or [] if isinstance(b, str) and b != "_self_"]):
        found = _choice_target(group, base, sources) if base != name else None
        if found:
            return found
    return None


def check_sweep_arguments(cfg: DictConfig, sweep: list[DictConfig] | None, overrides: list[str],
                          primary: Primary) -> None:
    """``target_arguments.check_target_arguments`` of one job's config ``cfg``; in a sweep (``sweep``:
    every job's config, None for a single run) where it refuses a key of a swept group that the
    class of some swept choices takes (``-m model=cnn,mlp ++model.net.hidden_size=64``: CNN takes
    it, MLP not), the separate sweeps instead of "fix the key", which the choices that take it do
    not need. Where the sweep searches a group (``hydra.sweeper.params: {model: choice(cnn,mlp)}``),
    ``cfg`` has its default choice: each searched choice's trial is checked instead
    (``searched_groups``), as each job of a grid is."""
    from litlab.searched_groups import is_trial, searched_group_jobs, searched_groups
    from litlab.target_arguments import check_target_arguments

    def keys_before(kept: list[str]) -> DictConfig | None:
        return composed_with(kept, primary)

    groups = searched_groups(cfg, overrides) if sweep else {}
    trials = (searched_group_jobs(cfg, overrides, primary, groups) if groups else []) or [cfg]
    jobs = [*trials, *(j for j in sweep or [] if j is not cfg and is_trial(j, groups))] if groups else sweep
    for job in trials:
        try:
            check_target_arguments(job, overrides, primary.command(), keys_before)
        except LitlabError as e:
            split = _arguments_split(e, jobs, overrides, primary, keys_before) if sweep else None
            raise (split or e) from None


def _arguments_split(e: LitlabError, sweep: list[DictConfig], overrides: list[str], primary: Primary,
                     keys_before) -> LitlabError | None:
    """``check_sweep_arguments``' paragraph where the refused override (``e``) sets a key of a
    swept group and the jobs of some of its choices pass every argument check; None otherwise."""
    from litlab.target_arguments import check_target_arguments

    for o in overrides:
        group = o.lstrip("+~").split("=", 1)[0].split(".", 1)[0]
        if not (of_group(o, group) and str(e).startswith(f"{o} ")):
            continue
        passes: dict[str, bool] = {}
        for job in sweep:
            choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
            try:
                check_target_arguments(job, overrides, primary.command(), keys_before)
                ok = True
            except LitlabError:
                ok = False
            passes[str(choice)] = passes.get(str(choice), True) and ok
        having = [c for c, ok in passes.items() if ok]
        others = [c for c, ok in passes.items() if not ok]
        if len(passes) < 2 or not having or not others:
            return None
        rest = [r for r in overrides if not of_group(r, group) and not names_group(r, group)]
        typed = [t for t in overrides if of_group(t, group)]
        have = sweep_choices(group, sweep[0], sweep, overrides)
        return LitlabError(
            f"{o} is given to every job of the sweep, but only {group}={','.join(having)} of the sweep "
            f"{'takes' if len(having) == 1 else 'take'} {setting_path(o)}: the job with {group}={others[0]} would "
            f"fail when {group} is built (its class has no such argument), after its data is prepared. "
            f"{separate_sweeps(primary, rest, group, having, typed, others, have, o)}")
    return None


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
    makes: its file's with their dotted paths (``choice_paths``), read from the job's sources;
    where they cannot be read, the top-level keys of its node as composed if it has a class (then
    every key counts), else none."""
    choice = OmegaConf.select(job, f"hydra.runtime.choices.{group}", default=None)
    node = OmegaConf.select(job, group, throw_on_resolution_failure=False)
    if not isinstance(choice, str) or not isinstance(node, DictConfig):
        return set()
    sources = sources_of(job)
    keys = choice_paths(group, choice, sources) if sources is not None else None
    if keys is not None:
        return keys
    return {str(k) for k in node} if "_target_" in node else set()


def same_choice_lines(group: str, choice: str, lines: list[str], overrides: list[str],
                      primary: Primary) -> list[str]:
    """``lines`` (a sweep's record for the run's folder) where they choose ``group=choice``, as
    composed now: the record's lines with the command's ``hydra.*`` lines (its search path);
    none where they choose another option, or do not compose."""
    if not lines:
        return []
    cfg = composed_with([*lines, *(o for o in overrides if o.startswith("hydra."))], primary)
    recorded = None if cfg is None else OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    return lines if recorded == choice else []


def same_override(typed: str, line: str) -> bool:
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
