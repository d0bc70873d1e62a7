"""Confusion matrices and per-class precision, recall and F1, kept as device tensors."""

from __future__ import annotations

import torch
from torch import Tensor

from litlab.listing import first_of


def add_to_confusion(cm: Tensor, target: Tensor, pred: Tensor) -> None:
    """Counts each ``(target, pred)`` pair into ``cm`` (rows: true class, columns: predicted).

    ``index_add_`` instead of ``bincount``: bincount on CUDA reads the maximum back to the host.
    """
    num_classes = cm.shape[0]
    flat = target.long() * num_classes + pred.long()  # (B,)
    cm.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=cm.dtype))


def per_class_scores(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1, support and prediction count of every class from a confusion matrix
    ``(C, C)``, with scikit-learn's conventions (``zero_division=0``).

    A ratio with nothing to divide by counts as 0: the precision of a class never predicted, the
    recall of a class without samples. F1 is ``2 TP / (2 TP + FP + FN)``, 0 for a class with
    samples or predictions but no hit (scikit-learn >= 1.3); for a class with neither it is 0 here
    too, but ``per_class_table`` shows such a class as undefined and leaves it out of the macro
    average.
    """
    cm = cm.double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)
    support = cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = support + predicted  # 2 TP + FP + FN
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}


def per_class_table(cm: Tensor, class_names: list[str]) -> str:
    """A Markdown table (TensorBoard's text tab renders it) with one row per class and the
    macro and support-weighted averages.

    As scikit-learn's ``classification_report``: the macro average is over the classes present,
    in the samples or the predictions. A class with neither (absent from the split, never
    predicted) has no defined scores: its row shows ``-``, and counting it as 0 would pull the
    macro average down for a class the split does not hold. A class predicted but without samples
    has precision 0 (every prediction of it is wrong) and an undefined recall (``-``), counted as 0
    in the macro average (``zero_division=0``). The weighted average is by support, so classes
    without samples add nothing to it. A footnote under the table says which classes lack samples.
    """
    scores = {k: v.cpu().tolist() for k, v in per_class_scores(cm.cpu()).items()}
    rows = ["| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    present = [i for i in range(len(class_names)) if scores["support"][i] > 0 or scores["predicted"][i] > 0]
    for i, name in enumerate(class_names):
        p, r, f = (f"{scores[k][i]:.4f}" for k in ("precision", "recall", "f1"))
        if scores["support"][i] == 0:
            r = "-"  # recall of a class without samples: undefined
            if i not in present:
                p = f = "-"
        rows.append(f"| {_cell(name)} | {p} | {r} | {f} | {int(scores['support'][i])} |")
    total = sum(scores["support"])
    weights = {"macro avg": {i: 1.0 / len(present) for i in present},
               "weighted avg": {i: s / total for i, s in enumerate(scores["support"]) if s > 0}}
    for label, w in weights.items():
        cells = [f"{sum(wi * scores[k][i] for i, wi in w.items()):.4f}" if w else "-"
                 for k in ("precision", "recall", "f1")]
        rows.append(f"| **{label}** | {' | '.join(cells)} | {int(total)} |")
    absent = [class_names[i] for i in range(len(class_names)) if i not in present]
    unsupported = [class_names[i] for i in present if scores["support"][i] == 0]
    if absent or unsupported:
        notes = []
        if absent:
            notes.append(f"class(es) {_names(absent)} had no samples and no predictions: left out of the macro "
                         f"average (scikit-learn's classification_report does the same)")
        if unsupported:
            notes.append(f"class(es) {_names(unsupported)} had predictions but no samples: precision 0, recall "
                         f"undefined (-) and counted as 0 in the macro average (zero_division=0)")
        rows += ["", "*" + "; ".join(notes) + ".*"]  # the blank line ends the Markdown table
    return "\n".join(rows)


def _names(names: list[str], most: int = 10) -> str:
    # a dataset of many classes evaluated on a few would list them all
    return first_of([_cell(n).replace("*", "\\*") for n in names], most)


def _cell(text: str) -> str:
    # a "|" in a class name would end the Markdown cell
    return str(text).replace("|", "\\|")
