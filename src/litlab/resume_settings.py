"""A resume's training settings compared with its checkpoint's (``ckpt_path``).

A resume restores the optimizer, the learning-rate schedule and its clock, and the weight average
from the checkpoint, not from this command: a setting of theirs that differs would be recorded in
the run's files but never applied, or would fail inside Lightning as it restores the state (other
parameter groups). Refused here before anything is written, naming the key. Kept apart from
``resume``, which calls these checks and holds those of which checkpoint and which data: those are
about what the run trains on, these about how it trains.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from litlab.callbacks.checkpoints import data_position
from litlab.device_counts import known_device_count
from litlab.errors import LitlabError
from litlab.resume_overrides import ABSENT, flat_keys, job_overrides, rerun_command, shown_value
from litlab.run_commands import sets_key
from litlab.strategies import strategy_name
from litlab.tasks.optimizers import (DECAYED, NOT_DECAYED, STEPS_PER_EPOCH_KEY, group_names, one_group_reason,
                                     parameter_groups)
from litlab.tasks.schedules import EPOCH_STEP_SETTINGS, WARMUP_STEPS_KEY, other_epoch_steps
from litlab.trainer_checks import processes

# the resume's logger: what a resume says keeps one name in the log, whichever module checks it
log = logging.getLogger("litlab.resume")


def check_same_steps_per_epoch(cfg: DictConfig, ckpt: dict, path) -> None:
    """A schedule stepped per optimizer step (``model.scheduler_interval=step``) holds its periods in
    the checkpoint's optimizer steps per epoch; a resume with a setting that changes that count
    would end its cosine mid-run. Refused here, before anything is written; the schedule checks the
    count itself when training starts (``schedules.check_same_steps_per_epoch``), which also
    catches a change of the data's size.

    So does a warm-up (``model.warmup_epochs``, before a schedule stepped per epoch or none) while
    it lasts: its length in steps was counted in those epochs (``schedules.check_same_warmup``).
    A checkpoint past its warm-up may change the count: a resume keeps the warm-up's length in
    steps (``LearningRateClock.warmup_length``), so the run stays past it, and the schedule after
    it counts epochs. The settings (``schedules.EPOCH_STEP_SETTINGS``) are compared as the run
    applies them: ``+trainer.limit_train_batches=1.0`` is the checkpoint's absent one, and
    ``trainer.devices`` and ``trainer.num_nodes`` by the processes they make (``_process_counts``)."""
    per_step = [s[STEPS_PER_EPOCH_KEY] for s in ckpt.get("lr_schedulers") or []
                if isinstance(s, dict) and STEPS_PER_EPOCH_KEY in s]
    warmup = _warmup_left(ckpt)
    config = (ckpt.get("litlab") or {}).get("config")
    if not (per_step or warmup) or not config:
        return  # an older checkpoint without its config: the counts are checked when training starts
    stored = OmegaConf.create(config)
    changed = []
    counts = _process_counts(stored, cfg, ckpt)
    for key, default in EPOCH_STEP_SETTINGS.items():
        if key in _PROCESS_KEYS and counts is not None:
            if key == _PROCESS_KEYS[0] and counts[0] != counts[1]:
                changed.append(f"trainer.devices x trainer.num_nodes = {counts[0]} process(es) in the checkpoint, "
                               f"{counts[1]} here")
            continue
        old, new = (OmegaConf.select(c, key, default=ABSENT, throw_on_resolution_failure=False) for c in (stored, cfg))
        if _applied(old, default) != _applied(new, default):
            changed.append(f"{key} {shown_value(old)} in the checkpoint, {shown_value(new)} here")
    if not changed:
        return
    other = f"another number of optimizer steps ({'; '.join(changed)})"
    if per_step:
        raise other_epoch_steps(f"ckpt_path={path}", per_step[0], other)
    raise other_epoch_steps(f"ckpt_path={path}", warmup[2], other, warmup[:2])


# the settings whose product is the run's process count, which splits each epoch's batches
_PROCESS_KEYS = ("trainer.devices", "trainer.num_nodes")


def _process_counts(stored: DictConfig, cfg: DictConfig, ckpt: dict) -> tuple[int, int] | None:
    """The processes the checkpoint's run trained in and those of this command: an epoch's
    optimizer steps follow their number, not how ``trainer.devices`` spells it (absent, ``auto``
    and 1 are one process on the CPU). The checkpoint's is the one its training data's position
    records (``world_size``), else its config's where that is a count; None where either is not
    known (``auto`` on an unknown machine): the settings are then compared as written."""
    position = data_position(ckpt) or {}
    old = position.get("world_size")
    if not isinstance(old, int):
        devices, nodes = (OmegaConf.select(stored, k, default=None) for k in _PROCESS_KEYS)
        count = known_device_count(devices)  # "2" and "0,1" count 2, as processes() reads this command's
        known = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (count, nodes or 1))
        old = count * (nodes or 1) if known else None
    new = processes(cfg.trainer) if isinstance(cfg.get("trainer"), DictConfig) else None
    return (old, new) if old is not None and new is not None else None


def _applied(value, default) -> tuple[bool, object]:
    """A setting of ``EPOCH_STEP_SETTINGS`` as the run applies it: absent or null is its
    ``default`` (where it has one), and a float differs from the int of the same value
    (``trainer.limit_train_batches=1.0`` trains every batch, ``1`` one batch)."""
    if (value is ABSENT or value is None) and default is not None:
        value = default
    return isinstance(value, float), value


def _warmup_left(ckpt: dict) -> tuple[int, int, int | None] | None:
    """(the checkpoint's optimizer step, the warm-up's length in steps, the steps per epoch it
    counts) where ``ckpt`` was taken within its warm-up, from the learning-rate clock's saved state
    (``schedules.WARMUP_STEPS_KEY``); None after it or without one."""
    step = int(ckpt.get("global_step") or 0)
    for state in (ckpt.get("callbacks") or {}).values():
        length = state.get(WARMUP_STEPS_KEY) if isinstance(state, dict) else None
        if isinstance(length, int) and step < length:
            return step, length, state.get(STEPS_PER_EPOCH_KEY)
    return None


def stored_and_given(cfg: DictConfig, ckpt: dict, group: str) -> tuple[dict, dict] | None:
    """The settings of config group ``group`` (``averaging``, ``mixing``) the checkpoint's run was
    trained with and those of this command, as plain dicts (``{}`` for a choice without settings,
    ``none``); None for a checkpoint without its config (older litlab)."""
    config = (ckpt.get("litlab") or {}).get("config")
    if not config:
        return None
    node = cfg.get(group)
    new = (OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else None) or {}
    return config.get(group) or {}, new


def check_same_averaging(cfg: DictConfig, ckpt: dict, path) -> None:
    """A checkpoint trained with weight averaging (``averaging=ema``/``swa``) holds the average in
    ``state_dict`` and the trained weights in ``current_model_state``; one trained without holds the
    trained weights only. A resume with other averaging went on from the average as if it were the
    trained weights (``averaging=none``: Lightning loads ``state_dict``), started an average partway
    through the run (Lightning only warns), or went on with an average taken under other settings:
    refused, before anything is written. Checkpoints from before ``averaging`` trained without."""
    settings = stored_and_given(cfg, ckpt, "averaging")
    if settings is None:
        return  # an older checkpoint without its config: nothing to compare
    old, new = settings
    if old == new:
        return

    def shown(settings: dict) -> str:  # as overrides: averaging=ema averaging.decay=0.999 ...
        if "_target_" not in settings:
            return "averaging=none"
        keys = [f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                for k, v in flat_keys(settings, "averaging").items() if k != "averaging._target_"]
        return " ".join([f"averaging={str(settings['_target_']).rsplit('.', 1)[-1]}", *keys])

    if "_target_" not in old:
        why = ("it holds no average, and the resume would start one partway through the run, so best.ckpt and "
               "the test would hold an average of the resumed part only")
    elif "_target_" not in new:
        why = ("its state_dict holds the average and its current_model_state the trained weights, and without "
               "averaging the resume would go on training from the average as if it were the trained weights")
    else:
        why = "its average so far was taken with those settings, and the resume would go on with these"
    fresh = (f"train a new run with this averaging, in a new folder: "
             f"{rerun_command(cfg, Path(path).parent.parent, ['averaging'])}" if "_target_" in new else
             "train a new run without averaging, in a new folder (the run's overrides without its averaging ones)")
    raise LitlabError(
        f"ckpt_path={path} was trained with {shown(old)}, and this command has {shown(new)}: {why}. Resume with "
        f"the run's own averaging ({shown(old)}), or {fresh}.")


def log_mixing_change(cfg: DictConfig, ckpt: dict, path) -> None:
    """A resume may change the batch mixing (``mixing=...``): a checkpoint holds no mixing state, so
    the steps from here train with the new mixing, not refused (as the README says). Said in the
    log, naming both, so that the run's record of one ``mixing`` is not read as the whole run's."""
    settings = stored_and_given(cfg, ckpt, "mixing")
    if settings is None:
        return  # an older checkpoint without its config: nothing to compare
    old, new = settings

    def shown(settings: dict) -> str:  # Mixup(alpha=0.2, prob=1.0), or none
        if "_target_" not in settings:
            return "none"
        keys = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "_target_")
        return f"{str(settings['_target_']).rsplit('.', 1)[-1]}({keys})"

    if shown(old) != shown(new):
        log.info("resuming with mixing %s, and ckpt_path=%s was trained with mixing %s: the steps from here train "
                 "with the new mixing", shown(new), path, shown(old))


def check_same_optimization(cfg: DictConfig, ckpt: dict, path) -> None:
    """A resume restores the optimizer's and the schedule's state from the checkpoint, so other
    ``model.optimizer``/``model.scheduler`` values would be recorded but never used: refused.
    Keys that follow other settings (the cosine ``T_max`` from ``trainer.max_epochs``) may differ.
    Needs the config alone (``open_resume``: before the data is prepared); the optimizer's parameter
    groups (``model.decay_biases_and_norms``) are ``check_same_grouping``'s."""
    stored = ((ckpt.get("litlab") or {}).get("config") or {}).get("model")
    if not stored:
        return
    raw = OmegaConf.to_container(cfg.model, resolve=False)
    here = OmegaConf.to_container(cfg.model, resolve=True)
    changed = []
    for part in ("optimizer", "scheduler"):
        old, new, spelled = (flat_keys(d.get(part), f"model.{part}") for d in (stored, here, raw))
        for key in sorted(set(old) | set(new)):
            if key == "model.scheduler.T_max":
                if _same_period(old.get(key), new.get(key), ckpt, cfg):
                    continue
            elif "${" in str(spelled.get(key, "")) or old.get(key, ABSENT) == new.get(key, ABSENT):
                continue
            changed.append(f"{key} {shown_value(old.get(key, ABSENT))} in the checkpoint, "
                           f"{shown_value(new.get(key, ABSENT))} here")
    # the saved schedule counts epochs or optimizer steps (checkpoints before the key: epochs)
    old, new = (d.get("scheduler_interval", "epoch") for d in (stored, here))
    if old != new:
        changed.append(f"model.scheduler_interval {shown_value(old)} in the checkpoint, {shown_value(new)} here")
    # the warm-up's length in steps is saved with the schedule's clock: another one restarted it
    old, new = (float(d.get("warmup_epochs") or 0) for d in (stored, here))
    if old != new:
        changed.append(f"model.warmup_epochs {old:g} in the checkpoint, {new:g} here")
    if changed:
        raise LitlabError(
            f"ckpt_path={path} resumes the optimizer and learning-rate schedule saved with it, so the changed "
            f"settings ({'; '.join(changed)}) would be recorded but never applied. Resume with the run's own "
            f"model.optimizer, model.scheduler, model.scheduler_interval and model.warmup_epochs (leave those "
            f"overrides out), or train a new run.")


