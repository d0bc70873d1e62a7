"""npz arrays: shapes decide image or sequence; every malformed file gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from tests.helpers import write_npz


@pytest.mark.parametrize("kind,shape,pkind", [("image", (1, 6, 6), "image"), ("sequence", (10, 2), "sequence"),
                                              ("flat", (12, 1), "sequence")])
def test_shapes_decide_the_kind(tmp_path, kind, shape, pkind):
    dm = NpzDataModule(path=str(write_npz(tmp_path / "a.npz", kind)))
    assert dm.input_shape == shape
    assert dm.preprocess.kind == pkind
    assert dm.num_classes == 3


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
    ({"y_train": np.zeros(40, dtype=np.float32)}, "integer class indices"),
    ({"x_test": np.zeros((10, 2, 3, 4, 5), dtype=np.float32)}, "expected .N, L. or .N, L, F."),
    ({"x_test": np.zeros((10, 1, 7, 7), dtype=np.float32)}, "differ in shape"),
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
