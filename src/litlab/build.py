"""Turning the composed config into run components, with errors that name the config key."""

from __future__ import annotations

import logging
from typing import Any

import hydra
import lightning.pytorch as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from litlab.callbacks.checkpoints import AtomicCheckpointIO
from litlab.data.base import ClassificationData
from litlab.errors import LitlabError
from litlab.sweeps.ddp_processes import use_run_dir_launcher
from litlab.sweeps.nan_loss import StopOnNonFiniteLoss
from litlab.tasks.classification import Classifier
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


def build_data(cfg: DictConfig) -> ClassificationData:
    """The data module, set up so that its shapes and class names are known."""
    dm = instantiate(cfg.data, "data")
    dm.setup("fit")
    log.info("data: %s, input %s, %d classes, %d/%d/%d samples", type(dm).__name__, dm.input_shape,
             dm.num_classes, len(dm.splits.train), len(dm.splits.val), len(dm.splits.test))
    return dm


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> Classifier:
    """The task module around a net built for this data (the user never types shapes)."""
    make_net = instantiate(model_cfg.net, "model.net")
    try:
        net = make_net(input_shape=tuple(input_shape), num_classes=num_classes)
    except LitlabError:
        raise
    except Exception as e:  # the net's own argument checks (torch raises ValueError, TypeError, ...)
        target = model_cfg.net.get("_target_", "the net")
        raise LitlabError(f"model.net: could not build {target} with these settings: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else e!r}. Check the model.net.* keys.") from None
    switches = {k: model_cfg.get(k) for k in SPEED_SWITCHES}
    apply_speed_switches(net, **switches)
    task_cfg = model_cfg.copy()  # a shallow copy keeps its parent: ${trainer.*} still resolves
    with open_dict(task_cfg):
        for key in SPEED_SWITCHES:
            task_cfg.pop(key, None)
    return instantiate(task_cfg, "model", net=net, num_classes=num_classes)


# model.* keys that change how the net runs, never what it computes (docs/scaling.md)
SPEED_SWITCHES = ("channels_last", "compile")


def _inputs_channels_last(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4:  # (B, C, H, W), stored as (B, H, W, C)
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return args


def apply_speed_switches(net: nn.Module, channels_last: bool | None = False, compile: bool | dict | None = False
                         ) -> None:
    """``model.channels_last``: 4-D weights and inputs in (B, H, W, C) memory order (faster convolutions
    on GPUs with tensor cores). ``model.compile``: ``torch.compile`` the net in place (true, or a dict of
    torch.compile arguments); parameter names, and so checkpoints, stay the same."""
    if channels_last:
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_inputs_channels_last)
    if compile:
        if not isinstance(compile, (bool, DictConfig, dict)):
            raise LitlabError(f"model.compile must be true, false or a dict of torch.compile arguments, got {compile!r}.")
        net.compile(**({} if compile is True else OmegaConf.to_container(compile) if isinstance(compile, DictConfig)
                       else compile))


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c, f"callbacks.{name}") for name, c in (cfg.get("callbacks") or {}).items()
            if isinstance(c, DictConfig) and "_target_" in c]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items()
            if isinstance(c, DictConfig) and "_target_" in c]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    check_trainer_config(cfg.trainer)
    if not loggers:
        # the LR monitor refuses to run without a logger; with logger=none there is nothing to monitor into
        callbacks = [c for c in callbacks if not isinstance(c, L.callbacks.LearningRateMonitor)]
    plugins = [AtomicCheckpointIO()]
    trainer = instantiate(cfg.trainer, "trainer", callbacks=[*callbacks, StopOnNonFiniteLoss()],
                          logger=loggers or False, plugins=plugins,
                          enable_checkpointing=any(isinstance(c, L.callbacks.ModelCheckpoint) for c in callbacks),
                          enable_progress_bar=any(isinstance(c, L.callbacks.ProgressBar) for c in callbacks))
    # DDP ranks 1..N-1 run this job's config in this job's run directory (also inside sweeps)
    use_run_dir_launcher(trainer)
    return trainer
