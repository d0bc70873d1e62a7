"""Names of Lightning's distribution strategies (``trainer.strategy``), read from the config.

A leaf module (omegaconf only): the checks of the command line (``config_check``), of the trainer,
of averaging and of a resume all take a strategy's name from here, and ``config_check`` imports
those checks, so the names cannot live there without an import cycle.
"""

from __future__ import annotations

from omegaconf import DictConfig

# strategies whose processes each hold a part of the weights (names as ``strategy_name`` gives them)
SHARDED = ("fsdp", "deepspeed", "modelparallel", "model_parallel")


def strategy_name(strategy: object) -> str:
    """``ddp``, ``fsdp``, ... from a strategy name or a ``_target_`` config."""
    if isinstance(strategy, DictConfig):
        target = str(strategy.get("_target_", ""))
        return target.rsplit(".", 1)[-1].removesuffix("Strategy").lower()
    return str(strategy or "auto").lower()
