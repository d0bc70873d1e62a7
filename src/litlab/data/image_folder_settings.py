"""The image folder's ``data.*`` values and the layout of its ``train/`` folder, checked without torch.

``ImageFolderDataModule`` checks both when it is built and set up; ``early_checks`` calls the same
functions on the composed config before torch is imported and Hydra makes the run's folder (a
mistyped value took 5-13 s and left a failed run folder). The layout checks list folders and
never open an image file: what the files hold is checked when they are read.
"""

from __future__ import annotations

import os
from pathlib import Path

from litlab.data.data_settings import given_stats
from litlab.errors import LitlabError, check_choice, check_fraction, check_positive_int
from litlab.listing import first_of

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = ("train", "val", "test")


def parse_size(value) -> list[int] | None:
    """``data.image_size``: null, an int (square) or ``[H, W]``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return [int(value[0]), int(value[1])]
    raise LitlabError(f"data.image_size must be null, a positive integer or [H, W], got {value!r}.")


def check_image_folder_settings(image_size=None, channels: int | str = "auto", val_fraction: float = 0.1,
                                on_bad_file: str = "skip", in_memory="auto", memory_limit_mb: int = 2048,
                                mean=None, std=None) -> list[int] | None:
    """The values of ``ImageFolderDataModule`` (its defaults here too) that need no file, each
    refused with a LitlabError naming its key; returns ``data.image_size`` as ``[H, W]`` or None."""
    size = parse_size(image_size)
    if channels not in (1, 3, "auto"):
        raise LitlabError(f"data.channels must be 1 (grayscale), 3 (RGB) or auto (3 when the training images are in "
                          f"colour), got {channels!r}.")
    check_fraction("data.val_fraction", val_fraction)
    check_choice("data.on_bad_file", on_bad_file, ("skip", "fail"))
    if in_memory not in ("auto", True, False):
        raise LitlabError(f"data.in_memory must be auto, true or false, got {in_memory!r}.")
    check_positive_int("data.memory_limit_mb", memory_limit_mb)
    # stats_or_given checks them again against the data
    count = None if channels == "auto" else channels  # auto: counted once the files are looked at
    given_stats("data.mean", mean, count, "channel")
    given_stats("data.std", std, count, "channel", positive=True)
    return size


def class_folders(split_dir: Path) -> list[str]:
    """Names of the class subfolders of ``split_dir``, sorted."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def has_visible_file(folder: Path) -> bool:
    """Whether ``folder`` holds a file at any depth outside hidden files and folders; stops at the
    first one (a listing, no file is opened)."""
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(not f.startswith(".") for f in files):
            return True
    return False


def empty_class_error(folder: Path) -> LitlabError:
    return LitlabError(f"data.root: class folder {folder} is empty. Every class folder needs at least one image; "
                       f"remove the folder or add images.")


def loose_images(split_dir: Path) -> list[Path]:
    """The image files lying directly in ``split_dir`` (``train/``, ``val/``, ``test/``), outside
    every class folder: no class is known for them, so they are not used."""
    return sorted(p for p in split_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def loose_images_note(root: Path, splits=SPLITS) -> str | None:
    """The warning for image files lying directly in ``splits`` of ``root``: their count and the
    first few; None when there are none."""
    loose = [f for s in splits if (root / s).is_dir() for f in loose_images(root / s)]
    if not loose:
        return None
    return (f"data.root: {len(loose)} image file(s) lie directly in {' or '.join(f'{s}/' for s in splits)} of "
            f"{root}, not in a class folder, and are not used: {first_of([str(f) for f in loose], 3)}. Move each "
            f"into the folder of its class (e.g. train/<class>/).")


def check_train_folders(root: Path) -> list[str]:
    """The class names of ``root/train`` (``root`` is a folder), or a LitlabError: no ``train/``
    (naming the folder above when ``root`` is itself one of the splits), no class folders, one
    class folder, or an empty one. Lists folders only."""
    train = root / "train"
    if not train.is_dir():
        hint = ""
        if root.name in SPLITS and (root.parent / "train").is_dir():
            hint = (f" {root} is itself the {root.name}/ folder: pass the folder that holds it, "
                    f"data.root={root.parent}.")
        raise LitlabError(
            f"data.root={root} has no train/ folder. Expected {root}/train/<class>/<images> "
            f"(and optionally val/ and test/ with the same class folders).{hint}"
        )
    classes = class_folders(train)
    if not classes:
        loose = loose_images(train)
        found = f" ({len(loose)} image file(s) lie directly in it)" if loose else ""
        raise LitlabError(f"{train} has no class folders{found}. Put each class's images in {train}/<class name>/.")
    if len(classes) == 1:
        raise LitlabError(
            f"{train} has one class folder ({classes[0]}); a classifier needs at least two. Put each "
            f"class's images in a folder of its own under {train}/."
        )
    for name in classes:
        if not has_visible_file(train / name):
            raise empty_class_error(train / name)
    return classes
