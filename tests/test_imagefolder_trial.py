"""Image-folder findings of a user trial: colour read as grayscale, loose files, the order of the
folder checks, values refused before torch, and the eval message for images of another size."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from litlab.data.early_checks import check_data_given
from litlab.data.image_folder import ImageFolderDataModule
from litlab.errors import LitlabError
from tests.conftest import make_cfg, refused_before_torch
from tests.helpers import write_image_folder


def write_colour_folder(root: Path, colours=((200, 0, 0), (0, 105, 0)), size: int = 8, per_class: int = 3,
                        splits=("train", "val", "test")) -> Path:
    """Class ``red`` and class ``green`` images of about equal brightness (grayscale ~60 both)."""
    for split in splits:
        for name, rgb in zip(("green", "red"), colours[::-1]):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.zeros((size, size, 3), dtype=np.uint8) + np.array(rgb, dtype=np.uint8)
                Image.fromarray(arr, mode="RGB").save(d / f"{i}.png")
    return root


def loaded(caplog, **kwargs) -> ImageFolderDataModule:
    with caplog.at_level(logging.INFO, logger="litlab"):
        dm = ImageFolderDataModule(**kwargs)
        dm.setup()
    return dm


# --- 1. colour files read with data.channels=1 ------------------------------------------------------

def test_colour_images_read_as_grayscale_are_named_in_one_warning(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "imgs")
    dm = loaded(caplog, root=str(root), batch_size=4, channels=1)
    assert dm.input_shape == (1, 8, 8)
    said = [r.getMessage() for r in caplog.records if "data.channels=1 reads the images as grayscale" in r.getMessage()]
    assert len(said) == 1
    assert f"e.g. {root / 'train' / 'green' / '0.png'}, mode RGB" in said[0]
    assert "A new run (without ckpt_path) with data.channels=3 or auto trains on the colours" in said[0]


@pytest.mark.parametrize("how", ["channels3", "grey_rgb", "grey_l"])
def test_no_colour_warning_for_rgb_reads_and_grey_files(tmp_path, caplog, how):
    """No word when the colours are used (channels=3), nor for files that hold no colour: RGB
    files of grey pixels (scans) and grayscale files."""
    if how == "grey_l":
        root = write_image_folder(tmp_path / "imgs", per_class=2)
    else:
        grey = ((60, 60, 60), (90, 90, 90)) if how == "grey_rgb" else ((200, 0, 0), (0, 105, 0))
        root = write_colour_folder(tmp_path / "imgs", colours=grey)
    loaded(caplog, root=str(root), channels=3 if how == "channels3" else 1)
    assert "reads the images as grayscale" not in caplog.text


def test_a_colour_palette_counts_as_colour_and_a_grey_one_does_not(tmp_path):
    from litlab.data.colour_channels import colour_file

    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").convert("P")
    grey.save(tmp_path / "grey.png")
    coloured = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8) + np.array([0, 0, 255], dtype=np.uint8))
    coloured.convert("P", palette=Image.ADAPTIVE).save(tmp_path / "blue.png")
    assert Image.open(tmp_path / "blue.png").mode == "P"
    assert colour_file([tmp_path / "grey.png"]) is None
    assert colour_file([tmp_path / "grey.png", tmp_path / "blue.png"]) == (tmp_path / "blue.png", "P")


def test_channels_auto_reads_colour_folders_in_rgb_and_grey_ones_in_grayscale(tmp_path, caplog):
    colour = write_colour_folder(tmp_path / "colour")
    dm = loaded(caplog, root=str(colour), channels="auto")
    assert dm.input_shape == (3, 8, 8) and dm.describe()["preprocess"]["channels"] == 3
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data.channels=auto")]
    assert said == ["data.channels=auto: 3 (RGB files found, e.g. train/green/0.png)"]
    assert "reads the images as grayscale" not in caplog.text
    caplog.clear()
    grey = write_image_folder(tmp_path / "grey", per_class=2)
    dm = loaded(caplog, root=str(grey), channels="auto")
    assert dm.input_shape == (1, 8, 8) and dm.describe()["preprocess"]["channels"] == 1
    assert "data.channels=auto: 1 (no colour in 6 training files: up to 8 of each of 3 classes)" in caplog.text


@pytest.mark.parametrize("channels", ["auto", 1])
def test_an_evaluation_reads_in_the_checkpoints_channels_without_a_colour_warning(tmp_path, caplog, channels):
    """A checkpoint's evaluation reads its images in the channels it was trained on (its record),
    not in those its files would choose (colour files, a grayscale model), and does not warn of
    colour read as grayscale: the model was trained so."""
    from litlab.data.preprocess import Preprocess

    root = write_colour_folder(tmp_path / "imgs", splits=("test",))
    dm = ImageFolderDataModule(root=str(root), channels=channels)
    dm.trained = {"class_names": ["green", "red"], "input_shape": [1, 8, 8],
                  "preprocess": Preprocess("image", [0.5], [0.25], channels=1, pixels=True).to_dict()}
    with caplog.at_level(logging.INFO, logger="litlab"):
        dm.setup()
    assert dm.input_shape == (1, 8, 8) and dm.preprocess.channels == 1
    assert "grayscale" not in caplog.text and "data.channels=auto" not in caplog.text


def test_a_run_with_channels_auto_resumes_and_evaluates_in_rgb(tmp_path):
    import torch

    from litlab.evaluation import evaluate
    from litlab.training import train

    root = write_colour_folder(tmp_path / "imgs", per_class=4)
    args = ["model=mlp", "data=imagefolder", f"data.root={root}", "data.channels=auto", "logger=none"]
    run = tmp_path / "run"
    train(make_cfg([*args, "trainer.max_epochs=1"], run, tmp_path / "data"))
    last = run / "checkpoints" / "last.ckpt"
    record = torch.load(last, weights_only=True)["litlab"]
    assert record["data"]["input_shape"] == [3, 8, 8] and record["data"]["preprocess"]["channels"] == 3
    assert record["config"]["data"]["channels"] == "auto"
    train(make_cfg([*args, "trainer.max_epochs=2", "ckpt_path=last"], run, tmp_path / "data"))  # not refused
    assert torch.load(last, weights_only=True)["epoch"] == 1
    only_test = tmp_path / "new"
    shutil.copytree(root / "test", only_test / "test")
    cfg = make_cfg([f"ckpt_path={last}"], tmp_path / "ev", tmp_path / "data", config_name="eval", fast=False)
    with torch.no_grad():
        metrics = evaluate(cfg, [f"data.root={only_test}"])
    assert "test/acc" in metrics


def test_a_grayscale_run_from_before_the_auto_default_resumes_in_grayscale(tmp_path, caplog):
    """A run that read its colour files with data.channels=1 (the default before ``auto``) resumed
    under the default ``auto`` goes on in grayscale: ``auto`` would read them in RGB, and the
    data-settings comparison refused the resume ("data.channels 1 in the checkpoint, auto here")."""
    import torch

    from litlab.training import train

    root = write_colour_folder(tmp_path / "imgs", per_class=4)
    args = ["model=mlp", "data=imagefolder", f"data.root={root}", "logger=none"]
    run = tmp_path / "run"
    train(make_cfg([*args, "data.channels=1", "trainer.max_epochs=1"], run, tmp_path / "data"))
    last = run / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO, logger="litlab"):
        train(make_cfg([*args, "trainer.max_epochs=2", "ckpt_path=last"], run, tmp_path / "data"))  # the default
    record = torch.load(last, weights_only=True)
    assert record["epoch"] == 1 and record["litlab"]["data"]["input_shape"] == [1, 8, 8]
    assert "resuming with the run's data.channels=1: the run was trained in grayscale" in caplog.text
    assert "a new run (without ckpt_path) with data.channels=auto or 3 would use the colours" in caplog.text
    assert "Set data.channels=3 (or auto)" not in caplog.text  # a resume with 3 is refused


def _grey_auto_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A run trained under data.channels=auto on grey files (it read 1 channel), after which the
    first training file of class a turned to colour."""
    root = write_image_folder(tmp_path / "imgs", per_class=4)
    args = ["model=mlp", "data=imagefolder", f"data.root={root}", "logger=none"]
    from litlab.training import train

    train(make_cfg([*args, "trainer.max_epochs=1"], tmp_path / "run", tmp_path / "data"))
    colour = np.zeros((8, 8, 3), dtype=np.uint8) + np.array([200, 0, 0], dtype=np.uint8)
    Image.fromarray(colour, mode="RGB").save(root / "train" / "a" / "0.png")
    return tmp_path / "run", args


