"""Building the optimizer from its config, with fused kernels where torch has them.

A fused optimizer updates every parameter in one kernel per step instead of several small kernels
per parameter tensor; on small nets that is most of the optimizer's time (AdamW on litlab's CNN:
0.28 ms -> 0.12 ms per step on 2 CPU cores). The update rule is the same; results agree to float
rounding (tests/tasks/test_optimizers.py).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable

import torch
import torch.optim.optimizer as torch_optimizer

from litlab.errors import LitlabError

# settings of model.fused_optimizer
CHOICES = (True, False, "auto")
# keywords with which the user already chose an implementation; auto leaves those alone
_IMPLEMENTATION_KEYS = ("fused", "foreach", "differentiable")


def built_class(factory: Callable) -> type | None:
    """The class that ``factory`` (a class, or Hydra's partial of one) builds; None for a function."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    return target if isinstance(target, type) else None


def _optimizer_class(factory: Callable) -> type | None:
    target = built_class(factory)
    return target if target is not None and issubclass(target, torch.optim.Optimizer) else None


def _user_keywords(factory: Callable) -> dict:
    return dict(factory.keywords) if isinstance(factory, functools.partial) else {}


def check_decay_setting(value) -> None:
    """``model.decay_biases_and_norms`` must be true or false. Checked twice, both needed:
    ``build.check_task_settings`` (before the data is prepared) and ``Classifier`` (a task built in
    code, which no config check saw)."""
    if not isinstance(value, bool):
        raise LitlabError(f"model.decay_biases_and_norms must be true or false, got {value!r}. false keeps weight "
                          f"decay off biases and normalisation weights (every parameter of fewer than 2 dimensions).")


def check_fused_setting(fused) -> None:
    """``model.fused_optimizer`` must be true, false or auto. Checked where the value comes in:
    ``build.check_task_settings`` (before the data is prepared), ``Classifier`` (a task built in
    code) and ``build_optimizer`` (called directly, as the tests do)."""
    if fused not in CHOICES:
        raise LitlabError(f"model.fused_optimizer must be true, false or auto, got {fused!r}.")


def check_optimizer_settings(optimizer: Callable[..., torch.optim.Optimizer],
                             scheduler: Callable[..., object] | None = None) -> None:
    """Builds the optimizer and scheduler once on a stand-in parameter, so that a bad setting
    (``model.optimizer.lr=-1``, an unknown keyword) is a clear error before any data is trained on,
    not a traceback from inside Lightning's fit."""
    try:
        weight = torch.zeros(1, requires_grad=True)
        probe = optimizer(params=[weight])
        weight.grad = torch.zeros(1)  # a dense gradient, as training gives (SparseAdam refuses one)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a closure for the optimizers that need one (L-BFGS re-evaluates the loss)
            probe.step(lambda: torch.zeros(())) if _takes_closure(probe) else probe.step()
    except LitlabError:
        raise
    except Exception as e:  # a bad value (betas=[0.9]: IndexError), an optimizer that cannot step
        raise LitlabError(f"model.optimizer: {_one_line(e)}. Check the model.optimizer.* keys.") from None
    if scheduler is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = scheduler(optimizer=probe)
            _check_period(built)
            try:
                # values such as T_max are only used here; ReduceLROnPlateau steps on the monitored value
                built.step(0.0) if on_plateau(built) else built.step()
            except ZeroDivisionError:
                pass  # a period of 0 (T_max from trainer.max_epochs=0): fine while nothing is trained
    except (ValueError, TypeError) as e:
        raise LitlabError(f"model.scheduler: {_one_line(e)}. Check the model.scheduler.* keys "
                          f"(model.scheduler=null for a constant learning rate).") from None


def _takes_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` requires a closure (L-BFGS: it re-evaluates the loss)."""
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


# the metric ReduceLROnPlateau schedules are stepped with (logged at every validation's end)
PLATEAU_MONITOR = "val/loss"
# the attribute, saved in its state_dict, of a schedule whose periods litlab converted from epochs
# to optimizer steps (model.scheduler_interval=step): its optimizer steps per epoch
STEPS_PER_EPOCH_KEY = "litlab_steps_per_epoch"


def on_plateau(scheduler: object) -> bool:
    """Whether the scheduler lowers the rate when a metric stops improving (it steps on that value)."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _check_period(scheduler: object) -> None:
    """A cosine schedule's ``T_max`` (``trainer.max_epochs`` by default) must be a number of
    epochs: -1 (Lightning's "no limit") would make the rate jump between its two ends every epoch."""
    period = getattr(scheduler, "T_max", 0)
    if period is None or isinstance(period, bool) or not isinstance(period, (int, float)) or not period >= 0:
        raise LitlabError(
            f"model.scheduler.T_max={period!r}: the cosine schedule needs a number of epochs >= 0 (by default "
            f"it is trainer.max_epochs). Set trainer.max_epochs to a number, or model.scheduler.T_max=N, or "
            f"model.scheduler=null for a constant learning rate.")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0].rstrip('.')}" if text else type(e).__name__


def has_fused_kernel(factory: Callable) -> bool:
    """Whether the optimizer class that ``factory`` builds takes ``fused=True`` (Adam, AdamW, SGD, Adagrad)."""
    cls = _optimizer_class(factory)
    return cls is not None and "fused" in inspect.signature(cls.__init__).parameters


# names of the two parameter groups of model.decay_biases_and_norms=false (the learning-rate
# monitor logs one lr-<Optimizer> for groups that share their rate: litlab.callbacks.lr_monitor)
DECAYED, NOT_DECAYED = "decay", "no_decay"
# optimizers that refuse several parameter groups ("doesn't support per-parameter options")
_ONE_GROUP_ONLY = (torch.optim.LBFGS,)


def _weight_decay(factory: Callable) -> object:
    """The weight decay the optimizer is built with: ``model.optimizer.weight_decay``, else the
    default of its signature (AdamW 0.01, SGD 0); 0 for an optimizer without one (Rprop)."""
    keywords = _user_keywords(factory)
    if "weight_decay" in keywords:
        return keywords["weight_decay"]
    target = factory.func if isinstance(factory, functools.partial) else factory
    try:
        parameter = inspect.signature(target).parameters.get("weight_decay")
    except (TypeError, ValueError):  # a builder inspect cannot read
        return 0
    return 0 if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def one_group_reason(factory: Callable, decay_biases_and_norms: bool, sharded: bool = False) -> str | None:
    """Why ``parameter_groups`` keeps every parameter in one group whatever the net, in words for a
    message; None where it splits biases and norms off into a second group. The resume reads it to
    compare a checkpoint's saved groups with this run's before any net is built."""
    cls = _optimizer_class(factory)
    if decay_biases_and_norms:
        return "every parameter decays"
    if sharded:
        return "FSDP's local shards are all 1-D, so every parameter decays"
    if cls is not None and issubclass(cls, _ONE_GROUP_ONLY):
        return f"{cls.__name__} takes one parameter group only"
    if not _weight_decay(factory):
        return "the optimizer has no weight decay to leave out"
    return None


def group_names(groups: list) -> list[str | None]:
    """The names of the optimizer's groups for what ``parameter_groups`` returned (None for an
    unnamed group), as the optimizer's saved state lists them: ``[None]`` for a plain list."""
    return [g.get("name") for g in groups] if groups and isinstance(groups[0], dict) else [None]


def parameter_groups(factory: Callable, params: Iterable[torch.nn.Parameter], decay_biases_and_norms: bool = True,
                     sharded: bool = False) -> list:
    """The parameters as the optimizer gets them: a plain list (one group, every parameter decays),
    or with ``decay_biases_and_norms=False`` two named groups, the second with ``weight_decay=0``
    for every parameter of fewer than 2 dimensions: biases and the scales and shifts of BatchNorm,
    LayerNorm and GroupNorm. Decay pulls weights towards 0 to keep a layer's function simple; a
    bias or a norm's scale has no such role, and shrinking a scale only fights the normalisation
    (timm's ``filter_bias_and_bn``, nanoGPT's "only 2-D tensors decay"). Embeddings are 2-D and decay.

    One group where two mean nothing or cannot be: no weight decay to leave out (0, or none in the
    optimizer's signature), an optimizer that refuses several groups (L-BFGS), and sharded
    parameters (FSDP), whose local shards are 1-D whatever the parameter's shape (every parameter
    then decays, as with ``decay_biases_and_norms=True``).
    """
    params = list(params)
    if one_group_reason(factory, decay_biases_and_norms, sharded) is not None:
        return params
    decayed, kept = [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
    if not decayed or not kept:  # all of one kind: one group, without names (one plain lr-<Optimizer> tag)
        return params if not kept else [{"params": kept, "weight_decay": 0.0}]
    return [{"params": decayed, "name": DECAYED}, {"params": kept, "weight_decay": 0.0, "name": NOT_DECAYED}]


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.nn.Parameter],
                    fused: bool | str = "auto", sharded: bool = False, unscales: bool = False,
                    decay_biases_and_norms: bool = True) -> torch.optim.Optimizer:
    """``factory(params=...)`` on the ``parameter_groups`` of ``params``, adding ``fused=True`` when
    ``fused`` asks for it (one fused kernel covers both groups).

    ``auto`` fuses when the optimizer has a fused kernel, the user set none of ``fused``, ``foreach``
    or ``differentiable`` in ``model.optimizer``, every parameter is a floating-point tensor on a
    device with fused kernels, and the parameters are not sharded (FSDP). ``true`` insists and fails
    with a clear message where it cannot; ``false`` builds the optimizer exactly as configured.
    ``unscales``: mixed precision unscales the gradients before the step (gradient clipping, or
    16-mixed's loss scaling, where clipping and the logged gradient norm need true gradients),
    which a fused optimizer would do inside its step instead (Lightning then refuses to clip).
    ``decay_biases_and_norms=False``: no weight decay on parameters of fewer than 2 dimensions.
    """
    check_fused_setting(fused)  # also here: a direct call ("yes") would otherwise build as auto
    params = list(params)
    groups = parameter_groups(factory, params, decay_biases_and_norms, sharded)
    if fused is False:
        return factory(params=groups)
    cls = _optimizer_class(factory)
    name = cls.__name__ if cls else "this optimizer"
    reasons = []
    if not has_fused_kernel(factory):
        reasons.append(f"torch has no fused {name}")
    if any(k in _user_keywords(factory) for k in _IMPLEMENTATION_KEYS):
        reasons.append("model.optimizer already chooses fused, foreach or differentiable")
    supported = set(getattr(torch_optimizer, "_get_fused_kernels_supported_devices", lambda: ["cpu", "cuda"])())
    if any(not p.is_floating_point() or p.device.type not in supported for p in params):
        reasons.append("some parameters are not floating point or sit on a device without fused kernels")
    if sharded:
        reasons.append("the parameters are sharded (FSDP)")
    if unscales:
        reasons.append("mixed precision with gradient clipping or loss scaling needs the gradients unscaled before "
                       "the optimizer step, which a fused optimizer does inside it")
    if reasons:
        if fused is True:
            raise LitlabError(f"model.fused_optimizer=true cannot be honoured: {'; '.join(reasons)}. Use "
                              f"model.fused_optimizer=auto (fuse where possible) or false.")
        return factory(params=groups)
    return factory(params=groups, fused=True)


def stretch_cosine_schedule(checkpoint: dict, scheduler_factory: Callable | None) -> int | float | None:
    """A resume whose cosine schedule is longer than the checkpoint's (``trainer.max_epochs`` raised
    to train on) continues on the longer cosine: the stored schedule gets the new ``T_max`` and the
    learning rate that cosine has at the stored epoch. Otherwise the stored schedule would run on:
    its rate reached ``eta_min`` at the old end, stays there one epoch and then rises again.

    Edits ``checkpoint`` (before Lightning restores optimizer and schedule from it); returns the
    old ``T_max`` (in epochs) when it changed it, else None. A schedule that is not a single cosine,
    or a length that does not reach past the stored epoch, is left as it is. A schedule stepped per
    optimizer step (``model.scheduler_interval=step``) counts its ``T_max`` and position in steps.
    """
    states = checkpoint.get("lr_schedulers") or []
    optimizers = checkpoint.get("optimizer_states") or []
    new = getattr(scheduler_factory, "keywords", {}).get("T_max")
    if len(states) != 1 or len(optimizers) != 1 or not isinstance(new, (int, float)) or isinstance(new, bool):
        return None
    state = states[0]
    steps = state.get(STEPS_PER_EPOCH_KEY) or 1  # the schedule's steps per epoch
    new = new * steps
    old, epoch = state.get("T_max"), state.get("last_epoch")
    if old is None or old == new or "eta_min" not in state or epoch is None or new <= epoch:
        return None
    lrs = [state["eta_min"] + (base - state["eta_min"]) * (1 + math.cos(math.pi * epoch / new)) / 2
           for base in state["base_lrs"]]
    state["T_max"], state["_last_lr"] = new, lrs
    for group, lr in zip(optimizers[0]["param_groups"], lrs):
        group["lr"] = lr
    return old if steps == 1 else old // steps if old % steps == 0 else old / steps
