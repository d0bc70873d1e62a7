"""Resuming a run (``ckpt_path``): which checkpoint, and what it cannot honour.

A resume restores the weights, the optimizer, the schedule and the loops from the checkpoint, and
serves the data with the checkpoint's normalization; settings of the command line that would be
recorded but never applied are refused before anything is written. The checkpoint is read before
the data is prepared (``open_resume``), so that a resume on other data settings is refused before
a dataset is downloaded or written, and checked against the data and model once they are built
(``resolve_ckpt_path``).
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from litlab.callbacks.checkpoints import data_position, holds_data_position, taken_within_epoch
from litlab.callbacks.interruption import run_overrides, sets_key
from litlab.checkpoint_files import check_fits, load_checkpoint
from litlab.errors import LitlabError
from litlab.config_check import strategy_name
from litlab.tasks.optimizers import (DECAYED, NOT_DECAYED, STEPS_PER_EPOCH_KEY, group_names, one_group_reason,
                                     parameter_groups)
from litlab.tasks.schedules import EPOCH_STEP_SETTINGS, WARMUP_STEPS_KEY, other_epoch_steps

log = logging.getLogger(__name__)
_ABSENT = object()


@dataclass
class Resume:
    """The checkpoint ``ckpt_path`` names, read once (``open_resume``) for both checks."""

    path: str | Path
    """as given (``ckpt_path=...``), or the run directory's checkpoint for ``last``"""
    ckpt: dict


def open_resume(cfg: DictConfig, run_dir: Path) -> Resume | None:
    """``ckpt_path``: None, ``last`` (this run directory's last.ckpt) or a path, read and compared
    with the data settings before the data is prepared: a resume that forgot the run's
    ``data=...`` would otherwise prepare (write, download) the default dataset first, only to be
    refused. None without ``ckpt_path``."""
    path = cfg.get("ckpt_path")
    if path is None:
        return None
    if path == "last":
        path = run_dir / "checkpoints" / "last.ckpt"
        best = path.with_name("best.ckpt")
        if not path.is_file() and best.is_file():
            # killed while its first last.ckpt was being written: best.ckpt, written just before, is complete
            path = best
    ckpt = load_checkpoint(path, compressed_ok=False)
    fallback = cfg.get("ckpt_path") == "last" and path.name == "best.ckpt"
    check_continuable(ckpt, path, run_dir, fallback)
    check_same_batches(cfg, ckpt, path)
    check_same_steps_per_epoch(cfg, ckpt, path)
    check_same_averaging(cfg, ckpt, path)
    if fallback:
        log.warning("%s is missing (the run was stopped while writing it); resuming from %s", path.with_name("last.ckpt"),
                    path)
    check_same_data_settings(cfg, ckpt, path)
    if _same_net(cfg, ckpt):  # another net is told as "a different model" once it is built (check_fits)
        check_same_optimization(cfg, ckpt, path)
        check_same_grouping(cfg, ckpt, path)
    return Resume(path, ckpt)


# why a checkpoint taken within an epoch holds no position of the training data
_NO_POSITION = ("(an older litlab, trainer.overfit_batches, or taken in the middle of a "
                "trainer.accumulate_grad_batches window, whose summed gradients no checkpoint holds)")


def check_continuable(ckpt: dict, path: Path, run_dir: Path, fallback: bool) -> None:
    """A checkpoint taken within an epoch continues that epoch from the training loader's position
    that it holds (``data/resumable_loader.py``). One written by a litlab that did not save it (a
    best.ckpt of a validation within an epoch), or one without it as it was taken in the middle of
    an accumulation window (``checkpoints.gradients_pending``), cannot be continued exactly:
    Lightning would count the epoch's batches already trained while the data started again at the
    epoch's first batch, training some twice and the rest never. Refused, whether it is named or is
    the ``ckpt_path=last`` fallback (``fallback``) of a run without last.ckpt; such a run's
    last.ckpt, when there is one, holds an epoch's end or a validation it can continue, and resumes as before."""
    if not taken_within_epoch(ckpt) or holds_data_position(ckpt):
        return
    if fallback:
        raise LitlabError(
            f"ckpt_path=last: {run_dir} has no last.ckpt, as the run stopped before its first epoch ended; its "
            f"best.ckpt is from a validation within that epoch, without the training data's position in it "
            f"{_NO_POSITION}, and a resume from there would start the epoch's data "
            f"again at its first batch while counting the batches already trained. Start the run again: the same "
            f"command without ckpt_path=last, in a new folder (hydra.run.dir=NEW_DIR).")
    try:
        done = f" after {int(ckpt['loops']['fit_loop']['epoch_loop.batch_progress']['current']['completed'])} batches"
    except (KeyError, TypeError, ValueError):
        done = ""
    instead = ("start the run again in a new folder" if Path(path).name == "last.ckpt" else
               "resume from the run's last.ckpt (the last checkpoint that can be continued exactly), or start the "
               "run again in a new folder")
    raise LitlabError(
        f"ckpt_path={path} was written within epoch {ckpt.get('epoch')}{done}, without the training data's "
        f"position in the epoch {_NO_POSITION}: a resume from it would start the "
        f"epoch's data again at its first batch while counting the batches already trained, so some would be "
        f"trained twice and others never. Instead, {instead}.")


