"""The learning-rate range test of ``python -m litlab.lr_find`` (``lr_find(cfg)``).

Data, task and optimizer are built as ``training.train`` builds them (``litlab.build``: the same
seed, net, parameter groups, fused kernels, channels-last and compile), and the steps run in a
Lightning ``Trainer.fit`` of the run's own trainer settings (device, precision, gradient
accumulation and clipping), so each step is the step training takes. Lightning's own
``Tuner.lr_find`` is not used: it sets every parameter group to one rate, records the last
micro-batch's loss divided by ``accumulate_grad_batches`` under accumulation, and saves and
restores a checkpoint through litlab's checkpoint hooks. Here ``RangeRecorder`` sets each step's
rate (keeping the groups' relative rates) and records the mean loss of the step's micro-batches.

The model's schedule and warm-up are left out (the test owns the rate), and so are validation,
checkpoints, the config's callbacks, weight averaging, compression and export (``unused_choices``
names those the config chose); nothing is saved but the curve. Batch mixing (``mixing=mixup``, ...)
is kept: the steps train on the mixed loss the run will train on (metrics.json names the mixer). A
multi-process trainer (DDP) runs as one process that accumulates the gradients of as many
batches as there were processes: the same samples per optimizer step.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.build import (build_data, build_model, check_batch_norm_batch, check_targets, check_task_settings,
                          instantiate)
from litlab.callbacks.interruption import EpochSeed
from litlab.config_flags import CONF_DIR
from litlab.entry import Terminated, sigterm_stops_here
from litlab.errors import LitlabError
from litlab.init_weights import init_record, load_init_weights, open_init_from
from litlab.tasks.frozen_layers import check_freeze_config, freeze_record
from litlab.no_profiler import NoProfiler
from litlab.reporting.run_files import labels_of, start_metrics
from litlab.seeding import seed_everything
from litlab.strategies import strategy_name
from litlab.trainer_checks import accelerator_of, check_devices, check_trainer_config
from litlab.tuning.lr_curve import divergence, lr_sequence, skip_begin, smooth_next, suggest
from litlab.tuning.lr_files import hydra_node, write_results
from litlab.tuning.lr_settings import RangeSettings, check_range_command

log = logging.getLogger(__name__)

# the model's settings the range test replaces: it sets the rate of every step itself
IGNORED_MODEL_KEYS = {"scheduler": None, "warmup_epochs": 0}
# the groups a training run uses beside or after its steps, which a range test leaves out
UNUSED_GROUPS = ("averaging", "compress", "export")


@dataclass
class RangeResult:
    """The points of one sweep: ``lrs[k]`` and ``losses[k]`` (the mean over the step's micro-batches)
    of optimizer step ``k``, and why it stopped before ``num_steps`` (None: it ran them all)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    fit_time_s: float = 0.0


class RangeRecorder(L.Callback):
    """Sets each optimizer step's learning rate from ``lrs`` and records its loss.

    The rate is set at every batch's start to that of the step being accumulated (``global_step``
    counts the optimizer steps taken), on every parameter group, times the group's rate relative to
    the first group's as the task built them (litlab's groups share one rate; a task of the user's
    own may not). A step's loss is the mean of its micro-batches' losses (Lightning hands each one
    divided by ``accumulate_grad_batches``), the figure ``Classifier._optimizer_step_loss`` logs as
    ``train/loss_step``. That method is not called here: it collects the micro-batches itself (a
    second call would count each twice) and hands its mean to the logger only on logging steps, and
    a task of the user's own has no such method; the outputs of ``training_step`` are every task's.
    The sweep stops once ``lr_curve.divergence`` says so.
    """

    def __init__(self, lrs: list[float], smoothing: float, stop_factor: float | None):
        self.lrs, self.smoothing, self.stop_factor = lrs, smoothing, stop_factor
        self.result = RangeResult()
        self._factors: list[list[float]] = []
        self._micro: list[float] = []
        self._avg = 0.0  # the smoothed loss's moving average (lr_curve.smooth_next)
        self._report_every = max(1, len(lrs) // 10)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._factors = [[_relative(group["lr"], optimizer.param_groups[0]["lr"]) for group in optimizer.param_groups]
                         for optimizer in trainer.optimizers]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        lr = self.lrs[min(trainer.global_step, len(self.lrs) - 1)]
        for optimizer, factors in zip(trainer.optimizers, self._factors):
            for group, factor in zip(optimizer.param_groups, factors):
                if isinstance(group["lr"], torch.Tensor):  # a rate held as a tensor (capturable optimizers)
                    group["lr"].fill_(lr * factor)
                else:
                    group["lr"] = lr * factor

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._micro.append(float(loss) * trainer.accumulate_grad_batches if loss is not None else math.nan)
        step = len(self.result.losses)
        if trainer.global_step <= step:  # still accumulating this step's gradients
            return
        mean, self._micro = sum(self._micro) / len(self._micro), []
        r = self.result
        r.lrs.append(self.lrs[step])
        r.losses.append(mean)
        self._avg, smoothed = smooth_next(self._avg, mean, step, self.smoothing)
        r.smoothed.append(smoothed)
        r.stop_reason = divergence(mean, r.smoothed, self.stop_factor)
        if r.stop_reason is not None:
            trainer.should_stop = True
        if r.stop_reason is not None or step % self._report_every == 0 or step == len(self.lrs) - 1:
            log.info("lr_find: step %d/%d  lr %.3e  loss %.4f  smoothed %.4f", step + 1, len(self.lrs),
                     self.lrs[step], mean, r.smoothed[-1])


def _relative(lr, first) -> float:
    """``lr / first`` (1 where the first group's rate is 0)."""
    lr, first = float(lr), float(first)
    return lr / first if first else 1.0


def range_model_config(cfg: DictConfig) -> tuple[DictConfig, list[str]]:
    """A copy of ``cfg`` whose model has no schedule and no warm-up, and the keys that were set
    (to say so); a task of the user's own without them is left as it is."""
    cfg = copy.deepcopy(cfg)
    ignored = []
    with open_dict(cfg):
        for key, off in IGNORED_MODEL_KEYS.items():
            if key in cfg.model and OmegaConf.select(cfg.model, key, default=None) not in (None, 0):
                ignored.append(f"model.{key}")
            if key in cfg.model:
                cfg.model[key] = off
    return cfg, ignored


def unused_choices(cfg: DictConfig) -> list[str]:
    """What else the config chose that the range test leaves out, to say so: the groups that work
    after or beside training (``averaging=ema``, ``compress=prune``, ...: those whose node has a
    ``_target_``) and callbacks beyond litlab's default ones (``callbacks.early_stopping``). It
    only trains: the default callbacks (checkpoints, reports) go without saying."""
    hydra = hydra_node(cfg)
    choices = OmegaConf.select(hydra, "runtime.choices", default=None) if hydra is not None else None
    found = []
    for group in UNUSED_GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node:
            choice = choices.get(group) if choices is not None else None
            found.append(f"{group}={choice}" if choice else f"{group} ({str(node._target_).rsplit('.', 1)[-1]})")
    callbacks = cfg.get("callbacks")
    if isinstance(callbacks, DictConfig):
        default = OmegaConf.load(CONF_DIR / "callbacks" / "default.yaml")
        found += [f"callbacks.{name}" for name in callbacks if name not in default
                  and isinstance(callbacks.get(name), DictConfig) and "_target_" in callbacks.get(name)]
    return found


def trainer_processes(trainer_cfg: DictConfig) -> int:
    """How many processes the run's trainer config trains in (devices per node x nodes), its
    values checked first as ``training.train`` checks them (``check_trainer_config``; the count is
    ``check_devices``'): ``trainer.devices=abc`` was read as 3 processes (its length) and printed
    in the training command to run. The devices must be on this machine, as for a training run
    here. Several nodes count as they are: each needs a launcher, which the one process of a range
    test never has (``check_nodes`` would refuse them)."""
    nodes = trainer_cfg.get("num_nodes", 1)
    one_node = OmegaConf.create(OmegaConf.to_container(trainer_cfg, resolve=True))
    if isinstance(nodes, int) and nodes > 1:
        one_node.num_nodes = 1
    check_trainer_config(one_node)  # a num_nodes that is no integer >= 1 is refused here
    device = accelerator_of(one_node)
    count = check_devices(one_node.get("devices", 1), device)
    if count is None:  # auto: Lightning's auto_device_count, every GPU, one process elsewhere
        count = max(1, torch.cuda.device_count()) if device == "cuda" else 1
    return count * (nodes or 1)


def range_trainer_config(trainer_cfg: DictConfig, num_steps: int) -> tuple[DictConfig, str | None]:
    """The run's trainer settings for ``num_steps`` optimizer steps of training alone (over as
    many epochs as that takes, each reshuffled as in training), in one process; and the note that
    says how a multi-process trainer was turned into one. The user's trainer node is checked
    first, as training checks it (``trainer_processes``): what ``train`` refuses is refused here."""
    world, note = trainer_processes(trainer_cfg), None
    node = OmegaConf.create(OmegaConf.to_container(trainer_cfg, resolve=True))
    with open_dict(node):
        node.update(max_steps=num_steps, max_epochs=-1, min_epochs=None, min_steps=None, max_time=None,
                    limit_val_batches=0, num_sanity_val_steps=0, val_check_interval=None, check_val_every_n_epoch=1,
                    enable_model_summary=False)
        if world > 1 or strategy_name(node.get("strategy", "auto")).startswith("ddp"):
            accumulate = int(node.get("accumulate_grad_batches", 1) or 1)
            node.update(devices=1, num_nodes=1, strategy="auto", accumulate_grad_batches=accumulate * world)
            note = (f"the trainer trains in {world} process(es) (data.batch_size each); the range test runs in one, "
                    f"accumulating {accumulate * world} batches per optimizer step instead of {accumulate}: the same "
                    f"samples per step")
    return node, note


def run_range_test(model: L.LightningModule, dm, trainer_cfg: DictConfig, settings: RangeSettings,
                   seed: int) -> RangeResult:
    """Sweeps the rate over ``settings.num_steps`` optimizer steps of ``model`` on ``dm``'s training
    split with the trainer of ``trainer_cfg`` (``range_trainer_config``'s). The model's weights
    (and buffers) are put back afterwards: the sweep changes nothing of it."""
    lrs = lr_sequence(settings.min_lr, settings.max_lr, settings.num_steps, settings.mode)
    recorder = RangeRecorder(lrs, settings.smoothing, settings.stop_factor)
    # as build_trainer: the no-op profiler only where the config names none (+trainer.profiler=simple
    # was replaced by it, and its report never printed)
    extra = {} if trainer_cfg.get("profiler") is not None else {"profiler": NoProfiler()}
    trainer = instantiate(trainer_cfg, "trainer", callbacks=[EpochSeed(seed=seed), recorder], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, **extra)
    kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=dm)
    except SystemExit as e:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(e, SIGTERMException):  # Lightning's stop at a batch end: recorded as interrupted
            raise Terminated() from None
        raise
    finally:
        model.load_state_dict(kept)
    result = recorder.result
    result.fit_time_s = time.perf_counter() - start
    check_first_step(result, settings, trainer_cfg)
    return result