def test_an_auto_run_resumes_with_the_channels_it_used_after_a_file_turned_colour(tmp_path, caplog):
    """The run stored "auto"; a resume chose again from the folder (now 3) and was refused for
    another sample shape. It goes on with the 1 channel its checkpoint recorded."""
    import torch

    from litlab.training import train

    run, args = _grey_auto_run(tmp_path)
    with caplog.at_level(logging.INFO, logger="litlab"):
        train(make_cfg([*args, "trainer.max_epochs=2", "ckpt_path=last"], run, tmp_path / "data"))
    record = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert record["epoch"] == 1 and record["litlab"]["data"]["input_shape"] == [1, 8, 8]
    assert "resuming with the run's data.channels=1" in caplog.text


def test_an_auto_run_resumed_with_a_number_is_judged_by_the_number_it_used(tmp_path):
    """data.channels=1 for an auto run that read 1: accepted (was refused as "auto in the
    checkpoint, 1 here"); 3: refused, naming the 1 the run used."""
    import torch

    from litlab.training import train

    run, args = _grey_auto_run(tmp_path)
    with pytest.raises(LitlabError, match=r"data\.channels auto in the checkpoint, which read the images with 1 "
                                          r"channel\(s\) \(data\.channels=1\), 3 here"):
        train(make_cfg([*args, "data.channels=3", "trainer.max_epochs=2", "ckpt_path=last"], run, tmp_path / "data"))
    train(make_cfg([*args, "data.channels=1", "trainer.max_epochs=2", "ckpt_path=last"], run, tmp_path / "data"))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_auto_finds_colour_beyond_the_first_file_of_each_class(tmp_path, caplog):
    """10 of 12 training images per class in colour, the first (and second) grey: auto read them
    in grayscale, as it looked at the first file of each class only."""
    root = write_colour_folder(tmp_path / "imgs", per_class=12, splits=("train",))
    for name in ("green", "red"):
        for i in (0, 1):
            Image.fromarray(np.full((8, 8), 60, dtype=np.uint8), mode="L").convert("RGB").save(
                root / "train" / name / f"{i}.png")
    dm = loaded(caplog, root=str(root), channels="auto")
    assert dm.input_shape == (3, 8, 8)


