"""One training run: build, fit, test, compress, report (``train(cfg)``).

Each step is a function that tests call directly; ``litlab.train`` adds the command line, Hydra
and error handling around ``train``.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig, OmegaConf

from litlab import __version__
from litlab.build import (build_callbacks, build_data, build_loggers, build_model, build_trainer, check_batch_norm_batch,
                          check_targets, check_task_settings)
from litlab.callbacks.group import find_callback
from litlab.callbacks.interruption import epochs_trained
from litlab.callbacks.model_summary import FlopSummary
from litlab.callbacks.throughput import Throughput
from litlab.callbacks.weight_averaging import Averaging
from litlab.compression.run import check_compression
from litlab.entry import is_multirun, sigterm_stops_here
from litlab.errors import LitlabError
from litlab.init_weights import init_record, load_init_weights, open_init_from
from litlab.monitor_checks import check_monitored
from litlab.resume import absolute_locations, open_resume, resolve_ckpt_path
from litlab.reporting.hparams import log_final_hparams
from litlab.reporting.run_files import labels_of, start_metrics, start_origin, update_metrics
from litlab.reporting.summary import print_summary
from litlab.distributed.launcher import scale_facts
from litlab.seeding import seed_everything
from litlab.tasks.frozen_layers import check_freeze_config, freeze_record, keep_resumed_freeze
from litlab.trainer_checks import check_trainer_config, check_validation_runs

log = logging.getLogger(__name__)


def fit(trainer: L.Trainer, model: L.LightningModule, dm, ckpt_path: str | None, step: int) -> dict:
    """Trains (from ``ckpt_path``, saved at optimizer step ``step``, when resuming); returns the
    run's training facts for metrics.json."""
    if ckpt_path is not None:
        for logger in trainer.loggers:
            if hasattr(logger, "continue_from_step"):
                logger.continue_from_step(step)
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    except ValueError as e:  # Lightning's check of val_check_interval against the batches, at fit start
        if str(e).strip().startswith("`val_check_interval`"):
            raise LitlabError(f"trainer.val_check_interval: {' '.join(str(e).split())}") from None
        raise
    facts: dict = {"fit_time_s": time.perf_counter() - start, **epochs_trained(trainer),
                   "global_step": trainer.global_step}
    if trainer.interrupted:
        facts["status"] = "interrupted"
    # the last epoch's figures (val/loss, train/acc, ...: any of them can be a sweep's optimized_metric);
    # val/acc below is the best epoch's when checkpoints pick the best by it
    facts.update({k: v for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))})
    ckpt_cb = trainer.checkpoint_callback
    if ckpt_cb is not None:
        if ckpt_cb.monitor and ckpt_cb.best_model_score is not None:  # the best checkpoint's score, under
            facts[ckpt_cb.monitor] = ckpt_cb.best_model_score  # the name of what it monitors
        facts["best_ckpt"] = ckpt_cb.best_model_path or None
        last = Path(ckpt_cb.dirpath) / "last.ckpt"  # none after trainer.max_epochs=0
        facts["last_ckpt"] = str(last) if ckpt_cb.save_last and last.is_file() else None
    stopper = find_callback(trainer, EarlyStopping)
    if stopper is not None:  # whether early stopping ended the run, and after which epoch
        # litlab's EarlyStopping knows; Lightning's stopped_epoch is 0 also for a stop in the first epoch
        facts["stopped_early"] = bool(getattr(stopper, "stopped", stopper.stopped_epoch > 0))
        if facts["stopped_early"]:
            facts["stopped_after_epoch"] = stopper.stopped_epoch + 1
        if facts["stopped_early"] and trainer.is_global_zero:  # once, not once per DDP rank
            log.info("early stopping: %s did not improve for %d validations; stopped after epoch %d",
                     stopper.monitor, stopper.patience, stopper.stopped_epoch + 1)
    throughput = find_callback(trainer, Throughput)
    if throughput is not None:  # the whole run's rate, or says it is the rate since a resume
        facts.update(throughput.facts())
    averaging = find_callback(trainer, Averaging)
    if averaging is not None:  # which weights validation, best.ckpt and the test used
        facts["averaging"] = averaging.describe()
    if getattr(model, "mixing", None) is not None:  # how training batches were mixed: mixup(alpha=0.2), ...
        facts["mixing"] = str(model.mixing)
    if getattr(model, "class_weights", None) is not None:  # the weights the training loss applied
        facts["class_weights"] = list(model.class_weights)
    summary = find_callback(trainer, FlopSummary)
    if summary is not None and summary.flops_per_sample is not None:  # one sample's forward pass
        facts["flops_per_sample"] = summary.flops_per_sample
    return facts


