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
