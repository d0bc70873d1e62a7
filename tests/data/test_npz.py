"""npz arrays: shapes decide image or sequence; every malformed file gets a clear error."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from tests.helpers import write_npz


@pytest.mark.parametrize("kind,shape,pkind", [("image", (1, 6, 6), "image"), ("sequence", (10, 2), "sequence"),
                                              ("flat", (1, 12), "sequence")])
def test_shapes_decide_the_kind(tmp_path, kind, shape, pkind):
    dm = NpzDataModule(path=str(write_npz(tmp_path / "a.npz", kind)))
    assert dm.input_shape == shape
    assert dm.preprocess.kind == pkind
    assert dm.num_classes == 3


def test_feature_vectors_are_normalized_column_by_column(tmp_path):
    """(N, F) was read as a sequence (F, 1) with one mean and std for every column: a column in
    the tens of thousands drowned a useful one in the units and training stayed at chance."""
    from litlab.data.preprocess import Preprocess
    from litlab.prediction.inputs import read_npz

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(2, 0.5, 300), rng.normal(5e4, 2e4, 300), rng.normal(-3, 1, 300)], 1).astype(np.float32)
    y = np.arange(300) % 2
    path = tmp_path / "features.npz"
    np.savez(path, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    dm = NpzDataModule(path=str(path), val_fraction=0.1)
    assert dm.input_shape == (1, 3)
    train_x = dm.splits.train.x.numpy()[:, 0, :]
    assert dm.preprocess.mean == pytest.approx(train_x.mean(0), rel=1e-4)
    assert dm.preprocess.std == pytest.approx(train_x.std(0, ddof=1), rel=1e-4)
    # predict reads an (N, F) array the same way
    np.savez(tmp_path / "new.npz", x=x[:5])
    _, samples = read_npz(tmp_path / "new.npz", (1, 3), Preprocess("sequence", dm.preprocess.mean, dm.preprocess.std))
    assert samples.shape == (5, 1, 3) and torch.equal(samples[:, 0], torch.from_numpy(x[:5]))


def test_missing_val_is_split_off(tmp_path):
    path = write_npz(tmp_path / "a.npz", x_val=None, y_val=None)
    dm = NpzDataModule(path=str(path), val_fraction=0.25)
    dm.setup()
    assert len(dm.splits.val) == 10 and len(dm.splits.train) == 30


@pytest.mark.parametrize("replace,match", [
    ({"y_test": None}, r"lacks the array\(s\) y_test"),
    ({"y_val": None}, r"lacks the array\(s\) y_val"),
    ({"y_train": np.zeros(3, dtype=np.int64)}, "y_train has 3 labels but x_train has 40"),
    ({"y_test": -np.ones(10, dtype=np.int64)}, r"labels must lie in \[0, 3\)"),
    ({"y_train": np.zeros(40, dtype=np.float32)}, "whole numbers of dtype float32.*astype"),
    # one training class other than 0 trained to "accuracy 1.0" with a warning only
    ({"y_train": np.full(40, 2), "y_val": np.full(10, 2), "y_test": np.full(10, 2)},
     "every label of y_train is 2, one class; a classifier needs training samples of at least two"),
    ({"y_train": np.zeros(40, dtype=np.int64)}, "every label of y_train is 0, one class"),
    ({"x_test": np.zeros((10, 2, 3, 4, 5), dtype=np.float32)}, "expected .N, F. for feature vectors, .N, L, F. for sequences"),
    ({"x_test": np.zeros((10, 1, 7, 7), dtype=np.float32)}, "differ in shape"),
    # read as 8 channels of 8x3 pixels, silently
    ({"x_train": np.zeros((40, 8, 8, 3), dtype=np.uint8)},
     r"x_train has shape \(40, 8, 8, 3\), images stored channels-last \(N, H, W, C\) by the look of it; litlab reads "
     r"\(N, C, H, W\) and would take 8 channels of 8x3 pixels. Store x_train.transpose\(0, 3, 1, 2\), shaped "
     r"\(40, 3, 8, 8\)"),
    ({"x_train": np.zeros((0, 1, 6, 6), dtype=np.float32), "y_train": np.zeros(0, dtype=np.int64)},
     "x_train holds no samples"),
    ({"x_test": np.zeros((0, 1, 6, 6), dtype=np.float32), "y_test": np.zeros(0, dtype=np.int64)},
     "x_test holds no samples"),
    ({"x_test": np.where(np.arange(10).reshape(10, 1, 1, 1) < 3, np.nan, np.zeros((10, 1, 6, 6))).astype(np.float32)},
     "3 of the 10 samples of x_test hold NaN or infinite values"),
    ({"x_val": np.full((10, 1, 6, 6), np.inf, dtype=np.float32)}, "10 of the 10 samples of x_val hold NaN or infinite"),
    ({"y_train": np.zeros(40, dtype=np.int64), "y_val": np.zeros(10, dtype=np.int64), "y_test": np.zeros(10, dtype=np.int64)},
     "every label of y_train is 0, one class; a classifier needs training samples of at least two"),
    ({"y_train": np.tile([0, 5000, 123456], 14)[:40]},
     r"labels reach 123456 but only 3 distinct values occur in y_train; they look like IDs"),
    ({"x_train": np.zeros((40, 1, 6, 6), dtype=np.uint8)},
     r"x_train is uint8, x_val is float64, x_test is float64\. uint8 images are 8-bit pixels"),
    # trained on the real part only, after a ComplexWarning
    ({"x_train": np.ones((40, 1, 6, 6), dtype=np.complex64)}, r"x_train has dtype complex64; expected real numbers"),
    # reported as NaN or infinite values after an overflow in the float32 cast
    ({"x_train": np.where(np.arange(40).reshape(40, 1, 1, 1) < 3, 1e39, np.zeros((40, 1, 6, 6)))},
     r"3 of the 40 samples of x_train hold values beyond float32's range \(about 3\.4e38; the largest magnitude "
     r"is 1e\+39\), and litlab trains in float32"),
    # labels saved from a pandas column of strings
    ({"y_test": np.array(["a", "b"] * 5, dtype=object)},
     r"y_test is an object \(pickled\) array.*litlab will not unpickle it.*Save it as a numeric array, e\.g\. "
     r"numpy\.asarray\(y_test, dtype=numpy\.int64\), or map class names to integers"),
])
def test_malformed_files_get_clear_errors(tmp_path, replace, match):
    path = write_npz(tmp_path / "a.npz", **replace)
    with pytest.raises(LitlabError, match=match):
        NpzDataModule(path=str(path)).setup()


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(LitlabError, match=r"data\.path is not set"):
        NpzDataModule(path=None)
    with pytest.raises(LitlabError, match="does not exist"):
        NpzDataModule(path=str(tmp_path / "none.npz")).setup()
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    with pytest.raises(LitlabError, match="not a readable .npz"):
        NpzDataModule(path=str(bad)).setup()


@pytest.mark.parametrize("content", [b"hello", pickle.dumps({"x_train": [1, 2]}), b""], ids=["text", "pickle", "empty"])
def test_a_file_that_is_not_an_archive_is_named_as_such(tmp_path, content):
    """numpy said text and pickles hold "pickled (object) data" and suggested loading them unsafely."""
    path = tmp_path / "a.npz"
    path.write_bytes(content)
    with pytest.raises(LitlabError) as e:
        NpzDataModule(path=str(path)).setup()
    assert str(e.value) == (f"data.path={path} is not a readable .npz file: it is not an .npz archive (the zip "
                            f"format that numpy.savez and numpy.savez_compressed write). Save the arrays with "
                            f"numpy.savez(FILE, name=array, ...).")


def test_a_npy_file_is_named_as_such(tmp_path):
    path = tmp_path / "arrays.npz"
    with open(path, "wb") as f:  # a .npy under an .npz name
        np.save(f, np.zeros((4, 1, 6, 6), dtype=np.uint8))
    with pytest.raises(LitlabError, match=r"holds one bare array \(a \.npy file\), not an \.npz archive.*numpy\.savez"):
        NpzDataModule(path=str(path)).setup()


def test_pixel_scale_is_recorded(tmp_path):
    """uint8 images are pixels (scaled by 1/255); any other dtype is used as it is."""
    u8 = {f"x_{s}": np.full((n, 1, 6, 6), 51, dtype=np.uint8) for s, n in (("train", 40), ("val", 10), ("test", 10))}
    dm = NpzDataModule(path=str(write_npz(tmp_path / "u8.npz", **u8)))
    assert dm.preprocess.pixels is True and dm.preprocess.mean == [0.2]
    as_int = {k: v.astype(np.int64) for k, v in u8.items()}
    dm = NpzDataModule(path=str(write_npz(tmp_path / "i64.npz", **as_int)))
    assert dm.preprocess.pixels is False and dm.preprocess.mean == [51.0]
    assert NpzDataModule(path=str(write_npz(tmp_path / "seq.npz", "sequence"))).preprocess.pixels is False


def test_classes_without_training_samples_are_named(tmp_path, caplog):
    y = {"y_train": np.tile([0, 2, 4], 14)[:40], "y_val": np.zeros(10, dtype=np.int64), "y_test": np.full(10, 4)}
    with caplog.at_level(logging.WARNING):
        dm = NpzDataModule(path=str(write_npz(tmp_path / "gaps.npz", **y)))
        assert dm.num_classes == 5
    assert "2 of the 5 classes have no training sample (labels 1, 3)" in caplog.text


def test_augmentation_of_sequences_is_refused(tmp_path):
    """data.augment on (N, L, F) arrays was silently ignored."""
    path = write_npz(tmp_path / "seq.npz", "sequence")
    with pytest.raises(LitlabError, match=r"data\.augment \(hflip=True, shift=0\) flips and shifts images, and this "
                                          r"data gives sequences or feature vectors of shape \(10, 2\)"):
        NpzDataModule(path=str(path), augment={"hflip": True}).setup()
    NpzDataModule(path=str(path), augment={"hflip": False, "shift": 0}).setup()


def test_features_on_a_tiny_scale_are_normalized_to_unit_std(tmp_path):
    """Stats rounded to 6 decimals gave mean 1e-6 and std 1e-6 for features around 5e-7 with a
    spread of 1e-8: they reached the model as a near-constant 0.5 and test accuracy was 0.40."""
    rng = np.random.default_rng(0)
    y = np.arange(400) % 2
    x = (5e-7 + rng.normal(size=(400, 2)) * 1e-8 + 1.5e-8 * y[:, None]).astype(np.float32)
    x = np.concatenate([x, np.full((400, 1), 3.0, np.float32)], 1)  # a constant feature
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    dm = NpzDataModule(path=str(path))
    normalized = dm.preprocess(dm.splits.train.x).numpy()[:, 0, :]
    assert normalized[:, :2].mean(0) == pytest.approx([0, 0], abs=1e-3)
    assert normalized[:, :2].std(0, ddof=1) == pytest.approx([1, 1], rel=1e-4)
    # the constant feature is centred and left at its scale, not divided by a tiny std
    assert dm.preprocess.mean[2] == 3.0 and dm.preprocess.std[2] == 1.0
    assert np.abs(normalized[:, 2]).max() == 0


def test_arrays_under_other_names_are_named_in_a_warning(tmp_path, caplog):
    """x_valid and y_valid were ignored in silence, and training held out part of x_train instead."""
    extra = {"x_valid": np.zeros((10, 1, 6, 6), np.float32), "y_valid": np.zeros(10, np.int64),
             "feature_names": np.array(["a", "b"])}
    path = write_npz(tmp_path / "a.npz", x_val=None, y_val=None, **extra)
    with caplog.at_level(logging.WARNING):
        dm = NpzDataModule(path=str(path))
        dm.setup()
        assert len(dm.splits.val) == 4
    assert (f"data.path={path}: the array(s) feature_names, x_valid, y_valid are not used; litlab reads x_train, "
            f"y_train, x_test, y_test and optionally x_val, y_val; without x_val and y_val, data.val_fraction=0.1 "
            f"of the training arrays is held out for validation. Rename any that hold one of these splits."
            ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        NpzDataModule(path=str(write_npz(tmp_path / "b.npz"))).setup()
    assert "not used" not in caplog.text


def test_an_unused_object_array_does_not_make_the_file_unreadable(tmp_path):
    """Every member was loaded: feature names stored as objects made the whole file unreadable,
    for training and for predict."""
    from litlab.prediction.inputs import read_npz

    names = np.array(["a", None], dtype=object)
    dm = NpzDataModule(path=str(write_npz(tmp_path / "a.npz", feature_names=names)))
    assert dm.num_classes == 3
    np.savez(tmp_path / "new.npz", x=np.zeros((2, 1, 6, 6), np.float32), feature_names=names)
    key, samples = read_npz(tmp_path / "new.npz", (1, 6, 6), dm.preprocess)
    assert key == "x" and samples.shape == (2, 1, 6, 6)