def test_the_colour_sample_is_at_most_8_files_of_20_classes_spread_evenly():
    from litlab.data.colour_channels import colour_sample

    files = [Path(f"c{k:02d}/{i:03d}.png") for k in range(30) for i in range(100)]
    labels = [k for k in range(30) for _ in range(100)]
    picked = colour_sample(files, labels)
    assert len(picked) == 160 and len(set(picked)) == 160
    classes = sorted({p.parent.name for p in picked})
    assert len(classes) == 20 and classes[0] == "c00" and classes[-1] == "c29"
    assert [p.name for p in picked[:8]] == ["000.png", "014.png", "028.png", "042.png", "057.png", "071.png",
                                            "085.png", "099.png"]
    assert colour_sample(files[:3], labels[:3]) == files[:3]  # fewer than 8: all of them


def test_a_mean_of_one_number_per_grey_channel_names_what_auto_chose(tmp_path):
    root = write_colour_folder(tmp_path / "imgs", splits=("train",))
    with pytest.raises(LitlabError, match=r"^data\.mean needs a number or one number per channel \(3\), got "
                                          r"\[0\.5\]\. data\.channels=auto chose 3 \(colour files found, e\.g\. "
                                          r"train/green/0\.png\); data\.channels=1 reads the images in grayscale"):
        ImageFolderDataModule(root=str(root), channels="auto", mean=[0.5], std=[0.25]).setup()


def test_the_python_default_of_channels_is_auto_as_in_the_yaml(tmp_path):
    root = write_colour_folder(tmp_path / "imgs", splits=("train",))
    dm = ImageFolderDataModule(root=str(root))
    dm.setup()
    assert dm.input_shape == (3, 8, 8)


