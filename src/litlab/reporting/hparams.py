"""The TensorBoard hparams tab: resolved hyperparameters with the run's final metrics."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from litlab.reporting.run_files import tags_of

# final metrics shown next to the hyperparameters (metrics.json keys)
FINAL = ("val/acc", "test/acc", "test/loss", "train_samples_per_s", "effective_batch_size")


def hparams_of(cfg: DictConfig) -> dict:
    """The hyperparameters worth comparing across runs: model, data, trainer, seed, tags, weight averaging,
    batch mixing, compression. ``averaging=none`` and ``mixing=none`` (no ``_target_``) are recorded
    as ``none``: their empty nodes recorded nothing, a blank in the table; a sweep's none job that
    carries a key for the others (``-m mixing=none,mixup ++mixing.alpha=0.5``) is ``none`` too.
    ``tags`` are one comma-joined string (``dev,mine``; empty without tags): the HPARAMS tab shows
    and filters on such a value, and shows no lists."""
    out = {"seed": cfg.get("seed"), "tags": ",".join(tags_of(cfg))}
    for group in ("model", "data", "trainer", "averaging", "mixing", "compress"):
        node = cfg.get(group)
        if group in ("averaging", "mixing") and (not isinstance(node, DictConfig) or "_target_" not in node):
            out[group] = "none"
        elif node is not None:
            out[group] = OmegaConf.to_container(node, resolve=True)
    return out


def log_final_hparams(loggers: list, cfg: DictConfig, metrics: dict) -> None:
    """Writes hparams with ``hparams/<metric>`` values to every logger that supports it."""
    final = {f"hparams/{k}": float(metrics[k]) for k in FINAL if isinstance(metrics.get(k), (int, float))}
    for logger in loggers:
        try:
            logger.log_hyperparams(hparams_of(cfg), metrics=final)
        except TypeError:  # loggers without a metrics argument
            logger.log_hyperparams(hparams_of(cfg))
        logger.save()
