"""The automatic validation split keeps every class in training: a rare class (one image of 41)
was held out whole by the default seed, and the run trained on one class without a word."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from litlab.data.datasets import split_off
from litlab.data.image_folder import ImageFolderDataModule
from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from tests.helpers import write_image_folder


def plain_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The split litlab always made: a seeded permutation, its first ``round(n * fraction)`` held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_out = int(round(n * fraction))
    return sorted(perm[n_out:].tolist()), sorted(perm[:n_out].tolist())


def test_a_class_held_out_whole_gets_its_first_held_out_sample_back():
    labels = [0] * 40 + [1]
    assert plain_split(41, 0.1, 0)[1] == [1, 3, 16, 40]  # seed 0 holds out the only sample of class 1
    keep, out = split_off(labels, 0.1, 0)
    assert out.tolist() == [1, 3, 16]
    assert keep.tolist() == sorted(set(range(41)) - {1, 3, 16})
    # a class with several samples, all held out, gets the first of them back and keeps the rest in val
    labels = [0] * 8 + [1] * 4
    assert plain_split(12, 0.5, 34)[1] == [4, 6, 8, 9, 10, 11]  # seed 34 holds out every sample of class 1
    keep, out = split_off(labels, 0.5, 34)
    assert keep.tolist() == [0, 1, 2, 3, 5, 7, 8] and out.tolist() == [4, 6, 9, 10, 11]

@pytest.mark.parametrize("seed", range(5))
def test_the_split_is_unchanged_when_every_class_keeps_a_training_sample(seed):
    labels = [k % 3 for k in range(30)]
    keep, out = split_off(labels, 0.2, seed)
    assert (keep.tolist(), out.tolist()) == plain_split(30, 0.2, seed)


def test_npz_without_x_val_trains_on_its_rare_class_and_warns_on_the_training_split(tmp_path, caplog):
    """Label 1 never occurs and label 2 once; the hold-out took the 2 as well, unwarned."""
    y = np.array([0] * 40 + [2])
    path = tmp_path / "rare.npz"
    x = np.arange(41 * 4, dtype=np.float32).reshape(41, 1, 2, 2)
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    with caplog.at_level(logging.WARNING, logger="litlab"):
        dm = NpzDataModule(path=str(path), val_fraction=0.1, split_seed=0)
        dm.setup()
    assert dm.splits.train.y.tolist().count(2) == 1
    assert len(dm.splits.train) == 38 and len(dm.splits.val) == 3
    assert "1 of the 3 classes have no training sample (labels 1)" in caplog.text


def test_image_folder_without_val_trains_on_its_rare_class(tmp_path):
    root = write_image_folder(tmp_path / "imgs", splits=("train", "test"), classes=("a",), per_class=40)
    write_image_folder(root, splits=("train", "test"), classes=("zz_rare",), per_class=1)
    dm = ImageFolderDataModule(root=str(root))  # data.val_fraction=0.1, data.split_seed=0
    dm.setup()
    assert dm.class_names == ["a", "zz_rare"]
    assert dm.splits.train.y.tolist().count(1) == 1
    assert len(dm.splits.train) == 38 and len(dm.splits.val) == 3


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_hold_out_of_only_single_sample_classes_is_the_empty_split_error(tmp_path, in_memory):
    root = write_image_folder(tmp_path / "imgs", splits=("train",), classes=("a", "b", "c"), per_class=1)
    dm = ImageFolderDataModule(root=str(root), val_fraction=0.5, in_memory=in_memory)
    with pytest.raises(LitlabError, match=r"has no val/ folder and data.val_fraction=0.5 holds out no images"):
        dm.setup()
