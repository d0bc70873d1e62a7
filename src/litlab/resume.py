"""Resuming a run (``ckpt_path``): which checkpoint, and what it cannot honour.

A resume restores the weights, the optimizer, the schedule and the loops from the checkpoint, and
serves the data with the checkpoint's normalization; settings of the command line that would be
recorded but never applied are refused before anything is written. The checkpoint is read before
the data is prepared (``open_resume``), so that a resume on other data settings is refused before
a dataset is downloaded or written, and checked against the data and model once they are built
(``resolve_ckpt_path``). This module holds those two steps and the checks of which checkpoint, on
which data, with anything left to train; the checks of the training settings a resume restores
(optimizer, schedule, clock, average) are ``resume_settings``'s.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.callbacks.checkpoints import data_position, holds_data_position, taken_within_epoch
from litlab.checkpoint_files import check_fits, load_checkpoint
from litlab.data.colour_channels import recorded_channels
from litlab.device_counts import known_device_count
from litlab.errors import LitlabError
from litlab.resume_choices import (check_same_choices, command_choices, earlier_record, run_checkpoint, started_from,
                                   started_with)
from litlab.resume_overrides import ABSENT, flat_keys, given_overrides, job_overrides, rerun_command, shown_value
from litlab.resume_settings import (check_same_averaging, check_same_grouping, check_same_optimization,
                                    check_same_steps_per_epoch, log_mixing_change, same_net)
from litlab.run_commands import path_override, run_dir_override, run_overrides, sets_key

log = logging.getLogger(__name__)


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
        path = run_checkpoint(run_dir)
    ckpt = load_checkpoint(path, compressed_ok=False)
    if cfg.get("ckpt_path") == "last":  # the run's overrides left out: said before the data is prepared
        check_same_choices(cfg, run_dir, earlier_record(run_dir, job_overrides(cfg)),
                           (ckpt.get("litlab") or {}).get("config"), command_choices(cfg), path)
    fallback = cfg.get("ckpt_path") == "last" and path.name == "best.ckpt"
    check_continuable(ckpt, path, run_dir, fallback)
    check_same_seed(cfg, ckpt, path, run_dir)
    check_same_batches(cfg, ckpt, path)
    check_same_steps_per_epoch(cfg, ckpt, path)
    check_same_averaging(cfg, ckpt, path)
    log_mixing_change(cfg, ckpt, path)  # a resume may change it: said, not refused
    if fallback:
        log.warning("%s is missing (the run was stopped while writing it); resuming from %s", path.with_name("last.ckpt"),
                    path)
    keep_run_channels(cfg, ckpt)  # data.channels=auto (the default) goes on with a run's 1 or 3
    check_same_data_settings(cfg, ckpt, path)
    if same_net(cfg, ckpt):  # another net is told as "a different model" once it is built (check_fits)
        check_same_optimization(cfg, ckpt, path)
        check_same_grouping(cfg, ckpt, path)
    return Resume(path, ckpt)


def keep_run_channels(cfg: DictConfig, ckpt: dict) -> None:
    """A resume reads the images with the channels the run used (``run_channels``: the number its
    checkpoint recorded), not with those ``data.channels=auto`` would choose from the folder today:
    a run from before ``auto`` was the default read 1, and a run under ``auto`` stored "auto", so
    one training file turned to colour since made the resume read 3 and refused it for another
    sample shape. ``auto`` here becomes the run's number; a number given for a run that stored
    ``auto`` is compared with the number it used (``_data_changes``)."""
    used = run_channels(ckpt)
    data = cfg.get("data")
    if not (isinstance(data, DictConfig) and data.get("channels") == "auto" and used in (1, 3)):
        return
    with open_dict(cfg):
        cfg.data.channels = used
    if used == 1:
        log.info("resuming with the run's data.channels=1: the run was trained in grayscale and goes on so; a new "
                 "run (without ckpt_path) with data.channels=auto or 3 would use the colours of colour images")
    else:
        log.info("resuming with the run's data.channels=3 (RGB)")


def run_channels(ckpt: dict) -> int | str | None:
    """The channels a run read its images with: the number its checkpoint recorded (its data
    record, else its config's data.channels when a number), ``auto`` or None when neither says."""
    record = ckpt.get("litlab") or {}
    used = recorded_channels(record.get("data") or {})
    stored = ((record.get("config") or {}).get("data") or {}).get("channels")
    return stored if used == "auto" and stored in (1, 3) else used


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


def check_same_seed(cfg: DictConfig, ckpt: dict, path, run_dir: Path) -> None:
    """A run is known by its seed: its record (``.hydra/overrides.yaml``, ``metrics.json``, a
    sweep's table and ``summarize --average-over seed``) names the seed of its latest start, and
    the epochs before the checkpoint were initialized and shuffled from the checkpoint's. A resume
    with another seed, anywhere (within an epoch it would also train other batches), is refused
    before anything is written, as other settings the record would misstate are; a new run in a
    new folder takes the new seed (``model.init_from`` starts it from the trained weights)."""
    old = ((ckpt.get("litlab") or {}).get("config") or {}).get("seed")
    new = cfg.get("seed")
    if old is None or old == new:
        return  # an older checkpoint without its config: nothing to compare
    kept = run_overrides(run_dir, "seed")  # this start's, which Hydra wrote before the run began
    if kept is None:
        found = job_overrides(cfg)
        kept = None if found is None else [o for o in found if not sets_key(o, "seed", "ckpt_path", "hydra")]
    run = ["<the run's overrides>"] if kept is None else [shlex.quote(o) for o in kept]
    start = "ckpt_path=last" if cfg.get("ckpt_path") == "last" else path_override("ckpt_path", path)
    command = " ".join(["python -m litlab.train", *run, f"seed={old}", start, run_dir_override(run_dir)])
    raise LitlabError(
        f"ckpt_path={path} was trained with seed={old}, and this command has seed={new}: the run's weights "
        f"were initialized and its epochs so far shuffled from seed {old}, and a resume under seed={new} would "
        f"record the whole run as seed {new}'s (.hydra/overrides.yaml, metrics.json, a sweep's table and "
        f"summarize --average-over seed). Resume with the run's own seed: {command}. For a run of seed {new}, "
        f"start a new one in a new folder, without ckpt_path ({path_override('model.init_from', path)} starts it "
        f"from this checkpoint's weights).")


def check_same_batches(cfg: DictConfig, ckpt: dict, path) -> None:
    """A resume within an epoch goes on with the batches of the epoch not yet trained, counted in
    batches of the run's ``data.batch_size`` per process, in the epoch's order drawn from the run's
    ``seed`` (``data/shuffled_batches.py``; another seed is refused anywhere, ``check_same_seed``):
    another batch size or process count makes other batches, and some samples of the epoch were
    trained twice, others never. Refused before anything is prepared or written (the loader's own
    check, ``ResumableLoader._check_same_batches``, came after the run's record was rewritten). At
    an epoch's end both may change: they change only the epochs to come."""
    position = data_position(ckpt)
    if not taken_within_epoch(ckpt) or position is None:
        return
    config = (ckpt.get("litlab") or {}).get("config") or {}
    stored = (config.get("data") or {}).get("batch_size")
    differ = []
    if stored is not None and stored != cfg.data.get("batch_size"):
        differ.append(f"data.batch_size={stored} in the checkpoint, {cfg.data.get('batch_size')} here")
    # "2", "0,1" and [0, 1] are 2 processes, as 2 is; auto, -1 and values Lightning refuses: not compared
    devices = known_device_count(cfg.trainer.get("devices"))
    nodes = cfg.trainer.get("num_nodes", 1)
    if devices is not None and isinstance(nodes, int) and position.get("world_size") not in (None, devices * nodes):
        differ.append(f"{position['world_size']} process(es) in the checkpoint, {devices * nodes} here "
                      f"(trainer.devices x trainer.num_nodes)")
    if differ:
        raise LitlabError(
            f"ckpt_path={path} was taken after {position.get('served')} of the {position.get('batches')} training "
            f"batches of epoch {position.get('epoch')} per process, and a resume goes on with the batches left; "
            f"here they would be other batches ({'; '.join(differ)}). Resume with the run's data.batch_size, "
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
    check_fits_run(cfg, model, ckpt, path)
    check_same_optimization(cfg, ckpt, path)  # checked before the data unless the net's settings differ
    check_same_grouping(cfg, ckpt, path, model)
    check_something_left(cfg, ckpt, Path(path).parent.parent)
    return str(path), int(ckpt.get("global_step") or 0)


def check_fits_run(cfg: DictConfig, model: L.LightningModule, ckpt: dict, path) -> None:
    """``check_fits``, whose "a different model" names what the run that wrote the checkpoint was
    started with (its folder's record) and the command that resumes it: the overrides left out
    (``model.net.hidden_sizes=...``) are the likely mistake, and the record has them."""
    try:
        check_fits(model, ckpt["state_dict"], path)
    except LitlabError as e:
        run_dir = Path(path).absolute().parent.parent
        own = cfg.get("ckpt_path") == "last"
        start = "ckpt_path=last" if own else path_override("ckpt_path", path)
        record = earlier_record(run_dir, job_overrides(cfg))  # this start's own record is not the run's
        if record is None:
            raise
        if own:
            raise LitlabError(f"{e} For {run_dir}, {started_with(record, run_dir, start)}.") from None
        # another run's checkpoint starts a new run: its command must not train in that run's folder
        raise LitlabError(f"{e} {started_from(record, run_dir, start, _given_run_dir(cfg))}.") from None


def _given_run_dir(cfg: DictConfig) -> str | None:
    """This command's ``hydra.run.dir=...`` as a shell word, where it gave one: the composed config's
    record of Hydra's overrides (tests compose with it), or the running Hydra job's."""
    found = OmegaConf.select(cfg, "hydra.overrides.hydra", default=None)
    if found is None:
        from hydra.core.hydra_config import HydraConfig

        found = HydraConfig.get().overrides.hydra if HydraConfig.initialized() else []
    given = [str(o) for o in found if str(o).lstrip("+").split("=", 1)[0] == "hydra.run.dir"]
    return path_override("hydra.run.dir", given[-1].split("=", 1)[1]) if given else None


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
            f"{' '.join(given_overrides(cfg, asked))}, in a new folder; with the same seed it trains the same model "
            f"again, then {does} it: {rerun_command(cfg, run_dir, asked)}")
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


# data.* keys a resume may change: how the same samples are loaded and augmented, not which ones
_LOADING = ("data.batch_size", "data.num_workers", "data.in_memory", "data.memory_limit_mb", "data.on_bad_file",
            "data.augment")
# where the same data lies: a resume may read it from another folder (a cluster job's local copy)
_LOCATION = ("data.root", "data.path")
# data.* keys newer than some checkpoints, at the value that serves the data as those were trained
_ADDED = {"data.folds": None, "data.fold": 0}


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
    old, new = flat_keys(absolute_locations(stored), "data"), flat_keys(here, "data")
    changed, moved = [], []
    used = run_channels(ckpt) if old.get("data.channels") == "auto" else None
    if used in (1, 3) and new.get("data.channels") in (1, 3):  # auto is judged by the number the run used
        if new["data.channels"] == used:
            old["data.channels"] = used
        else:
            changed.append(f"data.channels auto in the checkpoint, which read the images with {used} channel(s) "
                           f"(data.channels={used}), {new['data.channels']} here")
            old["data.channels"] = new["data.channels"]
    for key in sorted(set(old) | set(new)):
        if old.get(key, _ADDED.get(key, ABSENT)) == new.get(key, ABSENT) or key.startswith(_LOADING):
            continue
        (moved if key in _LOCATION else changed).append(
            f"{key} {shown_value(old.get(key, ABSENT))} in the checkpoint, {shown_value(new.get(key, ABSENT))} here")
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
