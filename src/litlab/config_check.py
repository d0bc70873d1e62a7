"""Checking the command line up front, so that a bad choice or override is one paragraph before any work.

Hydra's own messages for these mistakes span several lines and end in advice about stack
traces; litlab checks the command line with Hydra's compose API first and words the error
itself, composing the config Hydra will (``config_flags.Primary``: Hydra's --config-name, --config-dir and
--config-path read as Hydra reads them). In a sweep (``-m``) every swept value is composed, so a sweep over a key that does not
exist fails before the first job starts.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.averaging_checks import check_averaging
from litlab.checkpoint_paths import check_checkpoint_path
from litlab.choice_files import COMPOSE_ERRORS, compose_as_hydra
from litlab.class_weights import check_class_weights
from litlab.collection_entries import check_entries, check_histograms_early
from litlab.config_flags import CONF_DIR, Primary, config_dirs, hydra_args, no_primary, primary_of, shows_config
from litlab.config_values import check_values, reads_clock
from litlab.data.early_checks import check_data_given
from litlab.data.fold_settings import check_fold_config, folds_not_a_key
from litlab.device_counts import known_device_count
from litlab.empty_choices import check_empty_choices, key_of_empty_choice
from litlab.errors import LitlabError
from litlab.home_overrides import check_home_overrides
from litlab.inherited_period import period_refusal
from litlab.init_from_path import check_init_from, check_not_given
from litlab.metric_direction import lower_is_better
from litlab.misspelt_keys import not_a_key
from litlab.mixing_checks import check_mixing
from litlab.monitor_checks import check_monitored
from litlab.net_partial import check_net_partial
from litlab.optimized_metric_names import check_optimized_metric_name
from litlab.resume_choices import check_choices_before_start
from litlab.run_folders import LAST_NEEDS_A_RUN, check_run_folders
from litlab.slurm_launcher import is_slurm_launcher
from litlab.sweep_keys import check_sweep_arguments
from litlab.sweep_refusals import append_in_sweep
from litlab.sweeps.outcome import check_fails_on
from litlab.tasks.frozen_layers import check_freeze_config
from litlab.tasks.schedule_values import check_scheduler_interval, check_warmup_epochs
from litlab.top_level_adds import check_top_level_adds
from litlab.trainer_values import check_trainer_values

# groups of which a run takes exactly one file (logger and callbacks may take several)
ONE_CHOICE = ("data", "model", "trainer", "averaging", "mixing", "compress", "export", "paths")


def _all_files(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Every YAML file of a config group, the shared bases (``_name``) included."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def choices(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The choices of a config group: its YAML files, without the shared bases (``_name``)."""
    return [name for name in _all_files(group, conf_dir) if not name.startswith("_")]


def check_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """``group=name`` (or ``group=a,b`` in a sweep, ``group=[a,b]`` for several at once) must name
    files of ``conf/<group>/`` or of the same group in a folder of the user's own (--config-dir,
    ``hydra.searchpath``)."""
    searched = config_dirs(argv, primary_of(argv, conf_dir=conf_dir))
    if searched is None:
        return  # Hydra checks the choices against every folder of its search path
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        dirs = [d for d in searched if (d / group).is_dir()]
        if "." in group or not dirs or group.split("/")[0] == "hydra":
            continue  # Hydra's own groups have choices from its plugins too (basic, optuna, ...): it checks them
        names = sorted({name for d in dirs for name in choices(group, d)})
        value = value.strip()
        listed = [v.strip() for v in value[1:-1].split(",") if v.strip()] if value.startswith("[") else []
        if group in ONE_CHOICE and len(listed) > 1:
            raise LitlabError(
                f"{group}={value} selects several files of conf/{group}/ at once, which Hydra merges into one config "
                f"(the last one's class with the others' keys). A run takes one {group}: pick one, or compare them "
                f"in a sweep with -m {group}={','.join(listed)}.")
        if value.startswith("glob("):
            continue  # Hydra matches the pattern against the choices; none matching is its own error
        if value.startswith("choice(") and value.endswith(")"):
            value = value[len("choice("):-1]
        for value_part in value.split(","):
            name = value_part.strip().strip("[]").strip()
            if name in ("null", "") or name.startswith(("range(", "interval(")):
                continue
            if name.startswith("_") and name not in names:
                raise LitlabError(
                    f"{group}={name} is a base that the choices of conf/{group}/ share, not a choice itself. "
                    f"Pick one of {', '.join(names)}."
                )
            if name not in names and not any((d / group / f"{name}.yaml").is_file() for d in dirs):
                raise _not_a_choice(group, name, names, dirs)