def check_first_step(result: RangeResult, settings: RangeSettings, trainer_cfg: DictConfig) -> None:
    """A sweep without a step, or whose first loss (at ``min_lr``, before any step could diverge) is
    not a number, says nothing about learning rates: one paragraph on what to check instead."""
    if not result.losses:
        raise LitlabError(f"the range test ran no optimizer step: the training split served no batch "
                          f"(trainer.limit_train_batches={trainer_cfg.get('limit_train_batches', 1.0)}). Give it data "
                          f"to train on, then run python -m litlab.lr_find again.")
    if not math.isfinite(result.losses[0]):
        raise LitlabError(f"the training loss was {result.losses[0]} at the first step, at lr_find.min_lr="
                          f"{settings.min_lr:g}, before the learning rate could matter: the data holds NaN or "
                          f"infinite values, or the net's output overflows (trainer.precision="
                          f"{trainer_cfg.get('precision', 32)}). Check the data, and try trainer.precision=32.")


def lr_find(cfg: DictConfig) -> dict:
    """Runs the range test of ``cfg`` (a composed ``conf/lr_find.yaml``), writes its files into
    the run folder and returns its record (metrics.json)."""
    run_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    settings = check_range_command(cfg)
    cfg, ignored = range_model_config(cfg)
    not_used = [*ignored, *unused_choices(cfg)]
    with sigterm_stops_here():  # data preparation: a SIGTERM is recorded as an interruption
        trainer_cfg, note = range_trainer_config(cfg.trainer, settings.num_steps)
        check_targets(cfg, groups=("data", "model", "logger"))  # the loggers log_curve builds after the test
        check_task_settings(cfg.model)
        check_freeze_config(cfg)  # model.freeze's value: the range test trains what the run trains
        init = open_init_from(cfg, None)  # model.init_from's checkpoint, read and checked before the data
        start_metrics(run_dir, status="running", task="lr_find", **labels_of(cfg))
        seed_everything(cfg.seed)
        dm = build_data(cfg)
        # mixing=mixup/cutmix: the loss the run will train on, as training builds it
        model = build_model(cfg.model, dm.input_shape, dm.num_classes, mixing=cfg.get("mixing"))
        # a fine-tuning run's rate is found from the weights it starts from, as training loads them
        started_from = init_record(load_init_weights(init, model.net, dm.num_classes))
        del init
        check_closure_free(model)
        check_batch_norm_batch(model.net, dm.batch_size, dm.input_shape)
    log.info("lr_find: %d steps from %g to %g (%s); %s; training only, no validation or checkpoints.%s",
             settings.num_steps, settings.min_lr, settings.max_lr, settings.mode,
             note or "one process, as the trainer config trains",
             f" Not used: {', '.join(not_used)}" if not_used else "")
    result = run_range_test(model, dm, trainer_cfg, settings, cfg.seed)
    suggestion = suggest(result.lrs, result.smoothed, skip_begin(settings.num_steps), mode=settings.mode)
    facts = {"status": "completed", "task": "lr_find", "steps_run": len(result.losses),
             # a divergence at the last step ended nothing early: every step ran
             "stopped_early": result.stop_reason is not None and len(result.losses) < settings.num_steps,
             "stop_reason": result.stop_reason,
             **suggestion.as_record(), "settings": vars(settings) | {"skip_begin": skip_begin(settings.num_steps)},
             "optimizer": type(model.trainer.optimizers[0]).__name__,
             "accumulate_grad_batches": int(trainer_cfg.get("accumulate_grad_batches", 1) or 1),
             "batch_size": dm.batch_size, "precision": str(trainer_cfg.get("precision", 32)),
             "not_used": not_used, "one_process": note, "fit_time_s": result.fit_time_s,
             # as training records it: mixup(alpha=0.2), ...; absent for mixing=none
             **({"mixing": str(model.mixing)} if getattr(model, "mixing", None) is not None else {}),
             # the class weights the steps' loss applied, as training records them; absent without
             **({"class_weights": list(model.class_weights)} if getattr(model, "class_weights", None) else {}),
             **started_from,  # model.init_from's file, as training records it; absent without
             **freeze_record(model),  # model.freeze, as training records it; absent without
             "wall_time_s": time.perf_counter() - started}
    return write_results(cfg, run_dir, result, suggestion, facts)


