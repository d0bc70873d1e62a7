"""Confusion matrices and per-class precision, recall and F1, kept as device tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def add_to_confusion(cm: Tensor, target: Tensor, pred: Tensor) -> None:
    """Counts each ``(target, pred)`` pair into ``cm`` (rows: true class, columns: predicted).

    ``index_add_`` instead of ``bincount``: bincount on CUDA reads the maximum back to the host.
    """
    num_classes = cm.shape[0]
    flat = target.long() * num_classes + pred.long()  # (B,)
    cm.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=cm.dtype))


def per_class_scores(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1 and support of every class from a confusion matrix ``(C, C)``.

    Classes never predicted get precision 0, classes without samples recall 0 (as scikit-learn's
    ``zero_division=0``).
    """
    cm = cm.double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)
    support = cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def per_class_table(cm: Tensor, class_names: list[str]) -> str:
    """A Markdown table (TensorBoard's text tab renders it) with one row per class and the
    macro and support-weighted averages."""
    scores = {k: v.cpu().tolist() for k, v in per_class_scores(cm.cpu()).items()}
    rows = ["| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for i, name in enumerate(class_names):
        rows.append(f"| {_cell(name)} | {scores['precision'][i]:.4f} | {scores['recall'][i]:.4f} | "
                    f"{scores['f1'][i]:.4f} | {int(scores['support'][i])} |")
    total = sum(scores["support"]) or 1.0
    n = len(class_names) or 1
    for label, weights in (("macro avg", [1.0 / n] * n), ("weighted avg", [s / total for s in scores["support"]])):
        avg = {k: sum(w * v for w, v in zip(weights, scores[k])) for k in ("precision", "recall", "f1")}
        rows.append(f"| **{label}** | {avg['precision']:.4f} | {avg['recall']:.4f} | {avg['f1']:.4f} | "
                    f"{int(sum(scores['support']))} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    # a "|" in a class name would end the Markdown cell
    return str(text).replace("|", "\\|")
