"""``optimized_metric`` names a figure litlab's task puts in metrics.json: checked before any work.

A name the run never records (lightning-hydra-template's ``val/acc_best``) was found missing only
once the run had ended: a warning after a single run, and in a search every trial trained in full
and failed, ending in "Best value: -inf". metrics.json's ``train/``, ``val/`` and ``test/`` figures
come from the task (``Classifier``: loss and acc of each stage), ``callbacks.eval_report`` (``ece``
and ``acc_top<k>`` of val and test) and the test after training (``test=true``); ``val/acc`` there is
the best epoch's where ``callbacks.model_checkpoint`` monitors it (``training.fit``). Only those
three stages are checked, and only under litlab's task with litlab's callbacks: other names
(``compress/...``, ``export/...``, ``fit_time_s``) depend on the run's choices, and a task or
callback of the user's own may log names of its own.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.errors import LitlabError
from litlab.monitor_checks import UNKNOWN, report_top_k
from litlab.net_partial import CLASSIFIER

STAGES = ("train", "val", "test")


def logged_names(cfg: DictConfig) -> set[str] | None:
    """The ``train/``, ``val/`` and ``test/`` names of metrics.json of a run of ``cfg``; None where
    they cannot be told from the config (a task or callback of the user's own, ``top_k`` not set)."""
    if OmegaConf.select(cfg, "model._target_", default=None) != CLASSIFIER:
        return None
    callbacks = cfg.get("callbacks")
    top_k = report_top_k(callbacks) if isinstance(callbacks, DictConfig) else None
    if top_k is UNKNOWN:
        return None
    stages = [s for s in STAGES if s != "test" or cfg.get("test")]
    names = {f"{s}/{m}" for s in stages for m in ("loss", "acc")}
    if top_k is not None:  # the eval report logs val and test only
        names |= {f"{s}/ece" for s in stages if s != "train"}
        if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
            names |= {f"{s}/acc_top{top_k}" for s in stages if s != "train"}
    return names


def check_optimized_metric_name(cfg: DictConfig) -> None:
    """Refuses an ``optimized_metric`` under train/, val/ or test/ that the run would not record."""
    try:
        metric = cfg.get("optimized_metric")
        if not metric or str(metric).split("/", 1)[0] not in STAGES:
            return
        names = logged_names(cfg)
        monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor", default=None)
    except OmegaConfBaseException:  # an interpolation that resolves only in the run
        return
    metric = str(metric)
    if names is None or metric in names:
        return
    base = metric.removesuffix("_best")
    if metric.endswith("_best") and base in names:
        best = (f"metrics.json's {base} is already the best epoch's value (the epoch of best.ckpt, as "
                f"callbacks.model_checkpoint monitors {base})" if monitor == base else
                f"metrics.json has no best-epoch figures of its own; to rank by the best {base}, also set "
                f"callbacks.model_checkpoint.monitor={base}, whose best value metrics.json then holds as {base}")
        raise LitlabError(f"optimized_metric={metric} is not a figure litlab records: {best}. Use "
                          f"optimized_metric={base}. Refused before any work.")
    no_test = " (test=false: no test/ figures)" if metric.startswith("test/") and not cfg.get("test") else ""
    raise LitlabError(f"optimized_metric={metric} is not among the figures this run records in metrics.json"
                      f"{no_test}: {', '.join(sorted(names))}. A sweep ranks its jobs by it, and would get no value "
                      f"from any job. Set optimized_metric to one of them. Refused before any work.")
