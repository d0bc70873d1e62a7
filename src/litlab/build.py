"""Turning the composed config into run components, with errors that name the config key."""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
from typing import Any

import hydra
import lightning.pytorch as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.callbacks.checkpoints import AtomicCheckpointIO
from litlab.callbacks.eval_report import EvalReport
from litlab.callbacks.group import group_callbacks, skip_idle_step_hooks
from litlab.callbacks.interruption import EpochSeed, Interruption
from litlab.callbacks.model_summary import with_flop_count
from litlab.callbacks.nan_loss import StopOnNonFiniteLoss
from litlab.class_weights import check_setting as check_class_weights
from litlab.class_weights import numbered_classes
from litlab.collection_entries import COLLECTIONS, check_entries, check_histograms, resolved
from litlab.config_check import check_mode
from litlab.cuda_availability import drop_nvml_check_without_gpus
from litlab.data.base import ClassificationData
from litlab.distributed.launcher import use_run_dir_launcher
from litlab.errors import LitlabError
from litlab.inherited_period import drop_inherited_period
from litlab.listing import first_of
from litlab.mixing_checks import check_image_samples
from litlab.models.speed_switches import SPEED_SWITCHES, apply_speed_switches, runs_channels_last, undo_channels_last
from litlab.monitor_checks import check_monitor
from litlab.no_profiler import NoProfiler
from litlab.tasks.classification import Classifier, check_label_smoothing
from litlab.tasks.frozen_layers import freezes_nothing, train_as_frozen
from litlab.tasks.optimizers import built_class, check_decay_setting, check_fused_setting, check_optimizer_settings
from litlab.tasks.schedule_values import changes_per_step
from litlab.tasks.schedules import check_schedule_settings
from litlab.trainer_checks import check_trainer_config

log = logging.getLogger(__name__)


def instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures become one-paragraph errors naming ``key``."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause: BaseException | None = e
        while cause is not None:
            if isinstance(cause, LitlabError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        target = OmegaConf.select(node, "_target_") if isinstance(node, DictConfig) else None
        root = e.__cause__ or e
        raise LitlabError(f"{key}: could not build {target or 'this config'}: {type(root).__name__}: "
                          f"{str(root).splitlines()[0] if str(root) else root!r}. Check the {key}.* values.") from None


def check_targets(cfg: DictConfig, groups: tuple[str, ...] = ("data", "model", "callbacks", "averaging", "mixing",
                                                              "logger", "compress", "export")) -> None:
    """Every ``_target_`` of these groups names something importable: a misspelt class was found
    only when its turn came to be built, after data preparation, and named its group, not its key."""
    for group in groups:
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        if group in COLLECTIONS:
            check_entries(cfg, group)
        for key, target in _targets(node, group):
            why = _unimportable(target)
            if why:
                raise LitlabError(f"{key}._target_={target} cannot be imported: {why}. Check the spelling: a class or "
                                  f"function by its full dotted path, e.g. torch.optim.lr_scheduler.StepLR.")
    if "logger" in groups and "callbacks" in groups:  # a training run's (lr_find writes no histograms)
        check_histograms(cfg)


def check_stored_net(ckpt: dict, ckpt_path) -> None:
    """The net class a checkpoint names can be imported here: a user's own net (``mymod.Net``) is
    importable only from the folder the run trained in or with its folder on PYTHONPATH, and eval
    said "could not build ... Check the model.net.* values" after preparing the data."""
    record = ckpt.get("litlab") or {}
    # a compressed file builds its own net (a distilled student), a checkpoint the run's model.net
    net = (ckpt.get("compression") or {}).get("net") or ((record.get("config") or {}).get("model") or {}).get("net")
    target = net.get("_target_") if isinstance(net, dict) else None
    why = _unimportable(target) if isinstance(target, str) else None
    if why:
        raise LitlabError(f"ckpt_path={ckpt_path} holds a {target} net, which cannot be imported here: {why}. Run "
                          f"the command from the folder the training ran in, or put the folder of its module on "
                          f"PYTHONPATH (PYTHONPATH=DIR python -m litlab...).")


def _unimportable(path: str) -> str | None:
    """Why ``path`` (``package.module.Name``) names nothing importable, or None."""
    parts = path.split(".")
    if not all(p.isidentifier() for p in parts):
        return "that is not a dotted Python path"
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and (module == e.name or module.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            return f"importing {module} needs {e.name}, which is not installed"
        for j, attr in enumerate(parts[i:], start=i):
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:j])} has no {attr}"
            obj = getattr(obj, attr)
        return None
    return f"there is no module {parts[0]}"