def check_same_batches(cfg: DictConfig, ckpt: dict, path) -> None:
    """A resume within an epoch goes on with the batches of the epoch not yet trained, counted in
    batches of the run's ``data.batch_size`` per process, in the epoch's order drawn from the run's
    ``seed`` (``data/shuffled_batches.py``): another batch size, process count or seed makes other
    batches, and some samples of the epoch were trained twice, others never. Refused before
    anything is prepared or written (the loader's own check, ``ResumableLoader._check_same_batches``,
    came after the run's record was rewritten). At an epoch's end all three may change: they change
    only the epochs to come."""
    position = data_position(ckpt)
    if not taken_within_epoch(ckpt) or position is None:
        return
    config = (ckpt.get("litlab") or {}).get("config") or {}
    stored = (config.get("data") or {}).get("batch_size")
    differ = []
    if config.get("seed") is not None and config["seed"] != cfg.get("seed"):
        differ.append(f"seed={config['seed']} in the checkpoint, {cfg.get('seed')} here")
    if stored is not None and stored != cfg.data.get("batch_size"):
        differ.append(f"data.batch_size={stored} in the checkpoint, {cfg.data.get('batch_size')} here")
    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) and position.get("world_size") not in (
            None, devices * nodes):
        differ.append(f"{position['world_size']} process(es) in the checkpoint, {devices * nodes} here "
                      f"(trainer.devices x trainer.num_nodes)")
    if differ:
        raise LitlabError(
            f"ckpt_path={path} was taken after {position.get('served')} of the {position.get('batches')} training "
            f"batches of epoch {position.get('epoch')} per process, and a resume goes on with the batches left; "
            f"here they would be other batches ({'; '.join(differ)}). Resume with the run's seed, data.batch_size, "
            f"trainer.devices and trainer.num_nodes (its .hydra/overrides.yaml lists those it set), or from a "
            f"checkpoint taken at an epoch's end, where they may change.")


def resolve_ckpt_path(cfg: DictConfig, resume: Resume | None, dm, model: L.LightningModule) -> tuple[str | None, int]:
    """Checks the checkpoint of ``open_resume`` against the data module ``dm`` and the model, and
    has ``dm`` serve the data with the checkpoint's normalization (its statistics of the training
    images, which another ``data.in_memory`` estimates otherwise: from 512 streamed images or from
    all of them), and the model build the optimizer's parameter groups its saved state holds
    (``check_same_grouping``). Returns the path and the optimizer step the checkpoint was saved at
    (0 without one).

    The data is compared before the weights: a checkpoint of other classes or another sample shape
    does not fit the model built for this data, and was refused as "a different model"."""
    if resume is None:
        return None, 0
    path, ckpt = resume.path, resume.ckpt
    check_same_data(cfg, ckpt, path, dm.describe())
    dm.adopt_trained(ckpt["litlab"].get("data") or {}, f"ckpt_path={path}")
    check_fits(model, ckpt["state_dict"], path)
    check_same_optimization(cfg, ckpt, path)  # checked before the data unless the net's settings differ
    check_same_grouping(cfg, ckpt, path, model)
    check_something_left(cfg, ckpt, Path(path).parent.parent)
    return str(path), int(ckpt.get("global_step") or 0)