def test_init_from_a_grayscale_cnn_names_data_channels(tmp_path):
    """A first layer of 1 input channel in the file and 3 in the net (auto chose 3 for colour
    images) names data.channels=1, the file's."""
    import torch

    from litlab.init_weights import InitFrom, _kept_fresh

    theirs = {"features.0.0.weight": torch.zeros(32, 1, 3, 3), "head.weight": torch.zeros(2, 32)}
    own = {"features.0.0.weight": torch.zeros(32, 3, 3, 3), "head.weight": torch.zeros(2, 32)}
    init = InitFrom(tmp_path / "g.ckpt", {"litlab": {"data": {"class_names": ["a", "b"], "input_shape": [1, 8, 8]}}})
    with pytest.raises(LitlabError, match=r"features\.0\.0\.weight: \(32, 1, 3, 3\) in the file, \(32, 3, 3, 3\) "
                                          r"in the net.* Set data\.channels=1, the file's, to read them as that run "
                                          r"did\.$"):
        _kept_fresh(own, theirs, init, 2)
    own["features.0.0.weight"] = torch.zeros(16, 1, 3, 3)  # another width: no word of data.channels
    with pytest.raises(LitlabError) as other:
        _kept_fresh(own, theirs, init, 2)
    assert "data.channels" not in str(other.value)


# --- 2. image files directly in train/, val/ or test/ ------------------------------------------------

def test_images_outside_the_class_folders_are_counted_and_named(tmp_path, caplog):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    for i in range(4):
        shutil.copy(root / "train" / "a" / "0.png", root / "train" / f"loose{i}.png")
    shutil.copy(root / "test" / "a" / "0.png", root / "test" / "stray.JPG")
    (root / "train" / "notes.txt").write_text("not an image, not counted")
    dm = loaded(caplog, root=str(root))
    assert len(dm.splits.train) == 6  # the loose files are still not used
    said = [r.getMessage() for r in caplog.records if "not in a class folder" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith(f"data.root: 5 image file(s) lie directly in train/ or val/ or test/ of {root}")
    assert f"{root / 'train' / 'loose0.png'}, {root / 'train' / 'loose1.png'}, " in said[0]
    assert "and 2 more" in said[0] and "notes.txt" not in said[0]


def test_no_loose_file_warning_for_a_tidy_folder(tmp_path, caplog):
    loaded(caplog, root=str(write_image_folder(tmp_path / "imgs", per_class=2)))
    assert "not in a class folder" not in caplog.text


# --- 3. an empty training class folder: the refusal only --------------------------------------------

def test_an_empty_training_class_is_refused_before_val_and_test_are_compared(tmp_path, caplog):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    (root / "train" / "emptyclass").mkdir()
    with caplog.at_level(logging.WARNING, logger="litlab"), pytest.raises(
            LitlabError, match=r"^data\.root: class folder .*train/emptyclass is empty\."):
        ImageFolderDataModule(root=str(root)).setup()
    assert "has no images of class" not in caplog.text


# --- 4. refused before torch and before the run's folder --------------------------------------------

def _cfg(tmp_path: Path, *overrides: str):
    return make_cfg(["data=imagefolder", *overrides], tmp_path / "run", tmp_path / "data")


BAD_VALUES = [
    ("data.channels=three", r"^data\.channels must be 1 \(grayscale\), 3 \(RGB\) or auto \(3 when the training "
                            r"images are in colour\), got 'three'\.$"),
    ("data.channels=2", r"^data\.channels must be 1 \(grayscale\), 3 \(RGB\) or auto .*, got 2\.$"),
    ("data.image_size=-5", r"^data\.image_size must be null, a positive integer or \[H, W\], got -5\.$"),
    ("data.in_memory=yes", r"^data\.in_memory must be auto, true or false, got 'yes'\.$"),
    ("data.augment.hflip=maybe", r"^data\.augment\.hflip must be true or false, got 'maybe'\."),
    ("data.augment.shift=-1", r"^data\.augment\.shift must be an integer >= 0 \(a number of pixels\), got -1\."),
    ("data.augment.shift=1.5", r"^data\.augment\.shift must be an integer >= 0 \(a number of pixels\), got 1\.5\."),
    ("data.mean=[0.5]", r"^data\.mean needs a number or one number per channel \(3\), got \[0\.5\]\.$"),
]


@pytest.mark.parametrize("override,match", BAD_VALUES)
def test_bad_values_are_refused_by_the_early_check_in_the_modules_words(tmp_path, override, match):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    cfg = _cfg(tmp_path, f"data.root={root}", override, *(["data.channels=3"] if "mean" in override else []))
    with pytest.raises(LitlabError, match=match) as early:
        check_data_given(cfg)
    values = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "_target_"}
    with pytest.raises(LitlabError) as module:  # the data module's own check, the same sentence
        ImageFolderDataModule(**values)
    assert str(early.value) == str(module.value)


