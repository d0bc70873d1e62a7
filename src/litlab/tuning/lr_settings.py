"""The checks of ``python -m litlab.lr_find`` that need no torch: the ``lr_find`` node, and the
settings of the training config a range test cannot run with. The command line runs them before
torch and Lightning are imported (seconds), so a mistake is one paragraph at once; ``lr_find(cfg)``
runs them again for callers in-process."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from litlab.config_check import check_optimizer_values
from litlab.errors import LitlabError, check_choice
from litlab.init_from_path import check_init_from
from litlab.strategies import SHARDED, strategy_name

# the fewest optimizer steps of a sweep: a tenth is skipped at the start, and the suggestion needs
# 10 points after that (lr_curve.MIN_POINTS)
MIN_STEPS = 20
MODES = ("exponential", "linear")


@dataclass(frozen=True)
class RangeSettings:
    """The ``lr_find`` node, checked; its defaults and what each does are in conf/lr_find.yaml
    alone (``yaml_defaults``)."""

    min_lr: float
    max_lr: float
    num_steps: int
    mode: str
    smoothing: float
    stop_factor: float | None


def yaml_defaults() -> dict:
    """conf/lr_find.yaml's ``lr_find`` node, the one place its defaults are written: a config of
    the user's own whose node sets some of the keys takes the others from it."""
    from litlab.config_flags import CONF_DIR

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "lr_find.yaml").lr_find)


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LitlabError(f"lr_find.{key} must be a number, got {value!r}.")
    return float(value)


def range_settings(cfg: DictConfig) -> RangeSettings:
    """The ``lr_find`` node as ``RangeSettings``, or a LitlabError naming the key."""
    node = cfg.get("lr_find")
    if not isinstance(node, DictConfig):
        raise LitlabError("lr_find: the config has no lr_find node (conf/lr_find.yaml has it). Run python -m "
                          "litlab.lr_find with litlab's config, or add lr_find: {min_lr: ..., max_lr: ...} to yours.")
    known = set(RangeSettings.__dataclass_fields__)
    unknown = sorted(set(node) - known)
    if unknown:
        raise LitlabError(f"lr_find.{unknown[0]} is not a setting of the range test; its settings are "
                          f"{', '.join(f'lr_find.{k}' for k in RangeSettings.__dataclass_fields__)}.")
    given = {**yaml_defaults(), **OmegaConf.to_container(node, resolve=True)}
    min_lr, max_lr = _number("min_lr", given["min_lr"]), _number("max_lr", given["max_lr"])
    if min_lr <= 0:
        raise LitlabError(f"lr_find.min_lr must be > 0 (the sweep multiplies it up to lr_find.max_lr), got {min_lr:g}. "
                          f"Use e.g. lr_find.min_lr=1e-7.")
    if max_lr <= min_lr:
        raise LitlabError(f"lr_find.max_lr={max_lr:g} must be greater than lr_find.min_lr={min_lr:g}: the test sweeps "
                          f"the rate up from min_lr to max_lr. Use e.g. lr_find.max_lr=1.")
    steps = given["num_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < MIN_STEPS:
        raise LitlabError(f"lr_find.num_steps must be an integer >= {MIN_STEPS} (the suggestion is read from the "
                          f"smoothed loss of at least 10 steps after the first tenth), got {steps!r}. The default is "
                          f"100; the data is served for as many epochs as the steps take.")
    mode = check_choice("lr_find.mode", given["mode"], MODES)
    smoothing = _number("smoothing", given["smoothing"])
    if not 0 < smoothing <= 1:
        raise LitlabError(f"lr_find.smoothing must be in (0, 1], the weight of each new loss in the smoothed loss "
                          f"(0.05 by default, as fastai and Lightning), got {smoothing:g}. Use 1 for no smoothing.")
    stop = given["stop_factor"]
    if stop is not None:
        stop = _number("stop_factor", stop)
        if stop <= 1:
            raise LitlabError(f"lr_find.stop_factor must be > 1 (the test stops once the smoothed loss exceeds this "
                              f"many times the best so far) or null to run every step, got {stop:g}.")
    return RangeSettings(min_lr, max_lr, steps, mode, smoothing, stop)


def check_range_command(cfg: DictConfig) -> RangeSettings:
    """Every check of ``lr_find`` before torch: its node, and what a range test refuses of the
    training config. Returns the settings."""
    settings = range_settings(cfg)
    if cfg.get("ckpt_path"):
        raise LitlabError(f"ckpt_path={cfg.ckpt_path}: the range test starts from the config's own initialization, "
                          f"as a new training run does, and does not resume a checkpoint. Leave ckpt_path out "
                          f"(model.init_from=PATH starts it from another run's weights, as a fine-tuning run).")
    check_init_from(cfg)  # model.init_from: the range test starts from those weights, as the run would
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig):
        if trainer.get("fast_dev_run"):
            raise LitlabError(f"trainer.fast_dev_run={trainer.fast_dev_run} (debug=fdr) runs one batch, and the range "
                              f"test needs lr_find.num_steps={settings.num_steps} optimizer steps. Leave debug=fdr "
                              f"out (lr_find.num_steps sets the length).")
        name = strategy_name(trainer.get("strategy", "auto"))
        if name.startswith(SHARDED):
            raise LitlabError(f"trainer.strategy={name}: the range test runs in one process, and this strategy shards "
                              f"the model over several. Run it with trainer=gpu (one GPU holding the whole model); "
                              f"+trainer.accumulate_grad_batches=N (a key trainer=gpu does not have: hence the +) "
                              f"gives the samples per step of N GPUs.")
    target = OmegaConf.select(cfg, "model.optimizer._target_", default=None)
    if isinstance(target, str) and target.rsplit(".", 1)[-1] == "LBFGS":
        raise LitlabError(f"model.optimizer._target_={target}: L-BFGS takes several loss evaluations per step and "
                          f"searches its own step size, so a sweep of its learning rate measures nothing useful. "
                          f"Run the range test with a first-order optimizer (the default AdamW, or SGD).")
    check_optimizer_values(cfg)
    return settings
