"""Warnings that litlab knows do not apply to a job's config, left out while the job runs."""

from __future__ import annotations

import contextlib
import warnings

from omegaconf import DictConfig, OmegaConf


# torch's DDP warns that broadcast_buffers is deprecated whenever it is given, and itself says to
# keep broadcast_buffers=False where buffers must not be synced at init: litlab's DDP configs set it
# so on purpose (distributed/buffers.py shares them before each evaluation instead)
BROADCAST_BUFFERS = r"`broadcast_buffers` is deprecated\. Use `forward_sync_buffers` instead\."
# under 16-mixed and bf16-mixed the weights are float32, so the model summary's size in MB, counted
# at 32 bits, is right although Lightning warns that it will not be
MIXED_SUMMARY = r"Precision (bf16|16)-mixed is not supported by the model summary\."


def known_warnings(cfg: DictConfig) -> list[tuple[str, type[Warning]]]:
    """The warnings (message pattern, category) litlab knows do not apply to this job's config:
    ``trainer.strategy.broadcast_buffers: false``'s deprecation, and the model summary's under a
    ``-mixed`` ``trainer.precision``."""
    def value(key: str):
        try:
            return OmegaConf.select(cfg, key, default=None)
        except Exception:  # an interpolation that does not resolve: the run reports it
            return None

    found = []
    if value("trainer.strategy.broadcast_buffers") is False:
        found.append((BROADCAST_BUFFERS, FutureWarning))
    if str(value("trainer.precision")) in ("16-mixed", "bf16-mixed", "16", "bf16"):  # Lightning's names for them
        found.append((MIXED_SUMMARY, UserWarning))
    return found


@contextlib.contextmanager
def known_warnings_quiet(cfg: DictConfig):
    """Inside, the ``known_warnings`` of this job's config are left out; every other one is printed.
    The filters end with the job (a later job of a sweep in this process may differ); those that
    the job's imports add (Lightning's) stay, which ``warnings.catch_warnings`` would drop."""
    added = []
    for message, category in known_warnings(cfg):
        warnings.filterwarnings("ignore", message=message, category=category)
        added.append(warnings.filters[0])
    try:
        yield
    finally:
        for entry in added:
            if entry in warnings.filters:
                warnings.filters.remove(entry)
        getattr(warnings, "_filters_mutated", lambda: None)()  # resets the cache of warnings seen