def _same_period(old, new, ckpt: dict, cfg: DictConfig) -> bool:
    """Whether a resume keeps the cosine period: the same ``T_max``, or one that spans the whole
    run on both sides (``T_max`` = ``trainer.max_epochs``, the default), which a resume with more
    epochs stretches (``tasks/optimizers.stretch_cosine_schedule``). A period set apart from the
    epochs (``T_max=10`` over 3 epochs) is the user's choice: resuming it without the override
    silently became the run's length (the rate jumped), and is refused like any other change."""
    if old == new:
        return True
    stored_epochs = (((ckpt.get("litlab") or {}).get("config") or {}).get("trainer") or {}).get("max_epochs")
    return old == stored_epochs and new == cfg.trainer.get("max_epochs")


# the switch of the optimizer's parameter groups (tasks/optimizers.parameter_groups)
_DECAY = "model.decay_biases_and_norms"


def check_same_grouping(cfg: DictConfig, ckpt: dict, path, model: L.LightningModule | None = None) -> None:
    """A resume restores the optimizer state saved in the checkpoint group by group; Lightning fails
    ("loaded state dict has a different number of parameter groups") where this run's optimizer has
    other groups. ``model.decay_biases_and_norms=false`` splits biases and norms off into a second
    group, except where ``optimizers.parameter_groups`` keeps one (no weight decay, L-BFGS, FSDP).

    A command that does not set the key continues the run as it was trained, said in the log: with
    the checkpoint's setting (``true`` for one from before the key: every parameter decayed), or with
    one group where the saved state has one that the setting would split here (an FSDP run resumed
    without FSDP, which decayed every parameter). A setting given on the command line that builds
    other groups is refused, as is a saved state no setting rebuilds here (two groups under FSDP).

    Runs twice: on the config alone before the data is prepared (``open_resume``), where a setting
    that splits counts as two groups, as every net of weight matrices and biases or norms gets them;
    then on the built ``model``'s parameters (``resolve_ckpt_path``), where it sets the model's and
    the config's setting to the one resumed with (the run's record holds that one)."""
    node = cfg.get("model")
    if not isinstance(node, DictConfig) or "decay_biases_and_norms" not in node:
        return  # a task of the user's own
    stored = ((ckpt.get("litlab") or {}).get("config") or {}).get("model") or {}
    old = stored.get("decay_biases_and_norms", True)  # before the key every parameter decayed
    given = any(sets_key(o, _DECAY) for o in job_overrides(cfg) or [])
    setting, saved = node.decay_biases_and_norms if given else old, _saved_groups(ckpt)
    sharded = strategy_name(OmegaConf.select(cfg, "trainer.strategy", default="auto")).startswith("fsdp")
    if model is None:
        factory = _optimizer_factory(node)
        if factory is None or saved is None:
            return
        reason = one_group_reason(factory, setting, sharded)
        built = [None] if reason else [DECAYED, NOT_DECAYED]
        # two groups for one saved: a net of one kind, or FSDP's one group, told apart on the model
        if not _same_groups(saved, built) and (len(built) == 1 or (given and setting != old)):
            _refuse_grouping(path, saved, built, setting, given, reason, sharded)
        return
    factory = getattr(model, "optimizer_factory", None)
    if factory is None or not hasattr(model, "decay_biases_and_norms"):
        return
    why = "the setting it was trained with" if "decay_biases_and_norms" in stored else (
        "it is from before the key, when every parameter decayed")
    if saved is not None:
        built = group_names(parameter_groups(factory, model.parameters(), setting, sharded))
        if not _same_groups(saved, built):
            if given or len(saved) != 1:
                _refuse_grouping(path, saved, built, setting, given, one_group_reason(factory, setting, sharded),
                                 sharded)
            setting, why = True, (f"its saved optimizer state has one parameter group (every parameter decays, as "
                                  f"under FSDP), which {str(old).lower()} would split in two here")
    if setting != model.decay_biases_and_norms:
        log.info("resuming with %s=%s, as ckpt_path=%s was trained: %s", _DECAY, str(setting).lower(), path, why)
        model.decay_biases_and_norms = node.decay_biases_and_norms = setting


