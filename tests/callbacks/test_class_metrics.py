"""Confusion counts and per-class scores against scikit-learn's."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from litlab.callbacks.class_metrics import add_to_confusion, per_class_scores, per_class_table


def test_confusion_and_scores_match_sklearn():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (300,), generator=g)
    # mostly right, some noise, class 4 never predicted (precision 0 by convention)
    pred = torch.where(torch.rand(300, generator=g) < 0.7, target, torch.randint(0, 5, (300,), generator=g))
    pred[pred == 4] = 3
    cm = torch.zeros(5, 5, dtype=torch.long)
    for chunk in range(0, 300, 64):  # accumulated batch by batch, as in an epoch
        add_to_confusion(cm, target[chunk:chunk + 64], pred[chunk:chunk + 64])
    assert cm.tolist() == confusion_matrix(target, pred, labels=range(5)).tolist()
    p, r, f, s = precision_recall_fscore_support(target, pred, labels=range(5), zero_division=0)
    scores = per_class_scores(cm)
    for ours, theirs in ((scores["precision"], p), (scores["recall"], r), (scores["f1"], f), (scores["support"], s)):
        assert ours.tolist() == pytest.approx(list(theirs))


def test_table_escapes_names_and_has_averages():
    cm = torch.tensor([[3, 1], [0, 4]])
    table = per_class_table(cm, ["a|b", "c"])
    assert "| a\\|b |" in table
    assert table.splitlines()[-2].startswith("| **macro avg**")


def _rows(table: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in table.splitlines()[2:] if line.startswith("|"))}


def test_classes_without_samples_are_undefined_and_left_out_of_the_macro_average():
    """A class absent from the split showed 0.0000 everywhere and pulled the macro average down;
    the averages now follow scikit-learn's classification_report (labels in y_true or y_pred)."""
    target = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    pred = torch.tensor([0, 1, 1, 3, 2, 2, 0, 0])  # class 3 predicted without samples; class 4 absent
    cm = torch.zeros(5, 5, dtype=torch.long)
    add_to_confusion(cm, target, pred)
    rows = _rows(per_class_table(cm, ["a", "b", "c", "d", "e"]))
    present = sorted(set(target.tolist()) | set(pred.tolist()))
    p, r, f, s = precision_recall_fscore_support(target, pred, labels=present, zero_division=0)
    for i, name in zip(present, "abcd"):
        assert rows[name][3] == str(s[present.index(i)])
    assert rows["d"][:2] == [f"{p[3]:.4f}", "-"]  # precision 0: every prediction of d is wrong
    assert rows["e"] == ["-", "-", "-", "0"]
    for label, average in (("**macro avg**", "macro"), ("**weighted avg**", "weighted")):
        expected = precision_recall_fscore_support(target, pred, average=average, zero_division=0)[:3]
        assert [float(v) for v in rows[label][:3]] == pytest.approx(list(expected), abs=1e-4), label
    table = per_class_table(cm, ["a", "b", "c", "d", "e"])
    assert "e had no samples and no predictions: left out of the macro average" in table.splitlines()[-1]
    assert "d had predictions but no samples" in table.splitlines()[-1]
    # every class present: no footnote, the averages are the last rows (as before)
    full = torch.tensor([[3, 1], [0, 4]])
    assert per_class_table(full, ["x", "y"]).splitlines()[-1].startswith("| **weighted avg**")