def check_something_left(cfg: DictConfig, ckpt: dict, run_dir: Path) -> None:
    """Resuming a completed run (``run_dir``, the checkpoint's own) trains only up to a larger
    ``trainer.max_epochs``; without one it would train nothing and write a record of a bare
    re-test (in the run's folder, or in a new one for ``ckpt_path=PATH``)."""
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
        status = record.get("status")
        done = _epochs_done(ckpt)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    max_epochs = cfg.trainer.get("max_epochs")
    stored = (ckpt.get("litlab") or {}).get("config") or {}
    stopping = OmegaConf.to_container(cfg.callbacks, resolve=True).get("early_stopping") if cfg.get("callbacks") else None
    stopped = status == "completed" and record.get("stopped_early") and stopping is not None and stopping == (
        stored.get("callbacks") or {}).get("early_stopping")
    trained_out = status == "completed" and max_epochs not in (None, -1) and done >= int(max_epochs)
    if not (stopped or trained_out):
        return
    asked = _new_after_training(cfg, stored)
    if asked:
        work, verb, does = (" and ".join(_AFTER_TRAINING[g][i] for g in asked) for i in range(3))
        raise LitlabError(
            f"ckpt_path={cfg.ckpt_path}: the run in {run_dir} is completed ({done} epoch(s)), so nothing is left "
            f"to train, and {work} {'run' if len(asked) > 1 else 'runs'} only at the end of a training run: a "
            f"resume cannot {verb} a finished model. Run the job's overrides again with "
            f"{' '.join(_given(cfg, asked))}, in a new folder; with the same seed it trains the same model again, "
            f"then {does} it: {rerun_command(cfg, run_dir, asked)}")
    if stopped:
        raise LitlabError(
            f"ckpt_path={cfg.ckpt_path}: the run in {run_dir} is completed: early stopping ended it in epoch "
            f"{record.get('stopped_after_epoch') or done}, when {stopping.get('monitor')} had not improved for "
            f"callbacks.early_stopping.patience={stopping.get('patience')} validations, and with the same early stopping a resume would stop again at the "
            f"next check. Raise callbacks.early_stopping.patience to train on, or test it again with python -m "
            f"litlab.eval ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}.")
    raise LitlabError(
        f"ckpt_path={cfg.ckpt_path}: the run in {run_dir} is completed and has trained {done} epoch(s), as many as "
        f"trainer.max_epochs={max_epochs}, so nothing is left to train. Raise trainer.max_epochs to train on "
        f"(e.g. trainer.max_epochs={done + 5}), or test it again with python -m litlab.eval ckpt_path="
        f"{run_dir / 'checkpoints' / 'best.ckpt'}.")


def _epochs_done(ckpt: dict) -> int:
    """The training epochs that ran all their batches before ``ckpt`` was taken. Early stopping at
    the last batch of an epoch (the end of a ``trainer.accumulate_grad_batches`` window) validates,
    and writes last.ckpt, before Lightning counts the epoch as processed; a resume goes on at the
    next epoch, so that epoch is done too (counted as not, a completed run resumed with the same
    ``trainer.max_epochs`` trained nothing and rewrote its record)."""
    loop = ckpt["loops"]["fit_loop"]
    progress = loop["epoch_progress"]["current"]
    done = int(progress["processed"])
    if int(progress.get("started", done)) > done and (loop.get("epoch_loop.batch_progress") or {}).get("is_last_batch"):
        done += 1
    return done


# what the work after training (training.after_training) is called, done, and does
_AFTER_TRAINING = {"compress": ("compression", "compress", "compresses"), "export": ("export", "export", "exports")}


