"""Image folders: ROOT/train/<class>/*, optional ROOT/val/ and ROOT/test/."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from PIL import Image

from litlab.data.base import ClassificationData, Splits, stats_or_given
from litlab.data.data_settings import given_stats
from litlab.data.colour_channels import COLOUR_CLASSES, COLOUR_PER_CLASS, colour_file, colour_sample, recorded_channels
from litlab.data.datasets import FileSplit, TensorSplit, fold_of_pool, joined, note_val_fraction_unused, split_off
from litlab.data.fold_settings import check_folds
from litlab.data.image_files import (bad_file, check_one_size, check_readable, class_folders, decode,
                                     header_problem, list_split, report_bad_files, unicode_form, unicode_twins,
                                     visible_files)
from litlab.data.image_folder_settings import check_image_folder_settings, check_train_folders, loose_images_note
from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError

log = logging.getLogger(__name__)


class ImageFolderDataModule(ClassificationData):
    """Images in class folders, decoded once into memory when they fit, else streamed.

    Args:
        root: folder with ``train/`` and optionally ``val/`` and ``test/`` (``data.root``).
        image_size: resize to ``[H, W]`` (or an int for squares); None keeps the files' size.
        channels: 1 for grayscale, 3 for RGB, ``auto``: 3 when the training images are in colour
            (up to 8 files of each of up to 20 classes are opened: ``colour_sample``), else 1; a
            checkpoint records the number.
        val_fraction: share of ``train/`` held out for validation when there is no ``val/``.
        split_seed: seed of that split, and of the folds.
        folds: cut train/ and val/ together into this many stratified folds (cross-validation);
            None holds out a validation split as above.
        fold: the fold (``0..folds-1``) that validates, the others train.
        on_bad_file: ``skip`` unreadable files with a warning, or ``fail``.
        in_memory: ``auto``, true or false (stream from disk through worker processes).
        memory_limit_mb: the decoded size up to which ``auto`` keeps data in memory.
        mean, std: normalization; None computes them on the training split.
    """

    def __init__(self, root: str | None = None, batch_size: int = 64, image_size=None, channels: int | str = "auto",
                 val_fraction: float = 0.1, split_seed: int = 0, on_bad_file: str = "skip",
                 in_memory="auto", memory_limit_mb: int = 2048, num_workers: int | None = None,
                 mean=None, std=None, augment: dict | None = None, folds: int | None = None, fold: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        self.folds, self.fold = check_folds(folds, fold)
        if root is None or root == "":
            raise LitlabError(
                "data.root is not set. Pass data.root=DIR, a folder holding train/<class>/ image folders "
                "(and optionally val/ and test/)."
            )
        self.root = Path(root)
        # checked before any file is read, by the same function as early_checks (without torch)
        self.image_size = check_image_folder_settings(image_size, channels, val_fraction, on_bad_file, in_memory,
                                                      memory_limit_mb, mean, std)
        self.channels = channels
        # auto's colour file (path, mode), None when it chose 1 (named by the data.mean/std refusal)
        self.auto_found: tuple[Path, str] | None = None
        self.val_fraction = float(val_fraction)
        self.split_seed = split_seed
        self.on_bad_file = on_bad_file
        self.in_memory = in_memory
        self.memory_limit_mb = memory_limit_mb
        self.mean, self.std = mean, std

    def _check_root(self) -> list[str]:
        if not self.root.is_dir():
            raise LitlabError(f"data.root={self.root} is not a folder. It must hold train/<class>/ image folders.")
        train = self.root / "train"
        if self._evaluation_only():
            classes = [str(c) for c in self.trained["class_names"]]
            if not any((self.root / s).is_dir() for s in ("val", "test")):
                raise LitlabError(f"data.root={self.root} has no train/, val/ or test/ folder. To evaluate, give a "
                                  f"folder with test/<class>/<images> (or val/).")
            self._check_eval_splits(classes, "the checkpoint")
            return classes
        # train/ first (its class folders, none empty): val/ and test/ are compared with its classes
        classes = check_train_folders(self.root)
        self._check_eval_splits(classes, str(train))
        return classes

    def _evaluation_only(self) -> bool:
        """A checkpoint's evaluation that reads no training image: the folder has no train/, or it
        has val/ and test/ (train/ would be decoded only for statistics the checkpoint's replace,
        and for a hold-out of val or a test on val that does not happen here)."""
        if not self.evaluating():
            return False
        if self.folds and (self.root / "train").is_dir():  # the validation fold is cut from train/ and val/
            return False
        return not (self.root / "train").is_dir() or all((self.root / s).is_dir() for s in ("val", "test"))

    def _check_eval_splits(self, classes: list[str], known: str) -> None:
        """val/ and test/ hold class folders of ``classes`` (those of ``known``), not always all."""
        for split in ("val", "test"):
            d = self.root / split
            if not d.is_dir():
                continue
            unknown = [c for c in class_folders(d) if c not in classes]
            _check_unicode_twins(d, unknown, classes, known)
            if unknown:
                raise LitlabError(
                    f"data.root: {d} has class folder(s) {', '.join(unknown)} not among the classes of {known} "
                    f"({', '.join(classes)}); a class needs training images. Train with them, or move the "
                    f"folder(s) out of {d}."
                )
            absent = [c for c in classes if not (d / c).is_dir() or not visible_files(d / c)]
            if absent:
                log.warning("data.root: %s has no images of class(es) %s; its accuracy covers the other classes",
                            d, ", ".join(absent))

    def _use_memory(self, n_files: int, sample: torch.Tensor | None) -> bool:
        if self.in_memory != "auto":
            return bool(self.in_memory)
        per_image = sample.numel() if sample is not None else 3 * 224 * 224
        return n_files * per_image <= self.memory_limit_mb * 2**20

    def load(self) -> Splits:
        classes = self._check_root()
        if self._evaluation_only():
            return self._load_evaluation(classes)
        listed = {s: list_split(self.root / s, classes, every_class=s == "train")
                  for s in ("train", "val", "test") if (self.root / s).is_dir()}
        self._note_loose_files(listed)
        auto = self.channels == "auto"
        self._choose_channels(listed["train"])
        if auto:
            self._check_stats_count()
        first = self._probe(listed["train"][0])
        n_files = sum(len(f) for f, _ in listed.values())
        memory = self._use_memory(n_files, first)
        log.info("data: %d image files under %s, %s", n_files, self.root, "decoded into memory" if memory else "streamed from disk")
        read = {s: self._read(files, labels, memory) for s, (files, labels) in listed.items()}
        self._check_sizes(read)
        parts = {s: self._split(s, files, labels, decoded, memory) for s, (files, labels, decoded, _) in read.items()}
        train = parts["train"]
        val = parts.get("val")
        if self.folds:
            names = [f.relative_to(self.root / s).as_posix() for s in ("train", "val") if s in read
                     for f in read[s][0]]  # each usable file as <class>/<file>, train/'s then val/'s
            train, val = self._fold(train, val, classes, names)
        elif val is None:
            train, val = self._hold_out(train)
        self._check_every_class_kept(_labels(train), listed["train"][1], classes)
        test = parts.get("test")
        if test is None:
            log.warning("data.root has no test/ folder: testing on the validation split, which also picks "
                        "best.ckpt, so test/* are validation figures (metrics.json: test_split val)")
            test = val
        self.test_is_val = test is val
        sample = self._stats_sample(train)
        mean, std = stats_or_given(sample, "image", self.mean, self.std, "data")
        shape = tuple(sample.shape[1:])
        pre = Preprocess(kind="image", mean=mean, std=std, image_size=self.image_size, channels=self.channels,
                         pixels=True)
        return Splits(train, val, test, classes, shape, pre)

    def _load_evaluation(self, classes: list[str]) -> Splits:
        """val/ and test/ only, in the checkpoint's classes and normalization (eval)."""
        listed = {s: list_split(self.root / s, classes, every_class=False)
                  for s in ("val", "test") if (self.root / s).is_dir()}
        self._note_loose_files(listed)
        self._choose_channels(next(iter(listed.values())))
        first = self._probe(next(iter(listed.values()))[0])
        memory = self._use_memory(sum(len(f) for f, _ in listed.values()), first)
        read = {s: self._read(files, labels, memory) for s, (files, labels) in listed.items()}
        self._check_sizes(read)
        parts = {s: self._split(s, files, labels, decoded, memory) for s, (files, labels, decoded, _) in read.items()}
        shape = tuple(next(iter(parts.values()))[0][0].shape)
        empty = TensorSplit(torch.zeros((0, *shape), dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
        own = Preprocess.from_dict(self.trained["preprocess"])
        pre = Preprocess(kind="image", mean=list(own.mean), std=list(own.std), image_size=self.image_size,
                         channels=self.channels, pixels=True)
        log.info("data.root=%s: evaluating %s with the checkpoint's classes and normalization (train/ %s)", self.root,
                 " and ".join(f"{s}/" for s in listed), "is not read" if (self.root / "train").is_dir() else "absent")
        return Splits(empty, parts.get("val", empty), parts.get("test", empty), classes, shape, pre)

    def _check_sizes(self, read: dict) -> None:
        """Without ``data.image_size``, every split's images need one size, or the model's input
        is ill-defined (an error listing the sizes found)."""
        if self.image_size is not None:
            return
        sizes: dict[tuple[int, int], list[Path]] = {}
        for files, _, _, shapes in read.values():
            for f, hw in zip(files, shapes):
                sizes.setdefault(hw, []).append(f)
        check_one_size(sizes)

    def _note_loose_files(self, listed: dict) -> None:
        """One warning for image files lying directly in the splits read (``listed``), outside the
        class folders: they were left out without a word."""
        note = loose_images_note(self.root, tuple(listed))
        if note:
            log.warning(note)

    def _choose_channels(self, listed: tuple[list[Path], list[int]]) -> None:
        """``data.channels=auto`` as a number: the checkpoint's when evaluating one (its record),
        else 3 when a colour file is among those ``colour_sample`` picks from ``listed`` (the
        training split), else 1; said once. With ``data.channels=1``, a warning naming such a file:
        colour photos read as grayscale lose what tells apart classes of equal brightness (red vs
        green images trained at chance), and nothing said so. A checkpoint's evaluation reads the
        images as its model was trained, without a word."""
        if self.evaluating():
            self.channels = recorded_channels(self.trained) if self.channels == "auto" else self.channels
            if self.channels != "auto":
                return
        if self.channels not in ("auto", 1):
            return
        files, labels = listed
        sample = colour_sample(files, labels)
        found = colour_file(sample)
        if self.channels == "auto":
            self.channels = 3 if found else 1
            self.auto_found = found
            n_classes = len(set(labels))
            of_all = "" if n_classes <= COLOUR_CLASSES else f" of {n_classes}"
            log.info("data.channels=auto: %s", f"3 ({found[1]} files found, e.g. {found[0].relative_to(self.root)})"
                     if found else f"1 (no colour in {len(sample)} training files: up to {COLOUR_PER_CLASS} of each "
                     f"of {min(n_classes, COLOUR_CLASSES)} classes{of_all})")
        elif found:
            log.warning("data.channels=1 reads the images as grayscale, and the training images are in colour (e.g. "
                        "%s, mode %s): classes that differ in colour but not in brightness then look alike. A new run "
                        "(without ckpt_path) with data.channels=3 or auto trains on the colours (a resume goes on as "
                        "its run was trained); 1 keeps grayscale on purpose.", *found)

    def _check_stats_count(self) -> None:
        """``data.mean``/``data.std`` of another count than the channels ``auto`` chose: refused
        before the files are decoded, saying what ``auto`` chose and how to read the other number
        (the count was not known when the values were checked)."""
        for key, value in (("data.mean", self.mean), ("data.std", self.std)):
            try:
                given_stats(key, value, self.channels, "channel")
            except LitlabError as e:
                found = self.auto_found
                why = (f"colour files found, e.g. {found[0].relative_to(self.root)}" if found else
                       "no colour in the training files it looked at")
                other = ("data.channels=1 reads the images in grayscale (one number per channel: 1)" if found else
                         "data.channels=3 reads them in RGB (one number per channel: 3)")
                raise LitlabError(f"{e} data.channels=auto chose {self.channels} ({why}); {other}.") from None

    def _probe(self, files) -> torch.Tensor | None:
        """The first decodable training image, to estimate the decoded size of the set."""
        for f in files[:20]:
            try:
                return decode(f, self.channels, tuple(self.image_size) if self.image_size else None)
            except Exception:
                continue
        return None

    def _read(self, files, labels, memory: bool):
        """The usable files of a split: files, labels, the decoded images (in memory; None when
        streaming) and the images' sizes ``(H, W)`` (streamed, from the files' headers)."""
        if memory:
            size = tuple(self.image_size) if self.image_size else None
            files, labels, decoded = check_readable(files, labels, self.channels, size, self.on_bad_file)
            return files, labels, decoded, [tuple(t.shape[1:]) for t in decoded]
        return self._check_headers(files, labels)

    def _split(self, name: str, files, labels, decoded, memory: bool):
        if not files:
            raise LitlabError(f"data.root={self.root}: no readable images in {name}/.")
        if memory:
            return TensorSplit(torch.stack(decoded), torch.tensor(labels, dtype=torch.long))
        size = tuple(self.image_size) if self.image_size else None
        return FileSplit(files, labels, functools.partial(decode, channels=self.channels, size=size))

    def _check_headers(self, files, labels):
        """Streaming mode: opens each file's header only (cheap) to drop non-images early."""
        keep_f, keep_l, sizes, bad = [], [], [], []
        for f, lab in zip(files, labels):
            try:
                with Image.open(f) as im:  # the header is parsed on open
                    problem = header_problem(im)  # what decoding would refuse in a worker, mid-epoch
                    if problem:
                        raise ValueError(problem)
                    sizes.append((im.height, im.width))
                keep_f.append(f)
                keep_l.append(lab)
            except Exception as e:
                bad.append(bad_file(f, e))
        report_bad_files(bad, self.on_bad_file, "images")
        return keep_f, keep_l, None, sizes

    def _check_every_class_kept(self, kept: list[int], listed: list[int], classes: list[str]) -> None:
        """A class whose training files were all left out as unreadable cannot be learnt."""
        lost = sorted(set(listed) - set(kept))
        if lost:
            names = ", ".join(str(self.root / "train" / classes[i]) for i in lost)
            raise LitlabError(
                f"data.root: no readable image is left in the training class folder(s) {names}: every "
                f"file there was skipped (see the warning above). Add images, or remove the folder(s)."
            )

    def _hold_out(self, train):
        """(train, val) from train/ when there is no val/ folder; every class keeps a training
        image (see ``split_off``)."""
        keep, out = split_off(_labels(train), self.val_fraction, self.split_seed)
        if len(out) == 0:
            raise LitlabError(
                f"data.root={self.root} has no val/ folder and data.val_fraction={self.val_fraction} holds "
                f"out no images from {len(train)}; raise data.val_fraction or add a val/ folder."
            )
        return _subset(train, keep), _subset(train, out)

    def _holds_out(self, has_val: bool) -> bool:
        """Whether ``data.val_fraction`` would cut the validation split (there is no val/ folder)."""
        return not has_val

    def _fold(self, train, val, classes: list[str], names: list[str]):
        """(train, val) of fold ``data.fold``, cut from train/ and val/ together (``fold_of_pool``).

        ``names`` are the pool's files relative to their split folder (``<class>/<file>``): the pool
        is dealt in their order, by class then name, so a file's fold does not depend on whether it
        lies in train/ or val/ (the digits' val/ changes with data.val_fraction, their pool does not)."""
        if self._holds_out(val is not None):
            note_val_fraction_unused(self.val_fraction)
        pool = train if val is None else joined(train, val)
        labels = _labels(pool)
        pool = _subset(pool, torch.tensor(sorted(range(len(names)), key=lambda i: (labels[i], names[i]))))
        where = f"data.root={self.root} ({'train/ and val/' if val is not None else 'train/'})"
        keep, out = fold_of_pool(_labels(pool), self.folds, self.fold, self.split_seed, where, classes)
        return _subset(pool, keep), _subset(pool, out)

    def _stats_sample(self, train) -> torch.Tensor:
        if isinstance(train, TensorSplit):
            return train.x
        n = min(len(train), 512)  # each read decodes a file: an estimate for large streamed sets
        if n < len(train):
            log.info("data: mean and std estimated from %d evenly spaced of the %d streamed training images (in "
                     "memory all are used); data.mean and data.std fix them", n, len(train))
        idx = torch.linspace(0, len(train) - 1, n).long().tolist()
        return torch.stack([train[i][0] for i in idx])


def _check_unicode_twins(d: Path, unknown: list[str], classes: list[str], known: str) -> None:
    """Folders of ``d`` named like a class of ``known`` but in another Unicode normalization
    (NFC vs NFD) are an error that says so; the plain "not among the classes" one would list
    two names that print the same."""
    twins = unicode_twins(unknown, classes)
    if not twins:
        return
    target = unicode_form(twins[0][1])
    listing = ", ".join(f"{ascii(n)} ({unicode_form(n)}; {ascii(c)} ({unicode_form(c)}) in {known})" for n, c in twins)
    fix = (f", e.g. with convmv -r -f utf8 -t utf8 --{target.lower()} --notest {d}" if target != "mixed" else "")
    raise LitlabError(
        f"data.root: {d} has class folder(s) whose names differ from those of {known} only in their Unicode "
        f"encoding: {listing}. They print alike, but one spells accented letters as single code points (NFC) "
        f"and the other as a letter plus a combining accent (NFD, as zips made on macOS often do), so they "
        f"would be different classes. Rename the folder(s) under {d} to the spelling of {known}{fix}."
    )


def _labels(ds) -> list[int]:
    """The class index of every sample of a split held in memory or streamed."""
    return ds.y.tolist() if isinstance(ds, TensorSplit) else list(ds.labels)


def _subset(ds, idx: torch.Tensor):
    if isinstance(ds, TensorSplit):
        return TensorSplit(ds.x[idx], ds.y[idx])
    keep = idx.tolist()
    return FileSplit([ds.files[i] for i in keep], [ds.labels[i] for i in keep], ds.decode)
