"""Class weights of the training loss (``model.class_weights``): checked, and computed from the
training split's labels.

``null`` trains on plain cross-entropy; ``balanced`` weighs class c by ``n / (num_classes * n_c)``
over the training split's ``n`` labels (scikit-learn's ``compute_class_weight("balanced")``), so
every class adds the same total weight to an epoch; a list gives one positive weight per class, in
output-index order. The weights apply to the training loss only (``tasks/classification.py``,
``tasks/batch_mixing.py`` and compression's fine-tuning): validation and test losses stay the plain
cross-entropy, comparable across runs.

No torch here: the command line is checked before torch is imported (``check_class_weights``),
and the labels are counted through the split's own tensor or list.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from litlab.errors import LitlabError

KEY = "model.class_weights"
# compression's fine-tuning loss; by default (conf/compress/_finetune.yaml) an interpolation of KEY
FINETUNE_KEY = "compress.finetune.class_weights"
BALANCED = "balanced"
# the class count of litlab's data modules that the config alone gives (others only say once read)
_DIGITS = "litlab.data.digits.DigitsDataModule"  # scikit-learn's digits, 0 to 9
_SYNTHETIC = "litlab.data.synthetic.SyntheticDataModule"  # data.num_classes
_WHAT = (f"null (plain cross-entropy), {BALANCED} (n / (num_classes * n_c) over the training split's labels) or a "
         f"list of num_classes positive numbers, one per class in output-index order")


def check_class_weights(cfg: DictConfig) -> None:
    """``model.class_weights`` and ``compress.finetune.class_weights`` of a composed config, before
    Hydra makes the run's folder; a list's length too where the config gives the data's class count
    (``known_classes``), else when the data is read (``check_setting`` with ``num_classes``)."""
    num_classes = known_classes(cfg)
    for key in (KEY, FINETUNE_KEY):
        parent, name = key.rsplit(".", 1)
        node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and name in node:
            check_setting(OmegaConf.select(cfg, key, throw_on_resolution_failure=False), num_classes, key,
                          numbered=_numbered_data(cfg))


def known_classes(cfg: DictConfig) -> int | None:
    """The data's class count where the config alone gives it (``data=digits``: 10, ``data=synthetic``:
    ``data.num_classes``); None where only the data can say (``data=npz``, an image folder)."""
    data = OmegaConf.select(cfg, "data", throw_on_resolution_failure=False)
    target = data.get("_target_") if isinstance(data, DictConfig) else None
    if target == _DIGITS:
        return 10
    if target == _SYNTHETIC and "num_classes" in data:
        n = OmegaConf.select(data, "num_classes", throw_on_resolution_failure=False)
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None  # else data's own error
    return None


def _numbered_data(cfg: DictConfig) -> bool | None:
    """Whether the config's data names its classes by their index (``data=digits``: the folders 0
    to 9) or not (``data=synthetic``: class_0, ...); None for other data, judged once it is read."""
    data = OmegaConf.select(cfg, "data", throw_on_resolution_failure=False)
    target = data.get("_target_") if isinstance(data, DictConfig) else None
    return {_DIGITS: True, _SYNTHETIC: False}.get(target)


def follows_training(cfg: DictConfig) -> bool:
    """Whether ``compress.finetune.class_weights`` is the run's ``model.class_weights`` (the default
    of ``conf/compress/_finetune.yaml``, an interpolation of it) rather than a value of its own: the
    fine-tuning then takes the weights the training applied (on a resume, the checkpoint's)."""
    node = OmegaConf.select(cfg, "compress.finetune", throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig) or "class_weights" not in node:
        return False
    raw = OmegaConf.to_container(node, resolve=False)["class_weights"]
    return isinstance(raw, str) and raw.startswith("${") and KEY in raw


def check_setting(value, num_classes: int | None = None, key: str = KEY,
                  numbered: bool | None = None) -> list[float] | str | None:
    """``value`` as the task takes it: None, ``"balanced"`` or a list of floats (of length
    ``num_classes`` where it is given); anything else is refused naming ``key``. ``numbered``:
    whether the data's classes are named by their index (None: not known), for a refused length."""
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if value is None or value == BALANCED:
        return value
    if isinstance(value, str):
        raise LitlabError(f"{key}={value} is not a setting litlab knows: it takes {_WHAT}.")
    if not isinstance(value, (list, tuple)) or not value:
        raise LitlabError(f"{key} must be {_WHAT}; got {value!r}.")
    bad = [v for v in value
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= sys.float_info.max]
    if bad:
        raise LitlabError(f"{key}={_shown(value)} holds {', '.join(map(repr, bad))}: each class's weight must be a "
                          f"positive number (a weight of 0 would leave the class out of the loss; drop its samples "
                          f"from the data instead). It takes {_WHAT}.")
    if num_classes is not None and len(value) != num_classes:
        raise LitlabError(f"{key}={_shown(value)} gives {len(value)} weights, but the data has num_classes="
                          f"{num_classes}: give one weight per class, {_index_order(numbered)}, or {key}={BALANCED} "
                          f"to weigh them by the training labels.")
    return [float(v) for v in value]


def numbered_classes(class_names: Sequence[str] | None) -> bool | None:
    """Whether classes are named by their index (digits, npz labels): ``build.class_listing`` lists
    no such names, and the weights' messages then speak of label order; None where the names are
    not known. Names are compared as text (labels 0, 1 read from a file are the indices too)."""
    if class_names is None:
        return None
    return [str(c) for c in class_names] == [str(i) for i in range(len(class_names))]


def _index_order(numbered: bool | None) -> str:
    """Where a user finds the order of the weights: the log lists classes with names of their own at
    the start of a run (``build.class_listing``), not those named by their index (digits, npz)."""
    by_label = "in the order of the labels (the first weight is label 0's)"
    listed = "in output-index order (the class listing at the start of the run's log: data: classes in index order)"
    if numbered is None:
        return f"{by_label} where the classes are numbered (data=digits, data=npz), else {listed}"
    return by_label if numbered else listed


def _shown(value: Sequence) -> str:
    return "[" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) if isinstance(v, int) and not isinstance(
        v, bool) else repr(v) for v in value) + "]"