def _not_a_choice(group: str, name: str, names: list[str], dirs: list[Path]) -> LitlabError:
    """The one paragraph for a choice no searched folder has, saying where a new file is read:
    the user's own folder where one was given; litlab's conf/ only in a checkout run from its
    folder (an installed litlab's is in site-packages, and a conf/ of the project is not read)."""
    where = " and ".join(f"conf/{group}/" if d == CONF_DIR else f"{(d / group).absolute()}/" for d in dirs)
    own = [d for d in dirs if d != CONF_DIR]
    here, real = Path.cwd().resolve(), CONF_DIR.resolve()  # a checkout's src/litlab/conf is its conf/
    if own:
        add = f"add {name}.yaml to {(own[0] / group).absolute()}/"
    elif real.is_relative_to(here) and "site-packages" not in real.parts:
        add = (f"add {name}.yaml to {real.relative_to(here) / group}/ (or to {group}/ in a folder of your own, "
               f"given with --config-dir DIR or hydra.searchpath=[file://DIR])")
    else:
        add = (f"add {name}.yaml to {group}/ in a folder of your own and give that folder with --config-dir DIR (or "
               f"hydra.searchpath=[file://DIR]); conf/ is litlab's own, in {CONF_DIR}, and a conf/ folder in the "
               f"current folder is not read")
    return LitlabError(f"{group}={name} is not a choice: {where} {'have' if len(dirs) > 1 else 'has'} "
                       f"{', '.join(names) or 'no files'}. Pick one of them, or {add}.")