def _targets(node: DictConfig, prefix: str):
    """``(key, _target_)`` of ``node`` and of every config below it."""
    target = node.get("_target_") if "_target_" in node else None
    if isinstance(target, str):
        yield prefix, target
    for name in node:
        child = node._get_node(name)
        if isinstance(child, DictConfig):
            yield from _targets(child, f"{prefix}.{name}")


def build_data(cfg: DictConfig, trained: dict | None = None) -> ClassificationData:
    """The data module, set up so that its shapes and class names are known. ``trained``: the data
    record of a checkpoint to evaluate (classes, normalization), for data that may then hold only
    the evaluated split."""
    dm = instantiate(cfg.data, "data")
    dm.trained = trained or None
    dm.setup("fit")
    log.info("data: %s, input %s, %d classes, %d/%d/%d samples", type(dm).__name__, dm.input_shape,
             dm.num_classes, len(dm.splits.train), len(dm.splits.val), len(dm.splits.test))
    listing = class_listing(dm.class_names)
    if listing:
        log.info("data: classes in index order: %s", listing)
    return dm


def class_listing(names: list[str], limit: int = 20) -> str | None:
    """The class names in output-index order (index 0 first), the mapping that predictions and the
    confusion matrix use; past ``limit`` the first ones and a count. None when the names are the
    indices themselves (digits, npz labels), which a listing would only repeat (``numbered_classes``,
    the rule the class-weight messages use too)."""
    if numbered_classes(names):
        return None
    return first_of(names, limit)


