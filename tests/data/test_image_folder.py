"""Image folders: splits, decoding, and a clear error for each kind of unusable folder."""

from __future__ import annotations

import logging

import pytest
import torch

from litlab.data.datasets import FileSplit, TensorSplit
from litlab.data.image_folder import ImageFolderDataModule
from litlab.errors import LitlabError
from tests.helpers import write_image_folder


def test_reads_splits_into_memory_as_uint8(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=4)
    dm = ImageFolderDataModule(root=str(root), batch_size=5)
    dm.setup()
    assert dm.class_names == ["a", "b", "c"]
    assert dm.input_shape == (1, 8, 8)
    assert isinstance(dm.splits.train, TensorSplit) and dm.splits.train.x.dtype == torch.uint8
    assert len(dm.splits.train) == len(dm.splits.val) == len(dm.splits.test) == 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 8, 8) and y.dtype == torch.long


def test_missing_val_is_split_from_train_with_the_seed(tmp_path):
    root = write_image_folder(tmp_path / "imgs", splits=("train", "test"), per_class=10)
    a = ImageFolderDataModule(root=str(root), val_fraction=0.2, split_seed=3)
    b = ImageFolderDataModule(root=str(root), val_fraction=0.2, split_seed=3)
    a.setup(), b.setup()
    assert len(a.splits.val) == 6 and len(a.splits.train) == 24
    assert torch.equal(a.splits.val.x, b.splits.val.x)


def test_resize_and_rgb(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2, size=12)
    dm = ImageFolderDataModule(root=str(root), image_size=[6, 10], channels=3)
    assert dm.input_shape == (3, 6, 10)


