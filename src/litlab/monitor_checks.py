"""What checkpointing and early stopping may monitor: a metric the training run logs.

A monitored metric the run never logs failed Lightning only after the first validation, with a
traceback (early stopping) or Lightning's one line (checkpointing), after the data was prepared
and an epoch trained. Top-k accuracy and the calibration error come from
``callbacks.eval_report``, and ``val/acc_top<k>`` only for its ``top_k`` and only where the data
has more than ``top_k`` classes. No torch here: the checks read the config alone (and the class
count once the data is known), so they can run before anything is imported or prepared.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig

from litlab.errors import LitlabError

# what a training run logs that checkpointing and early stopping can monitor (besides val/acc_top<k>);
# val/ece (calibration error, best at its lowest: mode=min) comes from callbacks.eval_report
MONITORABLE = ("val/acc", "val/loss", "val/ece", "train/acc", "train/loss")

# the class of callbacks.eval_report, which logs val/acc_top<k> and val/ece
EVAL_REPORT = "litlab.callbacks.eval_report.EvalReport"

# packages whose classes and builders are told by their dotted path alone: none but EVAL_REPORT is
# an eval report (tests/test_monitor_checks.py checks litlab's). A class of any other package (the
# user's own, mymod.MyReport) may subclass it, which only importing it would tell.
KNOWN_PACKAGES = ("litlab", "lightning", "pytorch_lightning", "torch")

# the report's top_k where the config does not tell (an entry without the key, or a user's own class)
UNKNOWN = object()

# k from 1, written without leading zeros as the report names it (val/acc_top05 is never logged)
_TOP_K = re.compile(r"val/acc_top([1-9]\d*)")


def check_monitor(key: str, monitor: object, top_k: object = UNKNOWN, num_classes: int | None = None) -> None:
    """Refuses ``monitor`` (the value of ``key``, e.g. ``callbacks.model_checkpoint.monitor``)
    where the run would not log it.

    Args:
        key: the monitor's dotted key, as the user types it.
        monitor: the metric name; None monitors nothing.
        top_k: ``callbacks.eval_report.top_k`` of this run; None without the eval report;
            ``UNKNOWN`` where the report's setting is not known (then only the name is checked).
        num_classes: the data's class count, once known.
    """
    if monitor is None:
        return
    top = _TOP_K.fullmatch(str(monitor))
    if monitor == "val/ece" or top:
        if top_k is None:
            keep = "" if monitor == "val/ece" else f" with callbacks.eval_report.top_k={top.group(1)}"
            raise LitlabError(f"{key}={monitor} is logged by callbacks.eval_report, which this run leaves out: "
                              f"nothing would be monitored. Keep callbacks.eval_report{keep} (callbacks=default or "
                              f"callbacks=early_stopping), or monitor val/loss or val/acc.")
        if top:
            _check_top_k(key, monitor, int(top.group(1)), top_k, num_classes)
        return
    if monitor in MONITORABLE:
        return
    raise LitlabError(f"{key}={monitor} is not a metric that training logs; use one of {', '.join(MONITORABLE)} "
                      f"(or val/acc_top<k>, k from 1 without leading zeros, with callbacks.eval_report.top_k=k).")


def _check_top_k(key: str, monitor: str, k: int, top_k: object, num_classes: int | None) -> None:
    """``val/acc_top<k>`` is logged for the report's ``top_k`` only, and where there are more
    than ``k`` classes (with ``k`` or fewer every sample's class is among the top ``k``)."""
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k != k:
        logged = f"logs val/acc_top{top_k}" if top_k > 0 else "logs no top-k accuracy"
        other = f"val/acc_top{top_k}" if top_k > 0 else "val/acc"
        raise LitlabError(f"{key}={monitor}, but callbacks.eval_report.top_k={top_k} {logged}, so {monitor} would "
                          f"never be logged. Use callbacks.eval_report.top_k={k}, or monitor {other}.")
    if num_classes is not None and num_classes <= k:
        raise LitlabError(f"{key}={monitor}, but the data has {num_classes} classes, and top-{k} accuracy is logged "
                          f"only with more than {k} (every sample's class is among the top {k}), so {monitor} "
                          f"would never be logged. Monitor val/acc, or val/acc_top<k> with k below {num_classes} "
                          f"(and callbacks.eval_report.top_k=k).")


def report_top_k(callbacks: DictConfig) -> object:
    """``top_k`` of the run's eval report among the ``callbacks`` entries; None without one;
    ``UNKNOWN`` where its entry does not set it, or where an entry's target is a class of the
    user's own, which may be an eval report (a subclass of it): the build checks the callbacks
    themselves (``build.build_callbacks``)."""
    targets = [str(node.get("_target_")) for node in callbacks.values()
               if isinstance(node, DictConfig) and "_target_" in node]
    if any(t.split(".")[0] not in KNOWN_PACKAGES for t in targets):
        return UNKNOWN
    for node in callbacks.values():
        if isinstance(node, DictConfig) and node.get("_target_") == EVAL_REPORT:
            return node.get("top_k", UNKNOWN)
    return None


def check_monitored(cfg: DictConfig, num_classes: int | None = None) -> None:
    """The ``monitor`` of every ``callbacks`` entry (``model_checkpoint``, ``early_stopping``, a
    user's own) names a metric this run logs, from the config alone; ``num_classes``: the data's
    class count, once it is known."""
    callbacks = cfg.get("callbacks")
    if not isinstance(callbacks, DictConfig):
        return
    top_k = report_top_k(callbacks)
    for name, node in callbacks.items():
        if isinstance(node, DictConfig) and "_target_" in node and "monitor" in node:
            check_monitor(f"callbacks.{name}.monitor", node.get("monitor"), top_k, num_classes)