def check_task_settings(model_cfg: DictConfig) -> None:
    """The task's own values (``model.label_smoothing``, ``model.class_weights``, ``model.fused_optimizer``,
    the optimizer and scheduler on a stand-in parameter, ``model.scheduler_interval``, ``model.warmup_epochs``),
    checked before the data is prepared, which can take minutes; the task checks them again when
    it is built. Only keys that are there, in the form litlab's task takes them (partial optimizer
    and scheduler), are read: a task of the user's own may not have them."""
    if "label_smoothing" in model_cfg:
        check_label_smoothing(model_cfg.label_smoothing)
    if "class_weights" in model_cfg:  # its length against the data's classes when the task is built
        check_class_weights(model_cfg.class_weights)
    if "fused_optimizer" in model_cfg:
        check_fused_setting(model_cfg.fused_optimizer)
    if "decay_biases_and_norms" in model_cfg:
        check_decay_setting(model_cfg.decay_biases_and_norms)
    drop_inherited_period(model_cfg)
    optimizer, scheduler = model_cfg.get("optimizer"), model_cfg.get("scheduler")
    if not (isinstance(optimizer, DictConfig) and optimizer.get("_partial_")):
        return
    make_scheduler = None
    if isinstance(scheduler, DictConfig) and scheduler.get("_partial_"):
        make_scheduler = instantiate(scheduler, "model.scheduler")
    check_optimizer_settings(instantiate(optimizer, "model.optimizer"), make_scheduler)
    if "scheduler_interval" in model_cfg or "warmup_epochs" in model_cfg:
        check_schedule_settings(model_cfg.get("scheduler_interval", "epoch"), model_cfg.get("warmup_epochs", 0),
                                built_class(make_scheduler) if make_scheduler is not None else None)


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int,
                mixing: DictConfig | None = None) -> Classifier:
    """The task module around a net built for this data (the user never types shapes). ``mixing``:
    a training run's ``cfg.mixing`` (``build_mixing``); eval, predict and the checks build without."""
    make_net = instantiate(model_cfg.net, "model.net")
    target = model_cfg.net.get("_target_", "the net")
    try:
        net = make_net(input_shape=tuple(input_shape), num_classes=num_classes)
    except LitlabError:
        raise
    except Exception as e:  # the net's own argument checks (torch raises ValueError, TypeError, ...)
        reason = str(e).splitlines()[0] if str(e) else repr(e)
        contract = (" A net for litlab takes the keyword arguments input_shape (one sample's shape) and "
                    "num_classes, besides its own model.net.* keys." if isinstance(e, TypeError) and (
                        "input_shape" in reason or "num_classes" in reason) else " Check the model.net.* keys.")
        raise LitlabError(f"model.net: could not build {target} with these settings: {type(e).__name__}: "
                          f"{reason}.{contract}") from None
    check_runs(net, tuple(input_shape), target, num_classes)
    switches = {k: model_cfg.get(k) for k in SPEED_SWITCHES}
    apply_speed_switches(net, channels_last=switches.get("channels_last"))
    if runs_channels_last(net):  # checked before torch.compile, which would compile for the check
        try:
            check_runs(net, tuple(input_shape), target, num_classes)
        except LitlabError as e:
            if switches.get("channels_last") != "auto":
                raise LitlabError(f"{e} It runs in the default memory order: set model.channels_last=false.") from None
            # auto: a fast path the net cannot take (a .view() of a channels-last tensor) is left out
            undo_channels_last(net)
            log.info("model.channels_last=auto: %s cannot run on channels-last inputs; it trains in the default "
                     "memory order", target)
    apply_speed_switches(net, compile=switches.get("compile"))
    return build_task(model_cfg, net, num_classes, build_mixing(mixing, tuple(input_shape)),
                      freeze=model_cfg.get("freeze"))


