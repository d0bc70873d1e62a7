"""Synthetic data of the smallest shapes is still learnable: at noise 0 no two classes share samples."""

from __future__ import annotations

import pytest
import torch

from litlab.data.synthetic import SyntheticDataModule

TINY = [("image", [1, 1, 1]), ("image", [1, 2, 2]), ("sequence", [1, 1]), ("sequence", [2, 1])]


def noise_free(kind: str, shape: list[int], num_classes: int) -> SyntheticDataModule:
    dm = SyntheticDataModule(kind=kind, shape=shape, num_classes=num_classes, num_train=1000, num_val=8,
                             num_test=300, noise=0)
    dm.setup()
    return dm


@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("kind,shape", TINY)
def test_noise_free_tiny_shapes_are_classified_perfectly_by_the_nearest_sample(kind, shape, num_classes):
    """One pixel gave every class the level +-1 (two classes: both -1), and a random gain slid
    the levels of single-value sequences into each other: runs ended near chance at noise 0."""
    dm = noise_free(kind, shape, num_classes)
    train, test = dm.splits.train, dm.splits.test
    nearest = torch.cdist(test.x.flatten(1), train.x.flatten(1)).argmin(1)
    assert (train.y[nearest] == test.y).float().mean().item() == 1.0


@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("kind,shape", [("image", [1, 1, 1]), ("sequence", [1, 1])])
def test_single_value_classes_hold_disjoint_intervals(kind, shape, num_classes):
    dm = noise_free(kind, shape, num_classes)
    x, y = dm.splits.train.x.flatten(), dm.splits.train.y
    spans = sorted((x[y == k].min().item(), x[y == k].max().item()) for k in range(num_classes))
    assert len(spans) == num_classes
    # each class's values end before the next class's begin, with a clear gap: a fifth of a class's share of the range
    gaps = [nxt[0] - cur[1] for cur, nxt in zip(spans, spans[1:])]
    assert min(gaps) > 0.2 * (spans[-1][1] - spans[0][0]) / num_classes


@pytest.mark.parametrize("kind,shape,train_sum,test_abs_sum", [
    ("image", [1, 8, 8], -1392.3236787840724, 842.5827662497759),
    ("sequence", [16, 3], -59.84079469740391, 363.49938417226076),
    ("image", [1, 1, 2], -132.95668283104897, 59.92238539457321),
])
def test_data_of_shapes_with_a_pattern_is_what_it_was(kind, shape, train_sum, test_abs_sum):
    """The fix for single values leaves every other shape's data (and the results made with it) as it was."""
    dm = SyntheticDataModule(kind=kind, shape=shape, num_classes=4, num_train=64, num_val=8, num_test=8, noise=0.5)
    dm.setup()
    assert dm.splits.train.x.double().sum().item() == pytest.approx(train_sum, rel=1e-6)
    assert dm.splits.test.x.double().abs().sum().item() == pytest.approx(test_abs_sum, rel=1e-6)