def test(trainer: L.Trainer, model: L.LightningModule, dm, best_ckpt: str | None) -> dict:
    """Tests the best checkpoint (or the final weights when there is none)."""
    results = trainer.test(model, datamodule=dm, ckpt_path=best_ckpt or None, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def debug_batch_limits(trainer: L.Trainer, dm) -> dict[str, int | None]:
    """Batches per split for the work after training under the debug presets: ``debug=fdr``
    (``trainer.fast_dev_run``) one batch of everything, ``debug=limit`` the ``limit_*_batches``
    (a count, or a share of the split's batches); an empty dict for a normal run. Without it,
    ``debug=fdr compress=prune`` fine-tuned over the whole training split for 8 epochs."""
    if trainer.fast_dev_run:
        n = int(trainer.fast_dev_run)  # True: 1
        return {"train": n, "val": n, "test": n}
    limits = {}
    for split, limit in (("train", trainer.limit_train_batches), ("val", trainer.limit_val_batches),
                         ("test", trainer.limit_test_batches)):
        if isinstance(limit, int) or limit is None:
            limits[split] = limit
        elif limit < 1.0:
            with dm.without_trainer():
                loader = getattr(dm, f"{split}_dataloader")()
            limits[split] = max(1, int(len(loader) * limit))
    return limits


def after_training(cfg: DictConfig, trainer: L.Trainer, model, dm, run_dir: Path, metrics: dict,
                   loggers: list) -> dict:
    """Compression and export of the trained model (rank 0, outside any distributed strategy).

    Returns extra metrics.json fields (``compress/...``, ``export/...``).
    """
    compress_cfg, export_cfg = cfg.get("compress"), cfg.get("export")
    compressing = bool(compress_cfg) and "_target_" in compress_cfg
    exporting = bool(export_cfg) and "_target_" in export_cfg
    if not (compressing or exporting):
        return {}
    from litlab.compression.artifacts import trained_net

    if trainer.fast_dev_run and OmegaConf.select(cfg, "compress.finetune.epochs") is not None:
        cfg = copy.deepcopy(cfg)  # the run's record keeps what was asked
        OmegaConf.update(cfg, "compress.finetune.epochs", 1)  # one fine-tuning epoch of the debug's batches
    extra: dict = {}

    trained = trained_net(model, metrics)  # best.ckpt read once, for both
    # under DDP the trainer's evaluation loaders give rank 0 its shard only
    with dm.without_trainer(), dm.first_batches(debug_batch_limits(trainer, dm)):
        if compressing:
            from litlab.compression.run import compress_after_training

            extra.update(compress_after_training(cfg, model, trained, dm, run_dir, loggers))
        if exporting:
            from litlab.compression.export import export_after_training

            extra.update(export_after_training(cfg, trained, dm, run_dir, extra))
    return extra


def partial_data(trainer_cfg: DictConfig) -> dict:
    """``{"partial_data": {...}}`` when the trainer runs on part of the data (``debug=fdr``, ``limit``,
    ``overfit`` or ``trainer.limit_*``): the figures of such a run cover those batches only, and its
    record says so; ``{}`` otherwise. ``limit_*`` takes a fraction (a float; 1.0 is all) or a count of
    batches (an int; 1 is one batch)."""
    found = {}
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer_cfg.get(key)
        if value is not None and not (isinstance(value, float) and value == 1.0):
            found[key] = value
    for key in ("fast_dev_run", "overfit_batches"):
        if trainer_cfg.get(key):  # False, 0 and 0.0 are off
            found[key] = trainer_cfg.get(key)
    return {"partial_data": found} if found else {}


def run_record(cfg: DictConfig, dm) -> dict:
    """What every checkpoint carries so that eval and predict can rebuild the run (plain types only).

    ``data.root`` and ``data.path`` are recorded as absolute paths: a relative one (the default
    ``./data/digits``) was read from wherever eval ran, so eval in another folder tested other data
    of the same name, or wrote a fresh copy of the digits there, and said nothing. A resume compares
    its own ``data.*`` with them made absolute the same way (``resume.absolute_locations``)."""
    config = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    if config.get("data"):
        config["data"] = absolute_locations(config["data"])
    return {"version": __version__, "config": config, "data": dm.describe()}


def train(cfg: DictConfig) -> float | None:
    """Runs one experiment and returns the value of ``cfg.optimized_metric`` (for sweeps)."""
    run_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    # SIGTERM raises Terminated (recorded "interrupted", exit 143) wherever Lightning's loops and the
    # Interruption callback do not stop at a batch end: data preparation, the moments between fit
    # and test (Lightning puts this handler back there), compression and export
    with sigterm_stops_here():
        check_trainer_config(cfg.trainer)  # devices, precision, strategy: before any data is prepared
        check_validation_runs(cfg)
        check_targets(cfg)  # every class by its _target_, likewise
        check_task_settings(cfg.model)  # label smoothing, optimizer, scheduler: likewise
        check_freeze_config(cfg)  # model.freeze's value and strategy (its prefixes when the net is built)
        # a resume's checkpoint is read, and its data settings compared, before the data is prepared
        resume = open_resume(cfg, run_dir)
        keep_resumed_freeze(cfg, resume)  # model.freeze not given to a resume: the checkpoint run's
        init = open_init_from(cfg, resume)  # model.init_from's checkpoint likewise (not read again by a resume)
        seed_everything(cfg.seed)
        dm = build_data(cfg)
        check_monitored(cfg, dm.num_classes)  # val/acc_top<k> is logged with more than k classes
        model = build_model(cfg.model, dm.input_shape, dm.num_classes, mixing=cfg.get("mixing"))
        started_from = load_init_weights(init, model.net, dm.num_classes)  # before training, on every rank
        del init
        check_batch_norm_batch(model.net, dm.batch_size, dm.input_shape)
        # checked before anything is written (a refused resume changes nothing), and before the run
        # record: a resume serves the data with the checkpoint's normalization, and records it
        ckpt_path, step = resolve_ckpt_path(cfg, resume, dm, model)
        del resume  # the checkpoint's tensors: fit reads the file again
        model.run_record = run_record(cfg, dm)
        check_compression(cfg, model.net, dm)  # a compress method that cannot apply fails before training
        loggers = build_loggers(cfg)
        trainer = build_trainer(cfg, build_callbacks(cfg), loggers)
        if trainer.is_global_zero:
            # the checkpoint this start begins from is on record before fit: a stop or a failure before
            # Lightning restores it (data set-up, a lost rank) still names the one that resumes the run
            # in this folder (Interruption, run_folders._unfinished_start); a start that ends before this
            # record (litlab's own data preparation, a refused resume) has it in entry's
            origin = init_record(started_from)  # where the run's first weights came from, a resume's too
            model.run_record.update(origin)  # its checkpoints carry it to a resume (init_weights)
            start_metrics(run_dir, status="running", task="train", **start_origin(ckpt_path), **origin,
                          **freeze_record(model), **labels_of(cfg))  # model.freeze: prefixes, frozen and trainable counts
            # how training batches are mixed, once (not once per DDP rank): mixup(alpha=0.2), ..., none
            log.info("mixing: %s", model.mixing if getattr(model, "mixing", None) is not None else "none")
        metrics = fit(trainer, model, dm, ckpt_path, step)
        metrics.update(scale_facts(trainer, dm.batch_size))  # data.batch_size is per device
        metrics.update(partial_data(cfg.trainer))
        if getattr(dm, "folds", None):  # cross-validation: the fold that validated (data.fold of data.folds)
            metrics.update(folds=dm.folds, fold=dm.fold)
        if trainer.is_global_zero and not trainer.interrupted:  # on record before the test, which may fail
            update_metrics(run_dir, **{k: v for k, v in metrics.items() if k != "status"})
        if cfg.get("test") and not trainer.interrupted:
            metrics.update(test(trainer, model, dm, metrics.get("best_ckpt")))
            if getattr(dm, "test_is_val", False):  # an image folder without test/: say so beside the figures
                metrics["test_split"] = "val"
        if trainer.is_global_zero and not trainer.interrupted:
            # training and test results are on record before compression and export, which may fail
            update_metrics(run_dir, **{k: v for k, v in metrics.items() if k != "status"})
            metrics.update(after_training(cfg, trainer, model, dm, run_dir, metrics, loggers))
    metrics.setdefault("status", "completed")
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["optimized_metric"] = cfg.get("optimized_metric")
    value = metrics.get(cfg.get("optimized_metric"))
    failure = None
    if value is None and cfg.get("optimized_metric") and metrics["status"] == "completed" and trainer.is_global_zero:
        failure = check_optimized_metric(cfg.optimized_metric, metrics, in_sweep=is_multirun())
        if failure is not None:  # the record and the summary say so, not "completed"
            metrics.update(status="failed", error=str(failure))
    if trainer.is_global_zero:
        metrics = update_metrics(run_dir, **metrics)
        log_final_hparams(loggers, cfg, metrics)
        print_summary(run_dir, metrics, has_tensorboard=(run_dir / "tensorboard").is_dir())
    if failure is not None:
        raise failure
    return float(value) if value is not None else None


def check_optimized_metric(name: str, metrics: dict, in_sweep: bool) -> LitlabError | None:
    """A completed run without its ``optimized_metric`` gives a sweep nothing to rank, most often
    because of a misspelt key. In a sweep that fails the job: the error is returned, to be recorded
    with the keys the run has and raised (the job then returns the sweep's worst value, so Optuna
    goes on instead of ending in a traceback). A single run warns."""
    have = ", ".join(k for k, v in metrics.items()  # numbers, or 0-d tensors from Lightning
                     if "/" in k and (isinstance(v, (int, float)) or getattr(v, "ndim", None) == 0))
    message = (f"optimized_metric={name} is not among this run's metrics ({have}); a sweep gets no value "
               f"from it. Set optimized_metric to one of them.")
    if in_sweep:
        return LitlabError(message)
    log.warning(message)
    return None
