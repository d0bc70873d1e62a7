"""Re-evaluating a checkpoint (``evaluate(cfg)``), which ``python -m litlab.eval`` runs.

Data and model are rebuilt from the run record stored in the checkpoint; ``data.KEY=VALUE``
overrides change how the stored data is loaded (e.g. ``data.root`` after moving the files). The
run's ``trainer.precision`` is used too (see ``eval_precision``), so that the figures are those
training reported. ``temperature=auto|<number>`` scores softmax(logits / T), with the T = 1
figures beside (``calibrate``; the passes are in ``litlab.temperature_scaling``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from litlab.build import build_data, build_loggers, build_model, build_task, build_trainer, check_stored_net
from litlab.callbacks.calibration import DEFAULT_BINS
from litlab.callbacks.eval_report import EvalReport
from litlab.callbacks.interruption import Interruption
from litlab.callbacks.split_logits import SplitLogits
from litlab.checkpoint_files import check_fits, load_checkpoint
from litlab.compression.artifacts import is_artifact, load_net
from litlab.data.input_digest import inputs_sha256
from litlab.distributed.ranks import is_rank_zero
from litlab.errors import LitlabError
from litlab.eval import argument_taken, check_before_loading, check_root_given, is_run_override, key_not_taken
from litlab.reporting.run_files import update_metrics
from litlab.seeding import seed_everything
from litlab.temperature_scaling import UnscaledFigures, fit_on_validation, scale_net, temperature_record
from litlab.tuning.temperature_setting import AUTO, checkpoint_fingerprint, eval_temperature
from litlab.trainer_checks import accelerator_of, check_precision, check_trainer_config
from litlab.resume import absolute_locations
from litlab.training import partial_data

log = logging.getLogger(__name__)

_ABSENT = object()


def stored_config(ckpt: dict, overrides: list[str], ckpt_path: str = "the checkpoint") -> DictConfig:
    """The training run's config from the checkpoint, with ``data.*``/``model.*`` overrides applied.

    ``data.KEY=VALUE`` changes a key the run had (a misspelt key is an error naming it);
    ``+data.KEY=VALUE`` adds one."""
    cfg = OmegaConf.create(ckpt["litlab"]["config"])
    mine = [o for o in overrides if is_run_override(o)]
    for o in mine:
        key = o.split("=", 1)[0]
        name = key.lstrip("+")
        adding = key.startswith("+") and not key.startswith("++")
        if OmegaConf.select(cfg, name, default=_ABSENT) is not _ABSENT:
            continue
        taken = argument_taken(cfg, name)
        if isinstance(taken, str):  # +data.root=... where the stored data module has no root: a TypeError later
            raise key_not_taken(name, ckpt_path, taken)
        if not adding:
            raise LitlabError(f"{name} is not a key of the run stored in {ckpt_path}, so {o.lstrip('+')} changes "
                              f"nothing. Check the spelling against the run's .hydra/config.yaml, or add the key "
                              f"with +{name}=...")
    if mine:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in mine]))
    if isinstance(cfg.get("data"), DictConfig) and cfg.data.get("augment") is not None:
        # evaluation never augments: the run's data.augment (checked when it trains; an older
        # checkpoint may hold a value refused since) has nothing to say here
        cfg.data.augment = None
    if gives_key(mine, "data.root"):
        check_root_given(cfg.data.root)
    return cfg


def gives_key(overrides: list[str], key: str) -> bool:
    """Whether the command line gives ``key`` (``key=``, ``+key=`` or ``++key=``)."""
    return any("=" in o and o.split("=", 1)[0].lstrip("+") == key for o in overrides)


def eval_precision(cfg: DictConfig, run_cfg: DictConfig, overrides: list[str], artifact: bool) -> tuple[str, str]:
    """The ``trainer.precision`` to evaluate in, and where it comes from (for the log).

    The run's own precision: a bf16-mixed run evaluated in 32-bit scores differently from what
    its training reported. ``trainer.precision`` on the command line wins. A compressed model keeps
    eval's (32-bit): compression measured it in float32. A recorded precision this machine cannot
    run (16-mixed from a GPU run, evaluated on the CPU) falls back to 32-true with a warning,
    rather than refusing an evaluation that float32 does nearly as well."""
    given = str(cfg.trainer.get("precision", 32))
    if gives_key(overrides, "trainer.precision"):
        return given, "given on the command line"
    if artifact:
        return given, "a compressed model, measured in float32 by compression"
    recorded = OmegaConf.select(run_cfg, "trainer.precision", default=None)
    if recorded is None:  # a run record without trainer settings
        return given, "eval's default: the checkpoint records no trainer.precision"
    recorded = str(recorded)
    device = accelerator_of(cfg.trainer)
    try:
        check_precision(recorded, device)
    except LitlabError:
        if is_rank_zero():
            log.warning("The run of %s trained in trainer.precision=%s, which this machine's %s cannot run; "
                        "evaluating in trainer.precision=32-true instead, so the figures may differ slightly from "
                        "those training reported. Evaluate where the run trained to reproduce them, or give "
                        "trainer.precision on the command line.", cfg.ckpt_path, recorded, device)
        return "32-true", f"the run's {recorded} cannot run on the {device}"
    return recorded, "the run's"


@dataclass
class Loaded:
    """A checkpoint made ready to score (``load_for_scoring``): eval's config with the precision it
    scores in, the run's config, the task (its net divided by T where a temperature is given), the
    data module serving the split to score as its test split, the ECE bins, and the temperature's
    record (T or None, its fit, the checkpoint's size and sha256)."""

    cfg: DictConfig
    run_cfg: DictConfig
    model: object
    dm: object
    precision: str
    bins: int
    temperature: float | None
    fit: object
    fingerprint: dict


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Loads ``cfg.ckpt_path``, rebuilds its data and model, and tests it; returns the metrics."""
    split = check_before_loading(cfg)  # also run by the command line, before torch is imported
    loaded = load_for_scoring(cfg, overrides or [], split)
    cfg, run_cfg, model, dm, precision, bins = (loaded.cfg, loaded.run_cfg, loaded.model, loaded.dm,
                                                loaded.precision, loaded.bins)
    temperature, fit, fingerprint = loaded.temperature, loaded.fit, loaded.fingerprint
    # Ctrl-C or SIGTERM stops the evaluation at a batch end, recorded "interrupted" (exit 130/143)
    report = EvalReport(misclassified=0, top_k=0, calibration_bins=bins)
    at_t1 = UnscaledFigures(bins) if temperature is not None else None  # the same pass's figures at T = 1
    callbacks = [Interruption(cfg.paths.output_dir, task="eval"), report, *([at_t1] if at_t1 is not None else [])]
    trainer = build_trainer(cfg, callbacks, build_loggers(cfg))
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    metrics = {k.replace("test/", f"{split}/"): float(v) for k, v in results.items()}
    if at_t1 is not None:
        metrics.update({f"{split}/{k}_at_t1": v for k, v in at_t1.figures.items()})
    run_dir = Path(cfg.paths.output_dir)
    if not trainer.is_global_zero:
        return metrics  # under DDP every rank has the figures; only rank 0 records and prints them
    scored = scored_data(run_cfg, dm, split)
    scaling = {} if temperature is None else {"temperature": temperature_record(temperature, fit, str(cfg.ckpt_path),
                                                                                fingerprint)}
    update_metrics(run_dir, status="completed", task="eval", ckpt_path=str(cfg.ckpt_path), precision=precision,
                   calibration_bins=bins, **scaling, **scored, **partial_data(cfg.trainer), **metrics)
    print_result(cfg.ckpt_path, metrics, precision, scored, run_dir, scaling.get("temperature"))
    return metrics


def load_for_scoring(cfg: DictConfig, overrides: list[str], split: str) -> Loaded:
    """``evaluate``'s steps up to the scored pass: the checkpoint loaded, its data and model rebuilt
    in the run's precision (``eval_precision``), ``split`` served as the test split and the
    temperature applied (``calibrate``)."""
    # the bytes a temperature is recorded for, read before the checkpoint is loaded (predict compares them)
    fingerprint = checkpoint_fingerprint(cfg.ckpt_path) if cfg.get("temperature") is not None else {}
    ckpt = load_checkpoint(cfg.ckpt_path)
    check_stored_net(ckpt, cfg.ckpt_path)  # a user's own net, before any data is prepared
    run_cfg = stored_config(ckpt, overrides, str(cfg.ckpt_path))
    artifact = is_artifact(ckpt)  # a compressed model written by litlab.compression
    if artifact and ckpt["compression"].get("cpu_only"):
        cfg = OmegaConf.merge(cfg, {"trainer": {"accelerator": "cpu", "devices": 1}})
    precision, source = eval_precision(cfg, run_cfg, overrides, artifact)
    cfg = OmegaConf.merge(cfg, {"trainer": {"precision": precision}})
    if is_rank_zero():
        log.info("evaluating in trainer.precision=%s (%s)", precision, source)
    check_trainer_config(cfg.trainer)  # devices, precision, strategy: before any data is prepared
    seed_everything(cfg.seed)
    record = ckpt["litlab"].get("data") or {}
    dm = build_data(run_cfg, trained=record)
    dm.adopt_trained(record, f"ckpt_path={cfg.ckpt_path}")
    if artifact:
        model = build_task(run_cfg.model, load_net(ckpt, Path(cfg.ckpt_path)), dm.num_classes)
    else:
        model = build_model(run_cfg.model, dm.input_shape, dm.num_classes)
        check_fits(model, ckpt["state_dict"], cfg.ckpt_path)
        model.load_state_dict(ckpt["state_dict"])
    bins = calibration_bins(cfg, run_cfg)
    dm.test_split = split
    if len(getattr(dm.splits, split)) == 0:
        raise LitlabError(f"split={split}: the data has no {split} samples to evaluate (see data.* of the run, or the "
                          f"data.path/data.root given). Use split=test, or data with a {split} split.")
    temperature, fit = calibrate(cfg, model, dm)
    return Loaded(cfg, run_cfg, model, dm, precision, bins, temperature, fit, fingerprint)


class MemberScores(NamedTuple):
    """One ensemble member scored as ``evaluate`` scores it (``member_probabilities``), the samples
    in the test loader's order."""

    probabilities: Tensor  # (N, C) float64: softmax of the net's logits (divided by T, where given)
    labels: Tensor  # (N,) long
    metrics: dict  # its own figures, ``<split>/acc`` ...
    scored: dict  # what it scored (``scored_data``)
    precision: str
    temperature: dict | None  # its temperature's record (``temperature_record``), None without T
    inputs: str | None  # the sha256 of the split's raw inputs (``inputs_sha256``), None for other data
    bins: int  # the ECE bins ``load_for_scoring`` chose (``calibration_bins``)


def member_probabilities(cfg: DictConfig, overrides: list[str], split: str | None = None) -> MemberScores:
    """One ensemble member (``cfg.ckpt_path``) scored as ``evaluate`` scores it, without recording.
    ``split``: what ``check_before_loading`` returned for ``cfg``, where the caller ran it (the
    ensemble checks every member before it scores any); None runs it here."""
    if split is None:
        split = check_before_loading(cfg)
    loaded = load_for_scoring(cfg, overrides, split)
    kept = SplitLogits("test")
    trainer = build_trainer(loaded.cfg, [Interruption(cfg.paths.output_dir, task="eval"), kept], [])
    results = trainer.test(loaded.model, datamodule=loaded.dm, verbose=False)[0]
    metrics = {k.replace("test/", f"{split}/"): float(v) for k, v in results.items()}
    temperature = None if loaded.temperature is None else temperature_record(
        loaded.temperature, loaded.fit, str(cfg.ckpt_path), loaded.fingerprint)
    logits, labels = kept.result()  # (N, C) float64, (N,)
    return MemberScores(logits.softmax(dim=-1), labels, metrics, scored_data(loaded.run_cfg, loaded.dm, split),
                        loaded.precision, temperature, inputs_sha256(getattr(loaded.dm.splits, split)), loaded.bins)


def calibration_bins(cfg: DictConfig, run_cfg: DictConfig) -> int:
    """The bins of ``test/ece``: ``+callbacks.eval_report.calibration_bins=N`` on eval's command line
    (checked by ``eval.check_callbacks_given``), else the run's own, so that it matches the run's figure."""
    given = OmegaConf.select(cfg, "callbacks.eval_report.calibration_bins", default=None)
    if given is not None:
        return int(given)
    return OmegaConf.select(run_cfg, "callbacks.eval_report.calibration_bins", default=DEFAULT_BINS)


def calibrate(cfg: DictConfig, model, dm) -> tuple[float | None, object]:
    """``temperature=``: None (T = 1, nothing to do), a number, or ``auto`` (fitted on the validation
    split). With a T, the net is wrapped to divide its logits by T; the scored pass takes the
    figures at T = 1 from the logits before the division (``UnscaledFigures``). Returns (T or
    None, the fit or None)."""
    setting = eval_temperature(cfg)
    if setting is None:
        return None, None
    if setting == AUTO and getattr(dm, "test_is_val", False):  # an image folder without test/, as split=val
        raise LitlabError(f"temperature=auto fits T on the validation split, and data.root={getattr(dm, 'root', '')} "
                          f"has no test/ folder, so its test split is the validation split: the calibration would be "
                          f"scored on the very samples T was fitted to and look better than it is. Add a test/ folder "
                          f"(test/<class>/<images>) to score, or give a temperature fitted elsewhere "
                          f"(temperature=<number>).")
    fit = fit_on_validation(cfg, model, dm) if setting == AUTO else None
    temperature = fit.temperature if fit is not None else float(setting)
    scale_net(model, temperature)
    if is_rank_zero():
        log.info("scoring with temperature T=%.4f (%s): probabilities are softmax(logits / T)", temperature,
                 "fitted on the validation split" if fit is not None else "given")
    return temperature, fit


def scored_data(run_cfg: DictConfig, dm, split: str) -> dict:
    """What an evaluation scored, for its metrics.json: without it a record of ``data.path=other.npz``
    or ``split=val`` read like one of the run's own test split (the choice was only in
    .hydra/overrides.yaml).

    ``test_split`` is the split whose samples were scored: ``val`` with ``split=val``, and also for
    an image folder without test/, whose test split is the validation split (as training records
    it); ``data`` the data module's ``_target_``; ``data_path``/``data_root`` where the data was read,
    absolute (a relative override is read from eval's folder); ``samples`` the size of that split
    (``partial_data`` beside it says when ``trainer.limit_test_batches`` scored only part of it)."""
    test_split = "val" if split == "val" or getattr(dm, "test_is_val", False) else split
    record = {"test_split": test_split, "data": str(run_cfg.data.get("_target_", type(dm).__name__))}
    located = absolute_locations({key: run_cfg.data.get(key) for key in ("path", "root")})
    record.update({f"data_{key}": str(value) for key, value in located.items() if value})  # null: synthetic data
    record["samples"] = len(getattr(dm.splits, split))
    return record


def print_result(ckpt_path, metrics: dict, precision: str, scored: dict, run_dir: Path,
                 temperature: dict | None = None) -> None:
    """The figures and what they are of: the split (saying so when the test figures are the
    validation split's), the data and the number of samples."""
    width = max([12, *map(len, metrics)])  # the keys' column: test/loss_at_t1 is longer than 12
    print(f"\nlitlab eval of {ckpt_path}:")
    for k, v in metrics.items():
        print(f"  {k:<{width}} {v:.6f}")
    split = scored["test_split"]
    if split == "val" and any(k.startswith("test/") for k in metrics):
        split = "val (the data has no test/ folder: test/* are the validation split's figures)"
    print(f"  {'split':<{width}} {split}")
    location = scored.get("data_path") or scored.get("data_root")
    print(f"  {'data':<{width}} {scored['data']}" + (f" at {location}" if location else ""))
    print(f"  {'samples':<{width}} {scored['samples']}")
    print(f"  {'precision':<{width}} {precision}")
    if temperature is not None:
        how = (f"fitted on val: NLL {temperature['val_nll_at_t1']:.6f} at T=1 -> {temperature['val_nll']:.6f}"
               if temperature.get("fitted_on") else "given")
        print(f"  {'temperature':<{width}} {temperature['value']:.6f} ({how}); *_at_t1 are the figures at T=1")
    print(f"  {'metrics':<{width}} {run_dir / 'metrics.json'}")