def _new_after_training(cfg: DictConfig, stored: dict) -> list[str]:
    """``compress`` and ``export`` where this command sets one other than the run's own (the run
    already compressed or exported with its own, at its end)."""
    asked = []
    for group in ("compress", "export"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node and OmegaConf.to_container(
                node, resolve=True) != stored.get(group):
            asked.append(group)
    return asked


def _job_overrides(cfg: DictConfig) -> list[str] | None:
    """This command's overrides: the composed config's record of them (tests compose with it), or
    the running Hydra job's; None outside both."""
    found = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if found is not None:
        return [str(o) for o in found]
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else None


def _given(cfg: DictConfig, groups: list[str]) -> list[str]:
    """This command's overrides of ``groups`` (``compress=prune``, ``compress.amount=0.5``), or a
    ``group=...`` placeholder where they are unknown."""
    given = [o for o in _job_overrides(cfg) or [] if sets_key(o, *groups)]
    return given or [f"{group}=..." for group in groups]


def rerun_command(cfg: DictConfig, run_dir: Path, groups: list[str]) -> str:
    """The command that trains the run in ``run_dir`` again, into a new folder, with this command's
    settings of ``groups`` (``compress``, ``export``) in place of the run's."""
    kept = run_overrides(run_dir, *groups)
    run = ["<the run's overrides>"] if kept is None else [shlex.quote(o) for o in kept]
    return " ".join(["python -m litlab.train", *run, *map(shlex.quote, _given(cfg, groups))])


def _flat(value, prefix: str) -> dict:
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, sub in value.items() for k, v in _flat(sub, f"{prefix}.{key}").items()}


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
    applies them: ``+trainer.limit_train_batches=1.0`` is the checkpoint's absent one."""
    per_step = [s[STEPS_PER_EPOCH_KEY] for s in ckpt.get("lr_schedulers") or []
                if isinstance(s, dict) and STEPS_PER_EPOCH_KEY in s]
    warmup = _warmup_left(ckpt)
    config = (ckpt.get("litlab") or {}).get("config")
    if not (per_step or warmup) or not config:
        return  # an older checkpoint without its config: the counts are checked when training starts
    stored = OmegaConf.create(config)
    changed = []
    for key, default in EPOCH_STEP_SETTINGS.items():
        old, new = (OmegaConf.select(c, key, default=_ABSENT, throw_on_resolution_failure=False) for c in (stored, cfg))
        if _applied(old, default) != _applied(new, default):
            changed.append(f"{key} {_shown(old)} in the checkpoint, {_shown(new)} here")
    if not changed:
        return
    other = f"another number of optimizer steps ({'; '.join(changed)})"
    if per_step:
        raise other_epoch_steps(f"ckpt_path={path}", per_step[0], other)
    raise other_epoch_steps(f"ckpt_path={path}", warmup[2], other, warmup[:2])


def _applied(value, default) -> tuple[bool, object]:
    """A setting of ``EPOCH_STEP_SETTINGS`` as the run applies it: absent or null is its
    ``default`` (where it has one), and a float differs from the int of the same value
    (``trainer.limit_train_batches=1.0`` trains every batch, ``1`` one batch)."""
    if (value is _ABSENT or value is None) and default is not None:
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


def check_same_averaging(cfg: DictConfig, ckpt: dict, path) -> None:
    """A checkpoint trained with weight averaging (``averaging=ema``/``swa``) holds the average in
    ``state_dict`` and the trained weights in ``current_model_state``; one trained without holds the
    trained weights only. A resume with other averaging went on from the average as if it were the
    trained weights (``averaging=none``: Lightning loads ``state_dict``), started an average partway
    through the run (Lightning only warns), or went on with an average taken under other settings:
    refused, before anything is written. Checkpoints from before ``averaging`` trained without."""
    config = (ckpt.get("litlab") or {}).get("config")
    if not config:
        return  # an older checkpoint without its config: nothing to compare
    node = cfg.get("averaging")
    old = config.get("averaging") or {}
    new = (OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else None) or {}
    if old == new:
        return

    def shown(settings: dict) -> str:  # as overrides: averaging=ema averaging.decay=0.999 ...
        if "_target_" not in settings:
            return "averaging=none"
        keys = [f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                for k, v in _flat(settings, "averaging").items() if k != "averaging._target_"]
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
        old, new, spelled = (_flat(d.get(part), f"model.{part}") for d in (stored, here, raw))
        for key in sorted(set(old) | set(new)):
            if key == "model.scheduler.T_max":
                if _same_period(old.get(key), new.get(key), ckpt, cfg):
                    continue
            elif "${" in str(spelled.get(key, "")) or old.get(key, _ABSENT) == new.get(key, _ABSENT):
                continue
            changed.append(f"{key} {_shown(old.get(key, _ABSENT))} in the checkpoint, {_shown(new.get(key, _ABSENT))} "
                           f"here")
    # the saved schedule counts epochs or optimizer steps (checkpoints before the key: epochs)
    old, new = (d.get("scheduler_interval", "epoch") for d in (stored, here))
    if old != new:
        changed.append(f"model.scheduler_interval {_shown(old)} in the checkpoint, {_shown(new)} here")
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
    given = any(sets_key(o, _DECAY) for o in _job_overrides(cfg) or [])
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