def test_streaming_mode_gives_the_same_batches(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    mem = ImageFolderDataModule(root=str(root), in_memory=True, batch_size=100)
    disk = ImageFolderDataModule(root=str(root), in_memory=False, batch_size=100, num_workers=0)
    disk.setup()
    assert isinstance(disk.splits.test, FileSplit)
    xm, ym = next(iter(mem.test_dataloader()))
    xd, yd = next(iter(disk.test_dataloader()))
    assert torch.equal(xm, xd) and torch.equal(ym, yd)
    assert mem.preprocess.mean == disk.preprocess.mean


def test_bad_files_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with caplog.at_level(logging.WARNING):
        dm = ImageFolderDataModule(root=str(root))
        dm.setup()
    assert len(dm.splits.train) == 9
    assert "notes.txt" in caplog.text and "broken.png" in caplog.text


def test_bad_files_fail_when_asked(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(LitlabError, match=r"notes\.txt.*data\.on_bad_file=skip"):
        ImageFolderDataModule(root=str(root), on_bad_file="fail").setup()


@pytest.mark.parametrize("make,match", [
    (lambda r: None, "is not a folder"),
    (lambda r: r.mkdir(), "has no train/ folder"),
    (lambda r: (r / "train").mkdir(parents=True), "has no class folders"),
    (lambda r: [(r / "train" / c).mkdir(parents=True) for c in "ab"], r"class folder .*a is empty"),
    (lambda r: write_image_folder(r, classes=("only",)), r"train has one class folder \(only\); a classifier needs at least two"),
])
def test_unusable_folders_get_clear_errors(tmp_path, make, match):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(LitlabError, match=match):
        ImageFolderDataModule(root=str(root)).setup()


def test_val_and_test_classes_must_be_training_classes(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    write_image_folder(root, splits=("test",), classes=("a", "b", "zebra"), per_class=2)
    with pytest.raises(LitlabError, match=r"test has class folder\(s\) zebra not among the classes of .*train \(a, b, c\); a class "
                                          r"needs training images"):
        ImageFolderDataModule(root=str(root)).setup()


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_test_split_without_some_class_is_served_with_the_training_classes(tmp_path, caplog, how):
    """A test set lacking a rare class could not be used: an empty folder was an error, and
    removing it was one too (the class lists differed)."""
    import shutil

    root = write_image_folder(tmp_path / "imgs", per_class=3)
    shutil.rmtree(root / "test" / "b")
    if how == "empty":
        (root / "test" / "b").mkdir()
    with caplog.at_level(logging.WARNING, logger="litlab"):
        dm = ImageFolderDataModule(root=str(root))
        dm.setup()
    assert dm.class_names == ["a", "b", "c"]
    assert sorted(torch.as_tensor([y for _, y in dm.splits.test]).tolist()) == [0, 0, 0, 2, 2, 2]
    assert "test has no images of class(es) b; its accuracy covers the other classes" in caplog.text


def test_missing_root_names_the_key():
    with pytest.raises(LitlabError, match=r"data\.root is not set"):
        ImageFolderDataModule(root=None)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    import litlab.data.image_files as image_files

    root = write_image_folder(tmp_path / "imgs", per_class=2)
    monkeypatch.setattr(image_files, "MAX_PIXELS", 32)
    with pytest.raises(LitlabError, match="pixel limit"):
        ImageFolderDataModule(root=str(root), on_bad_file="fail").setup()


def test_files_inside_hidden_folders_are_left_out(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    write_image_folder(root / "train" / "a" / ".ipynb_checkpoints", splits=("x",), classes=("y",), per_class=5)
    dm = ImageFolderDataModule(root=str(root))
    dm.setup()
    assert len(dm.splits.train) == 9


@pytest.mark.parametrize("in_memory", [True, False])
def test_images_of_several_sizes_need_image_size(tmp_path, in_memory):
    """Without data.image_size, images of another size are an error naming the key (they used to
    be skipped as unreadable, or to fail when streamed); with it, they are all resized."""
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    write_image_folder(root, splits=("train",), classes=("b",), per_class=2, size=12, seed=1)  # 0.png, 1.png replaced
    with pytest.raises(LitlabError, match=r"differ in size \(8x8 pixels: 25 file\(s\).*12x12 pixels: 2 file\(s\), "
                                          r"e\.g\. .*train/b/0\.png\).*data\.image_size=8 or data\.image_size=\[8,8\]"):
        ImageFolderDataModule(root=str(root), in_memory=in_memory).setup()
    dm = ImageFolderDataModule(root=str(root), in_memory=in_memory, image_size=8)
    dm.setup()
    assert dm.input_shape == (1, 8, 8) and len(dm.splits.train) == 9


def test_a_test_split_of_another_size_is_an_error(tmp_path):
    root = write_image_folder(tmp_path / "imgs", splits=("train", "val"), per_class=3)
    write_image_folder(root, splits=("test",), per_class=2, size=16)
    with pytest.raises(LitlabError, match=r"8x8 pixels: 18 file.*16x16 pixels: 6 file.*test/a/0\.png"):
        ImageFolderDataModule(root=str(root)).setup()


def test_a_class_left_without_readable_images_is_an_error(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    for f in (root / "train" / "c").iterdir():
        f.unlink()
    (root / "train" / "c" / "readme.txt").write_text("the images come later")
    with pytest.raises(LitlabError, match=r"no readable image is left in the training class folder\(s\) .*train/c"):
        ImageFolderDataModule(root=str(root)).setup()


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_split_without_readable_images_is_named(tmp_path, in_memory):
    """Streamed, such a split used to become an empty validation set."""
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    for f in (root / "val").rglob("*.png"):
        f.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(LitlabError, match=r"no readable images in val/"):
        ImageFolderDataModule(root=str(root), in_memory=in_memory).setup()


def test_16_bit_pngs_are_scaled_to_8_bits_and_float_images_refused(tmp_path):
    """Pillow's convert("L") clipped 16-bit pixels at 255: every such image came out white and
    training stayed at chance without a word."""
    import numpy as np
    from PIL import Image

    from litlab.data.image_files import decode

    pixels = np.array([[0, 257, 20000], [50000, 65535, 128]], np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    expected = torch.tensor([[[0, 1, 78], [195, 255, 0]]], dtype=torch.uint8)  # round(v / 257)
    assert torch.equal(decode(tmp_path / "deep.png", 1, None), expected)
    assert torch.equal(decode(tmp_path / "deep.png", 3, None), expected.expand(3, -1, -1))
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match="32-bit float pixels have no fixed range"):
        decode(tmp_path / "float.tiff", 1, None)


@pytest.mark.parametrize("train_form,test_form,flag", [("NFD", "NFC", "nfd"), ("NFC", "NFD", "nfc")])
def test_class_folders_that_differ_only_in_unicode_encoding_are_named_as_such(tmp_path, train_form, test_form, flag):
    """café in train/ as e plus a combining accent (NFD, zips from macOS) and as é in test/ was
    'not among the classes of train (b, café)': two names that print the same."""
    import unicodedata

    train_name, test_name = (unicodedata.normalize(f, "café") for f in (train_form, test_form))
    root = write_image_folder(tmp_path / "imgs", splits=("train",), classes=("b", train_name), per_class=2)
    write_image_folder(root, splits=("test",), classes=("b", test_name), per_class=2)
    with pytest.raises(LitlabError) as e:
        ImageFolderDataModule(root=str(root)).setup()
    msg = str(e.value)
    assert (f"test has class folder(s) whose names differ from those of {root / 'train'} only in their Unicode "
            f"encoding: {ascii(test_name)} ({test_form}; {ascii(train_name)} ({train_form}) in {root / 'train'})") in msg
    assert msg.endswith(f"Rename the folder(s) under {root / 'test'} to the spelling of {root / 'train'}, e.g. with "
                        f"convmv -r -f utf8 -t utf8 --{flag} --notest {root / 'test'}.")
    assert "not among the classes" not in msg


def test_streaming_leaves_out_what_decoding_would_refuse_as_memory_does(tmp_path, caplog):
    """A float TIFF (or an image over the pixel limit) was skipped in memory but, streamed, failed
    in a loader worker mid-epoch with a traceback naming no file."""
    import numpy as np
    from PIL import Image

    root = write_image_folder(tmp_path / "imgs", per_class=3)
    Image.fromarray(np.random.rand(8, 8).astype("float32"), mode="F").save(root / "test" / "a" / "zz_float.tif")
    counts = {}
    for memory in (True, False):
        with caplog.at_level(logging.WARNING):
            dm = ImageFolderDataModule(root=str(root), in_memory=memory, num_workers=0)
            dm.setup()
        counts[memory] = len(dm.splits.test)
        assert "zz_float.tif" in caplog.text and "float pixels have no fixed range" in caplog.text
        caplog.clear()
    assert counts == {True: 9, False: 9}


def test_a_file_that_fails_mid_epoch_is_named_in_one_paragraph(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    dm = ImageFolderDataModule(root=str(root), in_memory=False, num_workers=0)
    dm.setup()
    dm.splits.test.files[0].write_bytes(dm.splits.test.files[0].read_bytes()[:40])  # cut after the header
    with pytest.raises(LitlabError, match=r"^data\.root: .*\.png could not be read while the run was reading its "
                                          r"images \(.*\)\. Remove or replace it"):
        dm.splits.test[0]


def test_a_folder_without_test_says_its_test_figures_are_validation_ones(cfg_factory, tmp_path, caplog):
    """Without test/, test/acc came from the split that also picked best.ckpt, and only a warning
    among the start-up lines said so; the record and the summary say it now."""
    import json

    from litlab.training import train

    root = write_image_folder(tmp_path / "imgs", splits=("train",), per_class=8)
    with caplog.at_level(logging.INFO, logger="litlab.reporting.summary"):
        train(cfg_factory(["model=mlp", "data=imagefolder", f"data.root={root}", "trainer.max_epochs=1"]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_split"] == "val" and 0 <= metrics["test/acc"] <= 1
    (summary,) = [r for r in caplog.records if r.name == "litlab.reporting.summary"]  # the log file's copy
    assert getattr(summary, "file_only", False)
    assert "test split:            the validation split (no test/ folder)" in summary.getMessage()