def label_counts(split, num_classes: int) -> list[int]:
    """Samples of each class in a training split, from its labels alone: a split in memory
    (``TensorSplit.y``) or streamed from files (``FileSplit.labels``) is counted without reading an
    input; another dataset is read sample by sample (its label is the second item)."""
    labels = getattr(split, "y", None)
    if labels is not None and hasattr(labels, "bincount"):  # a tensor of class indices
        return [int(c) for c in labels.long().bincount(minlength=num_classes).tolist()[:num_classes]]
    listed = getattr(split, "labels", None)
    if listed is None:
        listed = [int(split[i][1]) for i in range(len(split))]
    counts = [0] * num_classes
    for label in listed:
        counts[int(label)] += 1
    return counts


def balanced_weights(counts: Sequence[int], class_names: Sequence[str] | None = None, key: str = KEY) -> list[float]:
    """``n / (num_classes * n_c)`` for each class c of ``counts``; a class without a training
    sample (named, from ``class_names``) is refused: its weight would be infinite."""
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        names = class_names or [str(c) for c in range(len(counts))]
        shown = ", ".join(f"{c} ({names[c]})" if str(names[c]) != str(c) else str(c) for c in empty[:12])
        more = f" and {len(empty) - 12} more" if len(empty) > 12 else ""
        raise LitlabError(f"{key}={BALANCED} weighs each class by n / (num_classes * n_c) over the training split, "
                          f"and class {shown}{more} has no training sample (of {sum(counts)}), so its weight would "
                          f"be infinite. Add training samples of that class, or give {key} a list of "
                          f"num_classes={len(counts)} positive numbers.")
    total, k = sum(counts), len(counts)
    return [total / (k * n) for n in counts]


def resolve(setting: list[float] | str | None, split, num_classes: int,
            class_names: Sequence[str] | None = None, key: str = KEY) -> list[float] | None:
    """The weights ``setting`` (of ``key``) gives on this training split: None, the list itself, or
    the balanced weights of its labels (the whole split, the same on every DDP rank)."""
    setting = check_setting(setting, num_classes, key, numbered_classes(class_names))
    if setting != BALANCED:
        return setting
    return balanced_weights(label_counts(split, num_classes), class_names, key)


def resolve_on_data(setting: list[float] | str | None, dm, num_classes: int | None = None,
                    key: str = KEY) -> list[float] | None:
    """``resolve`` on a data module's whole training split (``dm.splits.train``; ``num_classes``:
    ``dm.num_classes`` unless given), for the task and compression's fine-tuning alike. ``balanced``
    on data without splits is refused naming ``key``; a list needs no split."""
    num_classes = dm.num_classes if num_classes is None else num_classes
    split = None
    if check_setting(setting, num_classes, key, numbered_classes(getattr(dm, "class_names", None))) == BALANCED:
        splits = getattr(dm, "splits", None)
        if splits is None:
            raise LitlabError(f"{key}={BALANCED} counts the training split's labels, and this data module "
                              f"({type(dm).__name__}) has no splits: give a list of num_classes weights.")
        split = splits.train
    return resolve(setting, split, num_classes, getattr(dm, "class_names", None), key)


def describe(weights: Sequence[float]) -> str:
    """The weights for the log, 4 significant digits each."""
    return "[" + ", ".join(f"{w:.4g}" for w in weights) + "]"
