"""Values of data.* checked where they are given, and image files read alike on every path."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from litlab.build import build_data
from litlab.data.base import stats_or_given
from litlab.data.image_files import decode
from litlab.data.image_folder import ImageFolderDataModule
from litlab.data.npz import NpzDataModule
from litlab.data.synthetic import SyntheticDataModule
from litlab.errors import LitlabError
from litlab.prediction.inputs import image_batches
from tests.helpers import write_image_folder, write_npz


@pytest.mark.parametrize("value", [1.5, True, -2, "4", [1, 2]])
def test_a_shift_that_is_not_a_count_of_pixels_is_refused_at_construction(value):
    """1.5 and true failed at the first training batch with a TypeError from torch's pad, after
    all the data was decoded; -2 silently did nothing."""
    with pytest.raises(LitlabError) as e:
        SyntheticDataModule(shape=[1, 8, 8], augment={"shift": value})
    assert str(e.value).startswith(f"data.augment.shift must be an integer >= 0 (a number of pixels), got {value!r}.")


@pytest.mark.parametrize("value", [1, "yes", None])
def test_hflip_must_be_true_or_false(value):
    with pytest.raises(LitlabError, match=r"^data\.augment\.hflip must be true or false, got "):
        SyntheticDataModule(shape=[1, 8, 8], augment={"hflip": value})


def test_unknown_augment_keys_are_named():
    with pytest.raises(LitlabError, match=r"^data\.augment has the key\(s\) rotate, but it takes hflip and shift only"):
        SyntheticDataModule(shape=[1, 8, 8], augment={"rotate": 10})


def test_a_bad_shift_from_the_command_line_stops_the_run_before_any_image_is_read(cfg_factory, tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=2)

    def load(self):
        raise AssertionError("the data was read before data.augment.shift was checked")

    monkeypatch.setattr(ImageFolderDataModule, "load", load)
    cfg = cfg_factory(["data=imagefolder", f"data.root={root}", "data.augment.shift=true"])
    with pytest.raises(LitlabError, match=r"^data\.augment\.shift must be an integer >= 0"):
        build_data(cfg)


def test_a_shift_of_the_image_size_or_more_is_refused_naming_both_numbers():
    """shift=100 on 32x32 images blanked ~90% of the training images (test/loss 1.22 vs 0.0002)."""
    dm = SyntheticDataModule(shape=[1, 6, 9], num_train=16, num_val=4, num_test=4, augment={"shift": 6})
    with pytest.raises(LitlabError) as e:
        dm.setup()
    assert str(e.value).startswith("data.augment.shift=6 shifts images by up to 6 pixels, but the images are 6x9 "
                                   "pixels (height x width)")
    assert "Set data.augment.shift below 6" in str(e.value)
    ok = SyntheticDataModule(shape=[1, 6, 9], num_train=16, num_val=4, num_test=4, augment={"shift": 5})
    ok.setup()
    assert ok.preprocess.augment.shift == 5


@pytest.mark.parametrize("std", [0, -1.0, [1.0, 0.0, 1.0], float("nan")])
def test_a_std_that_is_not_above_0_is_refused_before_any_image_is_read(tmp_path, std):
    """data.std=0 gave "loss became NaN" at step 0."""
    with pytest.raises(LitlabError, match=r"^data\.std must (be above 0|hold finite numbers)"):
        ImageFolderDataModule(root=str(tmp_path / "not-read"), channels=3, std=std)


def test_given_stats_are_checked_against_the_data(tmp_path):
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    with pytest.raises(LitlabError, match=r"^data\.std must be above 0 \(each input is divided by it\), "
                                          r"got \[1, 0, 1\]"):
        stats_or_given(x, "image", None, [1, 0, 1], "data")
    with pytest.raises(LitlabError, match=r"^data\.mean needs a number or one number per channel \(3\), got \[0\.5\]"):
        stats_or_given(x, "image", [0.5], None, "data")
    assert stats_or_given(x, "image", 0.5, [1, 2, 3], "data") == ([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    # the npz source refuses it before the file is read (a path that does not exist is not reached)
    with pytest.raises(LitlabError, match=r"^data\.std must be above 0"):
        NpzDataModule(path=str(tmp_path / "not-read.npz"), std=-1)
    # and a count that does not fit the features once it is
    path = write_npz(tmp_path / "d.npz", kind="sequence")
    with pytest.raises(LitlabError, match=r"^data\.std needs a number or one number per feature"):
        NpzDataModule(path=str(path), std=[1.0] * 99).setup()


def _rgb_jpeg(path, h=12, w=16):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB").save(path, quality=90)
    return path


def test_predict_reads_a_grayscale_model_s_rgb_jpeg_as_training_did(tmp_path):
    """Predict passed the model's size to decode, which then read the JPEG's luma plane (draft)
    while training (data.image_size null) converted its RGB pixels: ~1% of pixels differed."""
    f = _rgb_jpeg(tmp_path / "colour.jpg")
    trained = decode(f, 1, None)
    assert torch.equal(decode(f, 1, (12, 16)), trained)
    _, samples, errors, _ = next(image_batches([f], (1, 12, 16), 1, batch_size=4))
    assert errors == [] and torch.equal(samples[0], trained)


def test_big_jpegs_are_still_read_shrunk(tmp_path):
    f = _rgb_jpeg(tmp_path / "big.jpg", h=64, w=64)
    assert decode(f, 1, (16, 16)).shape == (1, 16, 16)
    assert decode(f, 3, (16, 20)).shape == (3, 16, 20)


def test_streamed_and_in_memory_folders_give_the_same_reason_for_a_bad_file(tmp_path, caplog):
    """Streamed, the reason was left out: ``broken.jpg (OSError)``."""
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    (root / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    reasons = {}
    for memory in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            ImageFolderDataModule(root=str(root), in_memory=memory, num_workers=0).setup()
        line = next(r.getMessage() for r in caplog.records if "broken.jpg" in r.getMessage())
        reasons[memory] = line[line.index("broken.jpg"):].split(";")[0]
    assert reasons[True] == reasons[False]
    assert reasons[False].startswith("broken.jpg (UnidentifiedImageError: cannot identify image file")