def check_closure_free(model: L.LightningModule) -> None:
    """An optimizer whose ``step`` needs a closure (its ``closure`` argument has no default: L-BFGS,
    a user's own of that kind) evaluates the loss several times per step at rates of its own
    choosing: refused, also where its ``_target_`` did not say so (a subclass, a partial of a
    builder). Read from the task's ``optimizer_factory`` (litlab's tasks); a step that takes an
    optional closure and needs it anyway cannot be told from its signature."""
    factory = getattr(model, "optimizer_factory", None)
    target = getattr(factory, "func", factory)
    if isinstance(target, type) and issubclass(target, torch.optim.Optimizer) and _needs_closure(target):
        raise LitlabError(f"model.optimizer: {target.__name__} takes several loss evaluations per step and searches "
                          f"its own step size, so a sweep of its learning rate measures nothing useful. Run the range "
                          f"test with a first-order optimizer (the default AdamW, or SGD).")


def _needs_closure(optimizer_class: type) -> bool:
    """Whether ``optimizer_class.step`` must be given a closure (a ``closure`` argument without a
    default), as L-BFGS's; the first-order optimizers take ``closure=None``."""
    try:
        closure = inspect.signature(optimizer_class.step).parameters.get("closure")
    except (TypeError, ValueError):  # a step without a readable signature (a C extension)
        return False
    return closure is not None and closure.default is inspect.Parameter.empty