def _flat(root: Path) -> None:
    write_image_folder(root, classes=("a",), per_class=2)
    for f in (root / "train" / "a").iterdir():
        f.rename(root / "train" / f.name)
    (root / "train" / "a").rmdir()


LAYOUTS = [
    ("root_is_train", r"has no train/ folder\. .* is itself the train/ folder: pass the folder that holds it, "
                      r"data\.root=.*/imgs\.$"),
    ("flat", r"train has no class folders \(2 image file\(s\) lie directly in it\)\. Put each class's images in"),
    ("one_class", r"train has one class folder \(only\); a classifier needs at least two"),
    ("empty_class", r"^data\.root: class folder .*train/b is empty\."),
]


def _layout(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "imgs"
    if name == "root_is_train":
        write_image_folder(root, per_class=1)
        return root / "train"
    if name == "flat":
        _flat(root)
    elif name == "one_class":
        write_image_folder(root, classes=("only",), per_class=1)
    else:
        write_image_folder(root, classes=("a",), per_class=1)
        (root / "train" / "b" / ".hidden").mkdir(parents=True)
        (root / "train" / "b" / ".DS_Store").write_text("")
    return root


@pytest.mark.parametrize("name,match", LAYOUTS)
def test_unusable_train_folders_are_refused_by_the_early_check_in_the_modules_words(tmp_path, name, match):
    root = _layout(tmp_path, name)
    cfg = _cfg(tmp_path, f"data.root={root}")
    with pytest.raises(LitlabError, match=match) as early:
        check_data_given(cfg)
    with pytest.raises(LitlabError) as module:
        ImageFolderDataModule(root=str(root)).setup()
    assert str(early.value) == str(module.value)


def test_the_listing_is_skipped_where_the_location_is(tmp_path):
    """--cfg/--info run nothing and a SLURM sweep's jobs read their own disks: the folder is not
    listed here, the values' forms are still checked."""
    root = _layout(tmp_path, "flat")
    check_data_given(_cfg(tmp_path, f"data.root={root}"), ["--cfg", "job"])
    with pytest.raises(LitlabError, match=r"^data\.channels must be"):
        check_data_given(_cfg(tmp_path, f"data.root={root}", "data.channels=2"), ["--cfg", "job"])
    # a sweep that SLURM runs on other machines: their disks, not this one's
    slurm = _cfg(tmp_path, f"data.root={root}", "hydra/launcher=submitit_slurm")
    check_data_given(slurm, ["-m"], multirun=True)
    with pytest.raises(LitlabError, match=r"train has no class folders"):
        check_data_given(slurm, [], multirun=False)  # a single run reads it here


@pytest.mark.slow
def test_the_train_command_refuses_them_before_torch_and_writes_no_folder(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    stderr = refused_before_torch("litlab.train", ["data=imagefolder", f"data.root={root / 'train'}",
                                                   "hydra.run.dir=run"], tmp_path)
    assert f"pass the folder that holds it, data.root={root}." in stderr
    stderr = refused_before_torch("litlab.train", ["-m", "data=imagefolder", f"data.root={root}",
                                                   "data.augment.shift=2,-1", "hydra.sweep.dir=sweep"], tmp_path)
    assert "data.augment.shift must be an integer >= 0" in stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


# --- 5. eval on images of another size names data.image_size ---------------------------------------

def test_another_sample_shape_names_data_image_size(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2, size=16)
    record = {"class_names": ["a", "b", "c"], "input_shape": [1, 8, 8]}
    dm = ImageFolderDataModule(root=str(root))
    with pytest.raises(LitlabError, match=r"trained on \(1, 8, 8\).* Point data\.\* at data with the same sample "
                                          r"shape as the training run's\. For image files, data\.image_size=\[8,8\] "
                                          r"reads them in that shape\.$"):
        dm.adopt_trained(record, "ckpt_path=x.ckpt")
    fixed = ImageFolderDataModule(root=str(root), image_size=[8, 8])
    fixed.adopt_trained({**record, "preprocess": fixed.preprocess.to_dict()}, "ckpt_path=x.ckpt")
    assert fixed.input_shape == (1, 8, 8)
    rgb = {**record, "input_shape": [3, 8, 8]}
    with pytest.raises(LitlabError, match=r"data\.image_size=\[8,8\] data\.channels=3 reads them in that shape\.$"):
        ImageFolderDataModule(root=str(root)).adopt_trained(rgb, "ckpt_path=x.ckpt")
