"""Checks of the weight averaging settings (``averaging=none|ema|swa``, ``conf/averaging/``).

One set of checks for every way a run reaches them: the command line's, before Hydra makes the
run's folder (``config_check.check_overrides`` calls ``check_averaging``), and the callback's
(``callbacks/weight_averaging.py``), when it is built and when fitting starts, for a config that
reaches ``train`` another way or a trainer whose epoch count or strategy was not known before.
Kept apart from ``config_check``, which checks the command line as a whole, as ``trainer_checks``
and ``resume_settings`` are; like them it takes the strategy's name from ``strategies``.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError
from litlab.strategies import SHARDED, strategy_name

# a setting the averaging method does not take (EMA has no averaging.start_epoch)
NOT_GIVEN = object()


def check_averaging(cfg: DictConfig) -> None:
    """``averaging=ema``/``swa`` (``conf/averaging/``): its settings, and a strategy under which one
    process holds every weight to average, checked before Hydra makes the run's folder (and again
    when the callback is built and set up, for configs that reach ``train`` another way)."""
    node = OmegaConf.select(cfg, "averaging", throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    check_averaging_strategy(strategy_name(OmegaConf.select(cfg, "trainer.strategy", default="auto")))
    settings = {key: node.get(key) for key in ("decay", "warmup", "update_every_n_steps", "start_epoch")
                if key in node}  # those of the method's file (a key it lacks is refused by Hydra)
    check_averaging_settings(**settings, max_epochs=OmegaConf.select(cfg, "trainer.max_epochs", default=None))


def check_averaging_strategy(name: str) -> None:
    """Weight averaging keeps a whole copy of the weights in every process and averages it with the
    process's own: under a sharded strategy (FSDP, DeepSpeed) a process holds a shard only, and the
    average would be of the wrong tensors or fail in the first step."""
    if name.startswith(SHARDED):
        raise LitlabError(f"averaging=ema/swa cannot run with trainer.strategy={name}: weight averaging keeps a "
                          f"whole copy of the model in every process, and a sharded strategy (FSDP, DeepSpeed) "
                          f"gives each process a part of the weights only. Use averaging=none with this strategy, "
                          f"or a strategy that keeps the whole model in each process (trainer=gpu, trainer=ddp).")


def check_averaging_settings(decay: object = 0.999, warmup: object = True, update_every_n_steps: object = 1,
                             start_epoch: object = NOT_GIVEN, max_epochs: object = None) -> None:
    """``averaging.decay`` in (0, 1), ``averaging.warmup`` a boolean, ``averaging.update_every_n_steps``
    an integer >= 1, and ``averaging.start_epoch`` (SWA's; ``NOT_GIVEN`` for EMA) an epoch (an integer
    >= 0) or a fraction in (0, 1) of ``trainer.max_epochs`` that leaves at least one epoch to average
    (``max_epochs``: -1 for unlimited, None where it is not known yet)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise LitlabError(f"averaging.decay must be a number in (0, 1), got {decay!r}: the weight of the old "
                          f"average at each update (0.999 averages over ~1,000 updates, 0.99 over ~100).")
    if not isinstance(warmup, bool):
        raise LitlabError(f"averaging.warmup must be true or false, got {warmup!r}.")
    if isinstance(update_every_n_steps, bool) or not isinstance(update_every_n_steps, int) or update_every_n_steps < 1:
        raise LitlabError(f"averaging.update_every_n_steps must be an integer >= 1, got {update_every_n_steps!r}.")
    if start_epoch is NOT_GIVEN:
        return
    fraction = isinstance(start_epoch, float) and 0 < start_epoch < 1
    if isinstance(start_epoch, bool) or not (fraction or isinstance(start_epoch, int) and start_epoch >= 0):
        raise LitlabError(f"averaging.start_epoch must be an epoch number (0 is the first) or a fraction in (0, 1) "
                          f"of trainer.max_epochs (0.75: the last quarter of the run), got {start_epoch!r}.")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int):
        return  # not known yet (null: Lightning picks it), checked again when fitting starts
    if fraction and max_epochs < 0:
        raise LitlabError(f"averaging.start_epoch={start_epoch} is a fraction of trainer.max_epochs, which is "
                          f"unlimited here ({max_epochs}). Give the first averaged epoch as a number "
                          f"(averaging.start_epoch=15), or set trainer.max_epochs.")
    first = int(start_epoch * max_epochs) if fraction else start_epoch
    if max_epochs >= 0 and first >= max_epochs:
        raise LitlabError(f"averaging.start_epoch={start_epoch} starts averaging at the end of epoch {first + 1} "
                          f"(as the log counts), but the run has trainer.max_epochs={max_epochs}, so nothing would "
                          f"be averaged. Give an earlier epoch (at most {max_epochs - 1}) or a fraction in (0, 1).")