def _same_net(cfg: DictConfig, ckpt: dict) -> bool:
    """Whether this command builds the checkpoint's net (``model.net`` as recorded; a checkpoint
    without it counts as the same). Another net is refused as "a different model" once it is built
    (``check_fits``), which says more than the optimizer settings that come with it."""
    stored = (((ckpt.get("litlab") or {}).get("config") or {}).get("model") or {}).get("net")
    node = OmegaConf.select(cfg, "model.net", default=None)
    if stored is None or not isinstance(node, DictConfig):
        return True
    return OmegaConf.to_container(node, resolve=True) == stored


# data.* keys a resume may change: how the same samples are loaded and augmented, not which ones
_LOADING = ("data.batch_size", "data.num_workers", "data.in_memory", "data.memory_limit_mb", "data.on_bad_file",
            "data.augment")
# where the same data lies: a resume may read it from another folder (a cluster job's local copy)
_LOCATION = ("data.root", "data.path")


def absolute_locations(data: dict) -> dict:
    """``data`` (the plain ``data.*`` values) with ``data.root`` and ``data.path`` (``_LOCATION``)
    made absolute against the working directory, as checkpoints record them: a relative one (the
    default ``./data/digits``) names other data in another folder. URLs are left as they are."""
    data = dict(data)
    for key in (k.removeprefix("data.") for k in _LOCATION):
        value = data.get(key)
        if isinstance(value, str) and value and "://" not in value and not Path(value).is_absolute():
            data[key] = str(Path(value).absolute())
    return data


def _data_changes(cfg: DictConfig, ckpt: dict) -> tuple[list[str], list[str]]:
    """The ``data.*`` settings that differ from the checkpoint's: those that change which samples
    are trained on, and those that say where the same data lies (``_LOCATION``), both sides made
    absolute (the checkpoint records them so; a relative one here was a false "another place")."""
    stored = ((ckpt.get("litlab") or {}).get("config") or {}).get("data")
    if not stored:
        return [], []  # an older checkpoint without its config: nothing to compare
    here = absolute_locations(OmegaConf.to_container(cfg.data, resolve=True))
    old, new = _flat(absolute_locations(stored), "data"), _flat(here, "data")
    changed, moved = [], []
    for key in sorted(set(old) | set(new)):
        if old.get(key, _ABSENT) == new.get(key, _ABSENT) or key.startswith(_LOADING):
            continue
        (moved if key in _LOCATION else changed).append(
            f"{key} {_shown(old.get(key, _ABSENT))} in the checkpoint, {_shown(new.get(key, _ABSENT))} here")
    return changed, moved


def check_same_data_settings(cfg: DictConfig, ckpt: dict, path) -> None:
    """The config part of ``check_same_data``, which needs no data: checked before the data is
    prepared, so that a refused resume writes or downloads no dataset."""
    changed, _ = _data_changes(cfg, ckpt)
    if changed:
        _refuse_other_data(path, changed)


def check_same_data(cfg: DictConfig, ckpt: dict, path, data_record: dict) -> None:
    """A resume trains on what the run trained on: another dataset (``data=``, a shape, a split, a
    normalization) would go on training the same weights on other samples and leave a record
    (best val/acc, test/acc of best.ckpt) mixed from both. Refused; the loading settings
    (``_LOADING``) may change, and the location (``_LOCATION``) when the classes and the sample
    shape are the run's (``data_record``: this data's ``describe()``)."""
    changed, moved = _data_changes(cfg, ckpt)
    trained = (ckpt.get("litlab") or {}).get("data") or {}
    for key, what in (("class_names", "classes"), ("input_shape", "sample shape")):
        if key in trained and key in data_record and [str(v) for v in trained[key]] != [str(v) for v in data_record[key]]:
            changed.append(f"the {what} {trained[key]} in the checkpoint, {data_record[key]} here")
    if changed:
        _refuse_other_data(path, changed)
    if moved:
        log.warning("resuming on the run's data from another place (%s); its classes and sample shape match",
                    "; ".join(moved))


def _refuse_other_data(path, changed: list[str]) -> None:
    raise LitlabError(
        f"ckpt_path={path} continues training on the data it was trained on, but the data differs "
        f"({'; '.join(changed)}); the run's record would mix two datasets. Resume with the run's own data "
        f"settings (its .hydra/overrides.yaml lists them), or start a new run (a new folder) on this data. Only "
        f"data.batch_size, data.num_workers, data.in_memory, data.memory_limit_mb, data.on_bad_file and "
        f"data.augment may change on a resume.")


def _shown(value) -> str:
    return "absent" if value is _ABSENT else ("null" if value is None else str(value))