def _saved_groups(ckpt: dict) -> list[str | None] | None:
    """The names of the parameter groups of the checkpoint's saved optimizer state (None for an
    unnamed group); None without one."""
    states = ckpt.get("optimizer_states") or []
    groups = states[0].get("param_groups") if len(states) == 1 and isinstance(states[0], dict) else None
    if not isinstance(groups, list) or not groups:
        return None
    return [g.get("name") if isinstance(g, dict) else None for g in groups]


def _same_groups(saved: list[str | None], built: list[str | None]) -> bool:
    """As many groups, of the same names where the saved state names them."""
    return len(saved) == len(built) and all(s is None or s == b for s, b in zip(saved, built))


def _optimizer_factory(node: DictConfig):
    """``model.optimizer`` built as the task gets it (a partial), or None for a task of the user's own."""
    optimizer = node.get("optimizer")
    if not (isinstance(optimizer, DictConfig) and optimizer.get("_partial_")):
        return None
    from litlab.build import instantiate

    return instantiate(optimizer, "model.optimizer")


def _groups_shown(names: list[str | None], reason: str | None = None) -> str:
    if len(names) == 1:
        return f"1 parameter group ({reason or 'every parameter with the same weight decay'})"
    named = ", ".join(n for n in names if n)
    return f"{len(names)} parameter groups ({f'{named}: ' if named else ''}biases and norms without weight decay)"