def _one_paragraph(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # Hydra's "Config search path:" and the providers after it are its internals, not the user's mistake
    lines = lines[:next((i for i, line in enumerate(lines) if line.startswith("Config search path")), len(lines))]
    return " ".join(line for line in lines if not line.startswith(("See https://", "Set the environment")))


# settings of Hydra's Optuna sweeper that its basic (grid) sweeper does not have
_OPTUNA_KEYS = ("n_trials", "n_jobs", "direction", "sampler", "storage", "study_name", "search_space",
                "custom_search_space")


def _optuna_only(key: str) -> str:
    return (f"{key} is a setting of the Optuna sweeper, and this sweep runs Hydra's basic sweeper, which runs "
            f"every combination of the listed values (a grid) and has no such setting. Search with Optuna: "
            f"hparams_search=digits_optuna (or your own conf/hparams_search/ file), or hydra/sweeper=optuna; or "
            f"leave {key} out of the grid.")


def explain(e: BaseException, overrides: list[str], primary: Primary | None = None) -> LitlabError:
    """The one paragraph for Hydra's error ``e`` about ``overrides`` composed into ``primary``'s config."""
    primary = primary or Primary()
    if isinstance(e, MissingConfigException) and e.missing_cfg_file == primary.name and "primary config" in str(e):
        return no_primary(primary)
    text = _one_paragraph(e)
    if "Could not append to config. An item is already at" in text:
        key = text.split("'")[1] if "'" in text else "?"
        return LitlabError(f"+{key} adds a new key, but {key} is already a key of the config. Drop the + to set it "
                           f"({key}=...), or use ++{key}=... (set it whether or not it exists).")
    if "is not in struct" in text or "Could not override" in text or "Could not append" in text:
        key = text.split("'")[1] if "'" in text else "?"
        if key.startswith("hydra.sweeper.") and key.split(".")[2] in _OPTUNA_KEYS:
            return LitlabError(_optuna_only(key))
        bad = next((o for o in overrides if o.lstrip("+~").split("=")[0].endswith(key)), key)
        nested = re.search(r"full_key: (\S+)", str(e.__cause__ or ""))
        if nested and nested.group(1).startswith(f"{key}."):  # key={...}: a dict merges into the node there
            return LitlabError(
                f"{bad.split('=', 1)[0]}={{...}} merges into the {key} that is already in the config, which has no "
                f"key {nested.group(1)}; a dict given to an existing key changes its keys, it does not replace it. "
                f"To replace {key} as a whole, remove it first: '~{key}' '+{key}={{...}}'; to change single keys, set "
                f"each one ({key}.NAME=VALUE).")
        no_folds = folds_not_a_key(key, overrides)
        if no_folds is not None:  # data=synthetic data.folds=5: generated data has no folds
            return no_folds
        # averaging.decay=0.9 under averaging=none: Hydra's hint, +averaging.decay, adds a key nothing reads
        empty = key_of_empty_choice(key, ONE_CHOICE, overrides, primary, config_dirs(overrides, primary))
        if empty is not None:
            return empty
        # data.chanels=3: the keys close to it, not Hydra's "use +data.chanels=3", which the + check then refused
        return not_a_key(bad, overrides, primary)
    if isinstance(e, OverrideParseException):
        return LitlabError(f"could not parse the override(s) {' '.join(overrides)}: {text}. "
                           f"Values with spaces, brackets or commas need quoting, e.g. 'data.shape=[1,8,8]'.")
    reason = str(e.__cause__ or "").strip().splitlines()
    if reason and reason[0] not in text:  # Hydra's "Error merging override K=V" says what, not why
        text = f"{text.rstrip('.')}: {reason[0].rstrip('.')}."
    return LitlabError(text)


def check_search_keys(overrides: list[str]) -> None:
    """``hydra.sweeper.params.model.net.dropout=...`` (with or without ``+``) reads the dotted name as
    nodes below hydra.sweeper.params, whose keys are whole dotted names: "not a key ... Check the
    spelling", or with ``+`` OmegaConf's "Cannot convert 'dict' to string"."""
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        swept = key[len("hydra.sweeper.params."):] if key.startswith("hydra.sweeper.params.") else ""
        if "." in swept:
            raise LitlabError(f"{override}: the keys of hydra.sweeper.params are whole dotted names "
                              f"(model.optimizer.lr), which an override cannot add below it. Search a new key by "
                              f"sweeping it on the command line instead: '{swept}={value}' (docs/scaling.md).")


def expand_sweeps(overrides: list[str], limit: int = 64, dirs: Sequence[Path] = (CONF_DIR,)) -> list[list[str]]:
    """The override lists of a sweep: one per value of each swept key (not their product),
    enough to compose every value once. A group's files are those of ``dirs`` (the searched folders)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    per_key: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override() and isinstance(o.value(), Glob):  # a group's choices by pattern
            key = o.get_key_element()
            group = key.lstrip("+~")
            files = sorted({name for d in dirs for name in _all_files(group, d)})
            bases = [n for n in o.value().filter(files) if n.startswith("_")]
            if bases:  # Hydra matches the shared bases too, and runs them as jobs that fail
                raise LitlabError(
                    f"{o.input_line} also matches {', '.join(bases)}, the base(s) that the choices of conf/{group}/ "
                    f"share, not choices themselves. Leave them out with {key}=glob(*,exclude=_*).")
            names = o.value().filter([n for n in files if not n.startswith("_")])
            if not names:
                raise LitlabError(f"{o.input_line} matches none of conf/{group}/'s choices "
                                  f"({', '.join(n for n in files if not n.startswith('_'))}).")
            per_key.append([f"{key}={name}" for name in names])
        elif o.is_sweep_override() and o.is_interval_sweep():  # a range for a search (Optuna): its ends
            check_interval(o.input_line, o.value())
            per_key.append([f"{o.get_key_element()}={o.value().start}", f"{o.get_key_element()}={o.value().end}"])
        elif o.is_sweep_override():
            values = list(itertools.islice(o.sweep_string_iterator(), limit)) if not o.is_hydra_override() else []
            key = o.get_key_element()
            per_key.append([f"{key}={v}" for v in values] or [o.input_line])
        else:
            per_key.append([o.input_line])
    longest = max((len(v) for v in per_key), default=1)
    return [[vals[min(i, len(vals) - 1)] for vals in per_key] for i in range(longest)]


def check_interval(where: str, interval: IntervalSweep) -> None:
    """A range Optuna can sample: low <= high, and low > 0 on a log scale."""
    low, high = interval.start, interval.end
    if low > high:
        raise LitlabError(f"{where}: the range starts at {low:g}, above its end {high:g}. Give interval(low, high) "
                          f"with low <= high.")
    if "log" in interval.tags and low <= 0:
        raise LitlabError(f"{where}: a range searched on a log scale must start above 0, this one starts at {low:g}. "
                          f"Give a positive low end, e.g. tag(log, interval(1e-5, {high:g})).")


def compose_checked(overrides: list[str], config_name: str = "train", conf_dir: Path = CONF_DIR,
                    return_hydra_config: bool = False, primary: Primary | None = None) -> DictConfig:
    """``compose(config_name, overrides)`` whose failures are LitlabErrors naming the key; with
    ``primary``, its config from its folders, as Hydra composes it under those flags."""
    primary = primary or Primary(config_name, config_name, conf_dir)
    try:
        return compose_as_hydra(overrides, primary, return_hydra_config=return_hydra_config)
    except COMPOSE_ERRORS as e:
        raise explain(e, overrides, primary) from None


def check_sweep_start(overrides: list[str], config_name: str = "train", primary: Primary | None = None) -> None:
    """Hydra starts a sweep by composing the config without the swept values (a swept group at its
    default choice) and applies every other override to it. A key that only the swept choices
    have (``compress=prune,lowrank compress.finetune.epochs=1``, where the default
    ``compress=none`` has no ``finetune``) fails there, before any job, although every job's
    config has it: an error that says so and how to write the key instead."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    swept_groups = {o.get_key_element() for o in parsed if o.is_sweep_override() and "." not in o.get_key_element()}
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        compose_checked(fixed, config_name, primary=primary)
    except LitlabError:
        # the overrides of a key inside a swept group, each with its group
        culprits = {o: o.lstrip("+~").split(".")[0] for o in fixed if "=" in o and not o.startswith("++")}
        culprits = {o: g for o, g in culprits.items() if g in swept_groups}
        if not culprits:
            raise
        # +KEY fails there only where that choice has the key already; KEY (no +) where it lacks it
        start = ("already has the key (Hydra cannot append it there), before each job gets its swept choice"
                 if all(o.startswith("+") for o in culprits) else
                 "lacks the key, before each job gets the swept choice that has it")
        raise LitlabError(
            f"{' '.join(culprits)}: a sweep over {', '.join(dict.fromkeys(culprits.values()))} starts from its "
            f"default choice, which {start}. Write it "
            f"as {' '.join('++' + o.lstrip('+') for o in culprits)} (set where the key exists, added where not)."
        ) from None


def check_sweeper_and_launcher(cfg: DictConfig, argv: Sequence[str] = ()) -> None:
    """Settings that Optuna or submitit would otherwise reject with a traceback, after the sweep
    folder was made: the search's direction and sizes, and SLURM's presence."""
    chosen = cfg.hydra.runtime.choices
    if chosen.get("hydra/sweeper") == "basic":
        extra = sorted(set(cfg.hydra.sweeper) - {"_target_", "max_batch_size", "params"})
        if extra:
            raise LitlabError(_optuna_only(f"hydra.sweeper.{extra[0]}"))
    if chosen.get("hydra/sweeper") == "optuna":
        sweeper = cfg.hydra.sweeper
        given = sweeper.direction if OmegaConf.is_list(sweeper.direction) else [sweeper.direction]
        # the sweeper's own default is its enum (Direction.minimize), a value given on the command line a string
        directions = [str(getattr(d, "name", d)).lower() for d in given]
        if not directions or any(d not in ("minimize", "maximize") for d in directions):
            raise LitlabError(f"hydra.sweeper.direction must be minimize or maximize, got {sweeper.direction}.")
        check_direction(cfg.get("optimized_metric"), directions)
        for key in ("n_trials", "n_jobs"):
            value = sweeper.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LitlabError(f"hydra.sweeper.{key} must be a positive integer, got {value!r}.")
        if sweeper.n_jobs > 1 and chosen.get("hydra/launcher") == "basic":
            raise LitlabError(
                f"hydra.sweeper.n_jobs={sweeper.n_jobs} asks for trials side by side, but Hydra's basic launcher runs "
                f"them one after another in this process. Add hydra/launcher=submitit_local (or submitit_slurm) "
                f"to run them together, or leave n_jobs at 1.")
        parser = OverridesParser.create()
        for key, value in (sweeper.get("params") or {}).items():
            where = f"hydra.sweeper.params.{key}={value}"
            try:
                o = parser.parse_override(f"{key}={value}")
            except HydraException as e:
                raise LitlabError(f"{where} is not a search space Hydra can read: {_one_paragraph(e)}") from None
            if o.is_interval_sweep():
                check_interval(where, o.value())
        from litlab.sweeps.optuna_resume import check_study_resume  # imports Optuna only for an Optuna search

        check_study_resume(cfg)
    # submitit_slurm, or a site's file built on it; --cfg/--info print the config and submit nothing
    if is_slurm_launcher(cfg) and shutil.which("sbatch") is None and not shows_config(list(argv)):
        raise LitlabError(
            f"hydra/launcher={chosen.get('hydra/launcher')} submits every job with SLURM's sbatch, which this "
            f"machine does not have. "
            "Start the sweep on the cluster's login node, or try it here with hydra/launcher=submitit_local."
        )


def check_slurm_tasks(cfg: DictConfig) -> None:
    """SLURM starts ``hydra.launcher.tasks_per_node`` x ``nodes`` processes per job and Lightning
    runs one per device: a mismatch was refused only once each job had waited in the queue."""
    if not is_slurm_launcher(cfg):
        return
    devices, nodes = OmegaConf.select(cfg, "trainer.devices"), OmegaConf.select(cfg, "trainer.num_nodes") or 1
    per_node = known_device_count(devices)  # 2, "2", "0,1" and [0, 1] are 2 processes per node
    launcher = cfg.hydra.launcher
    for key, theirs, ours, given in (("tasks_per_node", launcher.get("tasks_per_node"), per_node, devices),
                                     ("nodes", launcher.get("nodes"), nodes, nodes)):
        # -1 and auto (every visible device) are known only on the node
        if isinstance(ours, int) and not isinstance(ours, bool) and ours >= 1 and isinstance(theirs, int) and theirs != ours:
            mine = f"{'trainer.devices' if key == 'tasks_per_node' else 'trainer.num_nodes'}={ours}"
            if not (isinstance(given, int) and given == ours):  # "2", "0,1", [0, 1]: as typed, and the count
                typed = OmegaConf.to_container(given) if OmegaConf.is_list(given) else repr(given)
                mine = f"trainer.devices={typed} ({ours} devices)"
            raise LitlabError(
                f"hydra.launcher.{key}={theirs} but {mine}: SLURM starts one process per task and Lightning "
                f"one per device, so every job would be refused once it left the queue. Set "
                f"hydra.launcher.{key}={ours} (and hydra.launcher.gpus_per_node to match on GPUs).")


def check_direction(metric: object, directions: list) -> None:
    """An Optuna search must seek the metric's best end: hparams_search=digits_optuna with
    optimized_metric=val/loss searched for the highest loss, without a word."""
    lower = lower_is_better(metric) if metric else None
    if lower is None or len(directions) != 1:
        return
    wanted = "minimize" if lower else "maximize"
    if str(directions[0]).lower() != wanted:
        raise LitlabError(f"optimized_metric={metric} is best at its {'lowest' if lower else 'highest'}, but "
                          f"hydra.sweeper.direction={directions[0]} searches for its "
                          f"{'highest' if lower else 'lowest'}. Add hydra.sweeper.direction={wanted}.")


def check_mode(key: str, monitor: object, mode: object) -> None:
    """A loss is best at its lowest, an accuracy at its highest: the other mode silently keeps the
    worst epoch (monitor=val/loss with the default mode=max picked the first epoch's best.ckpt)."""
    lower = lower_is_better(monitor)
    wanted = None if lower is None else "min" if lower else "max"
    if monitor is None or wanted is None or mode is None or str(mode) == wanted:
        return
    raise LitlabError(f"{key}.monitor={monitor} is best at its {'lowest' if wanted == 'min' else 'highest'}, but "
                      f"{key}.mode={mode} keeps the {'highest' if wanted == 'min' else 'lowest'}: the worst epoch. "
                      f"Add {key}.mode={wanted}.")


def check_optimizer_values(cfg: DictConfig) -> None:
    """``model.optimizer``'s learning rate and weight decay are numbers (an empty ``lr=`` failed in
    torch's optimizer after the data was prepared, naming neither the key nor the value)."""
    try:
        optimizer = OmegaConf.select(cfg, "model.optimizer")
    except OmegaConfBaseException:
        return
    if not isinstance(optimizer, DictConfig):
        return
    for key in ("lr", "weight_decay", "momentum"):
        if key not in optimizer:
            continue
        try:
            value = optimizer.get(key)
        except OmegaConfBaseException:
            continue
        if value is None and key != "lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise LitlabError(f"model.optimizer.{key} must be a number >= 0, got {value!r}.")


def _new_folder_each_start(cfg: DictConfig) -> bool:
    """Whether the run's ``hydra.run.dir`` is timestamped (the default ``${now:...}``, or a key it
    refers to that is): each start gets a new folder, which holds no checkpoint to resume."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    return reads_clock(tree, tree["hydra"]["run"].get("dir"))


def check_schedule_values(cfg: DictConfig) -> None:
    """``model.scheduler_interval`` and ``model.warmup_epochs``, before Hydra makes the run's folder
    (a failed run there would hold the folder against the corrected command). Whether the schedule's
    class can step per optimizer step needs torch: checked when the run starts."""
    model = OmegaConf.select(cfg, "model", throw_on_resolution_failure=False)
    if not isinstance(model, DictConfig):
        return
    if "scheduler_interval" in model:
        check_scheduler_interval(model.scheduler_interval)
    if "warmup_epochs" in model:
        check_warmup_epochs(model.warmup_epochs)


def overrides_of(argv: list[str]) -> list[str]:
    """The overrides of a command line (``key=value``, ``~key``), without Hydra's own flags."""
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def is_sweep_command(argv: list[str]) -> bool:
    """``-m``/``--multirun``, or ``hparams_search=NAME``: conf/hparams_search/ files set
    hydra.mode=MULTIRUN, so such a search is a sweep without -m too."""
    return any(a in ("-m", "--multirun") for a in argv) or any(
        a.split("=", 1)[0].lstrip("+") == "hparams_search" and a.split("=", 1)[1] not in ("", "null")
        for a in argv if "=" in a and not a.startswith("-"))


def check_values_given(argv: list[str], config_name: str = "train") -> None:
    """Every override has ``=`` (``~key`` alone removes a key): ``data.batch_size 128`` or a stray
    word got Hydra's parser message ("missing EQUAL at '<EOF>'") and exit 1."""
    args = hydra_args(argv)
    if args is None:  # --version, --help, a flag Hydra does not know: Hydra deals with them
        return
    for word in args.overrides:
        if "=" in word or word.startswith("~"):
            continue
        if re.fullmatch(r"[+]{0,2}[A-Za-z_][\w/]*(\.[\w/]+)*", word):
            raise LitlabError(f"{word} has no value: an override is key=value (e.g. {word}=VALUE, with no "
                              f"spaces around =); +key=value adds a key and ~key removes one. python -m "
                              f"litlab.{config_name} --help lists the groups and keys.")
        raise LitlabError(f"{word!r} is not an override: each argument is key=value (e.g. trainer.max_epochs=5), "
                          f"+key=value to add a key or ~key to remove one, and a value with spaces is quoted whole "
                          f"('key=a b'). python -m litlab.{config_name} --help lists the groups and keys.")


def check_start_checkpoint(cfg: DictConfig) -> None:
    """A training run's ``ckpt_path=PATH`` (each swept one) must be a training checkpoint file this
    process can read, not an exported or compressed model (told from the file's first bytes,
    ``checkpoint_paths.compressed_method``): ``checkpoint_files.load_checkpoint`` checks it with the
    same function as the run begins, after torch and Lightning are imported (seconds) and Hydra made
    the run's folder. ``ckpt_path=last`` is the run folder's, checked against it (``run_folders``)."""
    ckpt = OmegaConf.select(cfg, "ckpt_path", throw_on_resolution_failure=False)
    if ckpt and str(ckpt) != "last":
        check_checkpoint_path(ckpt, compressed_ok=False)
    check_choices_before_start(cfg)  # ckpt_path=last without the run's experiment/model/data: its overrides named
    check_init_from(cfg)  # model.init_from likewise (init_from_path)


def check_overrides(argv: list[str], config_name: str = "train") -> DictConfig | None:
    """Composes the command line's overrides (each swept value once) into the config Hydra will
    compose (``primary_of``: litlab's ``<config_name>`` unless Hydra's flags name another) and
    runs the checks of the entrypoint ``config_name``, or raises a LitlabError. Returns the
    composed config (with its ``hydra`` node) of a single run, None for a multirun."""
    check_values_given(argv, config_name)
    primary = primary_of(argv, config_name)
    overrides = overrides_of(argv)
    check_home_overrides(overrides, config_name)  # data.root=~/imgs: Hydra's parser error, then ours once quoted
    check_search_keys(overrides)  # hydra.sweeper.params.model.net.dropout=...: swept as model.net.dropout=...
    multirun = is_sweep_command(argv)
    try:
        combos = expand_sweeps(overrides, dirs=config_dirs(argv, primary) or [CONF_DIR]) if multirun else [overrides]
    except OverrideParseException as e:
        raise explain(e, overrides, primary) from None
    if config_name in ("train", "lr_find"):  # +extras.print_config=False: a top-level key no job reads
        check_top_level_adds(argv, combos, primary)
    unfit: list[LitlabError] = []
    composed: list[DictConfig] = []
    for combo in combos:
        try:
            composed.append(compose_checked(combo, return_hydra_config=True, primary=primary))
        except LitlabError as e:
            unfit.append(e)
    for cfg in composed:
        if not unfit:  # a job that does not compose comes first (+averaging.decay under averaging=ema: use ++)
            # a key of an empty choice (+averaging.decay=0.9 under averaging=none), which nothing reads
            check_empty_choices(cfg, ONE_CHOICE, overrides, primary, sweep=composed if multirun else None,
                                multirun_flag="-m" in argv or "--multirun" in argv)
            # ++averaging.decya=0.9: a key the chosen litlab class or function does not take
            check_sweep_arguments(cfg, composed if multirun else None, overrides, primary)  # split advice in a sweep
        check_values(cfg, config_name, multirun)
        if multirun and config_name in ("eval", "predict"):  # a single run's: the entry point's own checks
            check_not_given(cfg, config_name)  # model.freeze='' or model.init_from in a job, before the first job
        for group in ("logger", "callbacks") if config_name == "train" else ("logger",):
            check_entries(cfg, group)  # +logger.foo=1 builds nothing: refused before any folder or job
        if config_name == "train":  # callbacks=none logger.histograms=true would write no histograms
            check_histograms_early(cfg)
        if multirun:
            check_slurm_tasks(cfg)  # each job's devices (trainer.devices=1,2 is a sweep too)
        if config_name == "train":
            check_fails_on(cfg, overrides if multirun else ())  # read once every job has ended: refused before the first
            check_start_checkpoint(cfg)
            check_optimizer_values(cfg)
            check_schedule_values(cfg)
            if (refusal := period_refusal(cfg.model)) is not None:  # T_max set for a schedule that takes none
                raise refusal
            check_averaging(cfg)
        if config_name in ("train", "lr_find"):  # lr_find builds the task with the run's mixing too
            check_trainer_values(cfg)  # trainer.max_epochs=abc, precision=16: before torch and the run's folder
            check_net_partial(cfg)  # net: {_target_: my_nets.Tiny}: built without input_shape and num_classes
            check_mixing(cfg)
            check_class_weights(cfg)
            check_freeze_config(cfg)  # model.freeze's value (its prefixes need the net, built at the run)
            check_fold_config(cfg)  # data.folds and data.fold, each swept value
            check_data_given(cfg, argv, multirun)  # data.root / data.path given and there, before torch and the run's folder
        if config_name == "train":
            for name, callback in (cfg.get("callbacks") or {}).items():
                if isinstance(callback, DictConfig) and "monitor" in callback:
                    check_mode(f"callbacks.{name}", callback.get("monitor"), callback.get("mode"))
            check_monitored(cfg)  # a monitor the run would not log (val/acc_top5 with eval_report.top_k=3)
            if not shows_config(argv):  # --cfg job prints the config as it is
                check_optimized_metric_name(cfg)  # val/acc_best: a search's trials would all end without a value
    if unfit:
        if len(unfit) < len(combos):  # a key that only some swept choices have: say how to write it
            check_sweep_start(overrides, config_name, primary)
        raise append_in_sweep(unfit[0], overrides, primary) if multirun else unfit[0]
    intervals = [o for o in overrides if "interval(" in o.split("=", 1)[-1] and not o.startswith("hydra.")]
    if multirun and intervals and cfg.hydra.runtime.choices.get("hydra/sweeper") == "basic":
        raise LitlabError(
            f"{' '.join(intervals)}: interval() is a range to search, which Hydra's basic sweeper cannot enumerate "
            f"(it runs lists a,b,c and range()). Search it with Optuna (hparams_search=digits_optuna, or your own "
            f"conf/hparams_search/ file), or give values as a list."
        )
    if multirun:
        check_sweep_start(overrides, config_name, primary)
        check_sweeper_and_launcher(cfg, argv)
    if config_name == "train" and not multirun and cfg.get("ckpt_path") == "last" and _new_folder_each_start(cfg):
        raise LitlabError(
            f"ckpt_path=last resumes the run in the folder given by hydra.run.dir, and none was given (a new "
            f"folder has no checkpoint). {LAST_NEEDS_A_RUN}"
        )
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    check_run_folders(cfg, key, multirun, config_name, jobs=composed)
    return None if multirun else cfg