def build_mixing(node: DictConfig | None, input_shape: tuple[int, ...]):
    """The batch mixer of ``mixing=mixup``/``cutmix``/... (``conf/mixing/``), or None for
    ``mixing=none`` (no ``_target_``). A mixer that pastes boxes of images (CutMix) is refused
    here for data of other samples: the command line's check knows the data's kind from its config
    only where the config says it (``data.kind=sequence``), an ``.npz`` only once it is read."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    mixer = instantiate(node, "mixing")
    if getattr(mixer, "pastes_boxes", False):
        check_image_samples(input_shape)
    return mixer


@torch.no_grad()
def check_batch_norm_batch(net: torch.nn.Module, batch_size: int, input_shape: tuple[int, ...]) -> None:
    """Batch normalization cannot normalize one value per channel in training: ``data.batch_size=1``
    with a net whose normalized features shrink to a single position (a 1-D CNN on short inputs)
    failed in the first step with two tracebacks (torch's "Expected more than 1 value per channel
    when training"). Nets that keep several positions train on one sample, so a training step of
    one sample is tried on a copy of the net (its statistics untouched), in the modes training
    runs it in: ``model.freeze``'s frozen modules in eval, their BatchNorm on its running statistics."""
    if batch_size != 1 or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return
    probe = train_as_frozen(copy.deepcopy(net))
    try:
        probe(torch.zeros(1, *input_shape))
    except ValueError as e:
        if "more than 1 value per channel" not in str(e):
            raise
        raise LitlabError(f"data.batch_size=1: this net's batch normalization gets one value per channel from a "
                          f"single sample ({str(e).splitlines()[0][:160]}), which it cannot normalize in training. "
                          f"Use data.batch_size=2 or more, or a net without batch normalization (e.g. model=mlp).") from None


def check_runs(net: torch.nn.Module, input_shape: tuple[int, ...], target: str, num_classes: int | None = None) -> None:
    """One sample through the net in eval mode (no state changes): settings that build a net that
    cannot run (a layer of width 0, a flag of the wrong type, images too small for a torchvision
    net) fail here, naming model.net, instead of in the first validation step after the data was
    prepared. A net with an ``unrunnable(error, input_shape)`` method words the message itself."""
    try:
        net.eval()
        out = net(torch.zeros(1, *input_shape))
    except LitlabError:
        raise
    except Exception as e:
        if hasattr(net, "unrunnable"):
            raise LitlabError(net.unrunnable(e, input_shape)) from None
        raise LitlabError(f"model.net: {target} built with these settings cannot run a sample of shape "
                          f"{input_shape} ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else e!r}). "
                          f"Check the model.net.* keys.") from None
    finally:
        net.train()
    if num_classes is not None and not (isinstance(out, torch.Tensor) and tuple(out.shape) == (1, num_classes)):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise LitlabError(f"model.net: {target} returned {got} for one sample of shape {input_shape}; litlab trains "
                          f"on logits, a tensor of shape (batch, num_classes) = (1, {num_classes}) here, where "
                          f"num_classes is the data's class count (the num_classes argument the net is built "
                          f"with).")


def build_task(model_cfg: DictConfig, net, num_classes: int, mixing=None, freeze=None) -> Classifier:
    """The task module of ``model_cfg`` around an already built ``net``, with the batch ``mixing``
    of a training run (None: unmixed, and a task of the user's own is built as before) and the
    ``model.freeze`` prefixes of ``model.net`` (passed by ``build_model`` alone: a compressed
    model's net, evaluated here, has other parameters; empty: a task of the user's own as before)."""
    task_cfg = model_cfg.copy()  # a shallow copy keeps its parent: ${trainer.*} still resolves
    with open_dict(task_cfg):
        # model.init_from: read by a training run alone (init_weights), never by eval, predict or compression
        for key in (*SPEED_SWITCHES, "init_from", "freeze"):
            task_cfg.pop(key, None)
    frozen = {} if freezes_nothing(freeze) else {"freeze": freeze}
    if mixing is None:
        return instantiate(task_cfg, "model", net=net, num_classes=num_classes, **frozen)
    check_takes_mixing(task_cfg)
    return instantiate(task_cfg, "model", net=net, num_classes=num_classes, mixing=mixing, **frozen)


def check_takes_mixing(task_cfg: DictConfig) -> None:
    """Mixing needs a task whose training loss mixes labels: litlab's ``Classifier`` takes the mixer
    as its ``mixing`` argument. A task of the user's own without one (another loss, another kind of
    target) failed with "unexpected keyword argument" after the data was prepared."""
    target = task_cfg.get("_target_")
    task = resolved(target)  # quietly: hydra.utils.get_class logs an ERROR line for a builder function
    if not isinstance(task, type):  # not a class (a builder function): instantiate says what it takes
        return
    try:
        takes = inspect.signature(task).parameters
    except (TypeError, ValueError):  # a class whose signature cannot be read
        return
    if "mixing" in takes or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values()):
        return
    raise LitlabError(f"mixing=... mixes training batches and their labels, which the task's training_step must "
                      f"take (litlab's Classifier takes the mixer as its mixing argument), but model._target_="
                      f"{target} has no mixing argument. Use mixing=none with this task, or give its __init__ a "
                      f"mixing argument and call it in training_step (see litlab.tasks.batch_mixing).")


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The training run's callbacks from ``callbacks`` and ``averaging``, plus the two every run
    keeps whatever the choice (``callbacks=none`` included): ``Interruption`` (Ctrl-C and SIGTERM stop at a batch end,
    recorded) and ``EpochSeed`` (each epoch's randomness depends on the seed and the epoch alone,
    and a resumed epoch starts at its checkpoint's batch). A learning-rate monitor left at
    ``logging_interval: null`` gets litlab's pick (``lr_logging_interval``)."""
    check_entries(cfg, "callbacks")
    named = {name: instantiate(c, f"callbacks.{name}") for name, c in (cfg.get("callbacks") or {}).items()
             if isinstance(c, DictConfig) and "_target_" in c}
    report = next((c for c in named.values() if isinstance(c, EvalReport)), None)
    for name, c in named.items():
        check_monitor(f"callbacks.{name}.monitor", getattr(c, "monitor", None),
                      report.top_k if report is not None else None)
        check_mode(f"callbacks.{name}", getattr(c, "monitor", None), getattr(c, "mode", None))
    callbacks = list(named.values())
    for c in callbacks:
        if isinstance(c, L.callbacks.LearningRateMonitor) and c.logging_interval is None:
            c.logging_interval = lr_logging_interval(cfg)
    averaging = cfg.get("averaging")  # averaging=ema/swa (conf/averaging/); none has no _target_
    if isinstance(averaging, DictConfig) and "_target_" in averaging:
        # first: the other callbacks' validation hooks up to on_validation_epoch_end see the average
        callbacks.insert(0, instantiate(averaging, "averaging"))
    if not any(isinstance(c, EpochSeed) for c in callbacks):
        callbacks.append(EpochSeed(seed=cfg.seed))
    if not any(isinstance(c, Interruption) for c in callbacks):
        callbacks.append(Interruption(run_dir=cfg.paths.output_dir))
    return callbacks


def lr_logging_interval(cfg: DictConfig) -> str:
    """How often a learning-rate monitor with ``logging_interval: null`` (litlab's default) logs:
    every logging step where the rate changes after each optimizer step
    (``model.scheduler_interval=step``, or a warm-up: ``model.warmup_epochs`` > 0), else once per
    epoch, as the schedule steps. Per epoch, a warm-up's rate was logged once, at the epoch's first
    step, while it rose every step; and the default run is left without the monitor's per-step work."""
    per_step = changes_per_step(OmegaConf.select(cfg, "model.scheduler_interval", default="epoch"),
                                OmegaConf.select(cfg, "model.warmup_epochs", default=0))
    return "step" if per_step else "epoch"


def build_loggers(cfg: DictConfig) -> list:
    check_entries(cfg, "logger")
    return [instantiate(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items()
            if isinstance(c, DictConfig) and "_target_" in c]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    check_trainer_config(cfg.trainer)
    drop_nvml_check_without_gpus()
    if not loggers:
        # the LR monitor refuses to run without a logger; with logger=none there is nothing to monitor into
        callbacks = [c for c in callbacks if not isinstance(c, L.callbacks.LearningRateMonitor)]
    # trainer.enable_checkpointing=false / enable_progress_bar=false turn litlab's callbacks of that
    # kind off (the switches were overridden from the callbacks, and checkpoints were written anyway)
    for switch, kind in (("enable_checkpointing", L.callbacks.ModelCheckpoint), ("enable_progress_bar",
                                                                                 L.callbacks.ProgressBar)):
        if cfg.trainer.get(switch) is False:
            callbacks = [c for c in callbacks if not isinstance(c, kind)]
    plugins = [AtomicCheckpointIO()]
    # a real profiler times each callback's hooks separately: then no shared no-op profiler, no
    # grouping and no skipped hooks
    profiled = cfg.trainer.get("profiler") is not None
    extra = {} if profiled else {"profiler": NoProfiler()}
    callbacks = [*callbacks, StopOnNonFiniteLoss()]
    if not profiled:
        callbacks = group_callbacks(callbacks)
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, **extra,
                          logger=loggers or False, plugins=plugins,
                          enable_checkpointing=any(isinstance(c, L.callbacks.ModelCheckpoint) for c in callbacks),
                          enable_progress_bar=any(isinstance(c, L.callbacks.ProgressBar) for c in callbacks))
    # Lightning's model summary (trainer.enable_model_summary) with the FLOPs of one sample counted
    trainer.callbacks = with_flop_count(trainer.callbacks)
    if not profiled:
        skip_idle_step_hooks(trainer.callbacks)  # also those Lightning added (the model summary)
    # DDP ranks 1..N-1 run this job's config in this job's run directory (also inside sweeps)
    use_run_dir_launcher(trainer)
    return trainer
