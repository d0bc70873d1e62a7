"""Entries of the ``logger`` and ``callbacks`` collections: each builds one logger or callback.

Unlike the groups of which a run takes one file, these two hold several entries, each a
``{_target_: ...}`` node (``conf/logger/csv.yaml``, ``conf/callbacks/default.yaml``) that
``build`` instantiates; any other entry was passed over without a word (``+logger.foo=1``, or
``+callbacks.early_stopping.patience=3`` under ``callbacks=default``). No torch or Lightning is
imported here: the command-line checks (``config_check.check_overrides``) run ``check_entries``
before any folder is made, ``check_targets`` runs the checks again before the data is prepared,
and the builders of loggers and callbacks once more (eval builds its loggers without
``check_targets``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError

# the groups whose entries are each one {_target_: ...} node, a logger or a callback, with the
# config file that shows one and a key people set on one
COLLECTIONS = {"logger": ("logger", "conf/logger/csv.yaml", "logger.tensorboard.flush_every_s=10"),
               "callbacks": ("callback", "conf/callbacks/default.yaml", "callbacks.eval_report.top_k=3")}

# the one key of ``logger`` that is not a logger: the weight-histogram switch that
# callbacks.weight_histograms reads (conf/logger/tensorboard.yaml)
LOGGER_SWITCHES = ("histograms",)


def check_entries(cfg: DictConfig, group: str) -> None:
    """Every entry of ``logger`` or ``callbacks`` (``group``) is a ``{_target_: ...}`` node that
    builds one logger or callback; the runs passed any other over without a word: ``+logger.foo=1``,
    or ``+callbacks.early_stopping.patience=3`` under ``callbacks=default``, which has no early
    stopping to set. Refused, naming the key. ``null`` leaves an entry out
    (``callbacks.progress_bar=null``), and ``logger.histograms`` is a switch (true or false)."""
    node = cfg.get(group)
    if not isinstance(node, DictConfig):
        return
    kind, example, key_example = COLLECTIONS[group]
    for name in node:
        value = node.get(name)
        key = f"{group}.{name}"
        if value is None or (isinstance(value, DictConfig) and "_target_" in value):
            continue
        if group == "logger" and name in LOGGER_SWITCHES:
            if not isinstance(value, bool):
                raise LitlabError(f"logger.{name} must be true or false, got {value!r}.")
            continue
        if isinstance(value, DictConfig):
            keys = ", ".join(str(k) for k in value) or "nothing"
            files = _choices_with_entry(group, str(name))
            several = {"logger": " (logger=[csv,tensorboard] takes two)", "callbacks": " (it keeps the default ones)"}
            pick = (f" conf/{group}/{files[0]}.yaml has one of that name: choose it with {group}={files[0]}"
                    f"{several[group] if files[0] != 'default' else ''}, then set its keys." if files else "")
            built = ", ".join(_built(node))
            raise LitlabError(
                f"{key} has no _target_ (it holds {keys}), so it builds no {kind} and its keys would be passed over: "
                f"this run has no {kind} of that name to set.{pick} Or give it a _target_ ({key}._target_=CLASS, a "
                f"{kind} class by its dotted path){f', or set a key of one this run has ({built})' if built else ''}.")
        switch = " The one other key of logger is histograms (true or false)." if group == "logger" else ""
        raise LitlabError(
            f"{key}={value}: each entry of {group} is a {{_target_: ...}} node that builds one {kind} (as in "
            f"{example}), so this value would be passed over and nothing built. Add a {kind} as "
            f"+{key}={{_target_:CLASS,KEY:VALUE}}, set a key of one this run has (e.g. {key_example}), or leave "
            f"one out with {group}.NAME=null.{switch}")


def _choices_with_entry(group: str, name: str) -> list[str]:
    """The files of litlab's ``conf/<group>/`` that hold an entry ``name`` of their own."""
    files = sorted((Path(__file__).parent / "conf" / group).glob("*.yaml"))
    return [f.stem for f in files if name in (OmegaConf.load(f) or {})]


def _built(node: DictConfig) -> list[str]:
    """The names of the entries of ``node`` that build something."""
    return [str(k) for k in node if isinstance(node.get(k), DictConfig) and "_target_" in node.get(k)]


# what logger.histograms=true needs, by dotted path (imported only when checked, at build time)
TENSORBOARD_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"
WEIGHT_HISTOGRAMS = "litlab.callbacks.weight_histograms.WeightHistograms"


def check_histograms(cfg: DictConfig) -> None:
    """``logger.histograms=true`` writes weight histograms through callbacks.weight_histograms into
    TensorBoard: a run without either wrote none, without a word (``logger=csv``, ``callbacks=none``).
    Refused only where every entry is a class that is not of the kind (``builds``): a builder
    function of the user's own (``+logger.tb._target_=mymod.make_tb``) may return one."""
    _check_histogram_entries(cfg, builds)


def check_histograms_early(cfg: DictConfig) -> None:
    """``check_histograms`` on the command line, before torch is imported and any folder is made,
    where the entries decide it from their source (``source_signatures.subclass_of``):
    ``callbacks=none`` or ``logger=none``, or only litlab classes that are not of the kind. An
    entry it cannot tell (a user's class, a builder function) is left to ``check_histograms``,
    which runs again as the run is built."""
    from litlab.source_signatures import subclass_of

    _check_histogram_entries(cfg, lambda node, kind: subclass_of(str(node.get("_target_")), kind))


def _check_histogram_entries(cfg: DictConfig, builds_kind) -> None:
    """Refuses ``logger.histograms=true`` where every entry of ``logger`` is known not to build a
    TensorBoard logger, or every entry of ``callbacks`` not to build the weight-histogram callback,
    ``builds_kind(node, kind)`` telling (False: known not to)."""
    logger, callbacks = cfg.get("logger"), cfg.get("callbacks")
    if not isinstance(logger, DictConfig) or logger.get("histograms") is not True:
        return
    if all(builds_kind(logger.get(k), TENSORBOARD_LOGGER) is False for k in _built(logger)):
        raise LitlabError("logger.histograms=true writes weight histograms into TensorBoard, and this run has no "
                          "TensorBoard logger: nothing would be written. Use logger=tensorboard (or "
                          "logger=[csv,tensorboard] for both), or leave logger.histograms out.")
    entries = _built(callbacks) if isinstance(callbacks, DictConfig) else []
    if all(builds_kind(callbacks.get(k), WEIGHT_HISTOGRAMS) is False for k in entries):
        raise LitlabError("logger.histograms=true is written by callbacks.weight_histograms, which this run leaves "
                          "out: nothing would be written. Use callbacks=default (or callbacks=early_stopping), or "
                          "leave logger.histograms out.")


def builds(node: DictConfig, kind: str) -> bool | None:
    """Whether the ``_target_`` of ``node`` builds a ``kind`` (a class by its dotted path): True
    where it is that class or a subclass, False where it is another class, None where that cannot
    be told from the target (a builder function, or a path that does not resolve, which
    ``check_targets`` reports)."""
    target, wanted = resolved(node.get("_target_")), resolved(kind)
    if not (isinstance(target, type) and isinstance(wanted, type)):
        return None
    return issubclass(target, wanted)


def resolved(path: object) -> object | None:
    """The object a dotted ``path`` names (``package.module.Name``), or None where it names
    nothing importable. Quiet: ``hydra.utils.get_class`` logs an ERROR line for every path that is
    not a class (a builder function such as litlab.callbacks.checkpoints.checkpoint_callback)."""
    parts = str(path).split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # not a module (a class or function of a shorter prefix), or it fails to import
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None