def _refuse_grouping(path, saved: list, built: list, setting: bool, given: bool, reason: str | None,
                     sharded: bool) -> None:
    what = (f"this command's {_DECAY}={str(setting).lower()}" if given else
            f"{_DECAY}={str(setting).lower()} (the checkpoint's)")
    if sharded and len(saved) > 1:
        todo = ("Resume with the run's own trainer.strategy (FSDP keeps its sharded parameters in one group), or "
                "train a new run in a new folder.")
    elif given:
        todo = (f"Leave {_DECAY} out of the command: the resume then keeps the checkpoint's grouping. To train with "
                f"this setting, start a new run in a new folder.")
    else:
        todo = "Resume with the run's own model.optimizer and trainer settings, or train a new run in a new folder."
    raise LitlabError(
        f"ckpt_path={path}: the saved optimizer state has {_groups_shown(saved)}, and {what} builds "
        f"{_groups_shown(built, reason)} here. A resume restores the optimizer state group by group, and Lightning "
        f"cannot load it into other groups. {todo}")


def same_net(cfg: DictConfig, ckpt: dict) -> bool:
    """Whether this command builds the checkpoint's net (``model.net`` as recorded; a checkpoint
    without it counts as the same). Another net is refused as "a different model" once it is built
    (``check_fits``), which says more than the optimizer settings that come with it."""
    stored = (((ckpt.get("litlab") or {}).get("config") or {}).get("model") or {}).get("net")
    node = OmegaConf.select(cfg, "model.net", default=None)
    if stored is None or not isinstance(node, DictConfig):
        return True
    return OmegaConf.to_container(node, resolve=True) == stored
