"""The one LightningDataModule behind every data choice: splits in, loaders and shapes out."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from dataclasses import dataclass

import lightning.pytorch as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from litlab.data.data_settings import check_augment, given_stats
from litlab.data.datasets import TensorSplit, collate_batch
from litlab.data.eval_shard import EvalShard
from litlab.data.fold_settings import other_fold
from litlab.data.preprocess import Augment, Preprocess, compute_stats
from litlab.data.resumable_loader import ResumableLoader
from litlab.data.shuffled_batches import EpochShuffle, ShuffledBatches, loader_generator, run_seed
from litlab.errors import LitlabError, check_positive_int


log = logging.getLogger(__name__)


class FirstBatches:
    """The first ``limit`` batches of a loader, with the length of what it yields."""

    def __init__(self, loader: DataLoader, limit: int):
        self.loader, self.limit = loader, limit

    def __len__(self) -> int:
        return min(len(self.loader), self.limit)

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.limit)


@dataclass
class Splits:
    """What a data source produces: three datasets and the facts models need."""

    train: Dataset
    val: Dataset
    test: Dataset
    class_names: list[str]
    input_shape: tuple[int, ...]
    """``(C, H, W)`` for images, ``(L, F)`` for sequences."""
    preprocess: Preprocess


def check_labels(y: Tensor, num_classes: int, where: str) -> None:
    """Labels must be integers in ``[0, num_classes)``."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise LitlabError(
            f"{where}: labels must lie in [0, {num_classes}) but range from {int(y.min())} to "
            f"{int(y.max())}. Labels are class indices counted from 0 over the classes of all splits."
        )


def stats_or_given(x: Tensor, kind: str, mean, std, key: str) -> tuple[list[float], list[float]]:
    """Training-set statistics, unless the user gave ``mean``/``std`` in the config; given values
    are checked first, so that a bad one is refused before statistics are computed."""
    count = x.shape[1] if kind == "image" else x.shape[-1]  # (N, C, H, W) or (N, L, F)
    unit = "channel" if kind == "image" else "feature"
    given = [given_stats(f"{key}.mean", mean, count, unit), given_stats(f"{key}.std", std, count, unit, positive=True)]
    if any(g is None for g in given):
        computed = compute_stats(x, kind)
        given = [c if g is None else g for g, c in zip(given, computed)]
    return given[0], given[1]


class ClassificationData(L.LightningDataModule):
    """Serves the splits of a data source, with batched preprocessing after transfer.

    Subclasses implement ``load()`` and return ``Splits``; everything else is shared.

    Args:
        batch_size: samples per batch, per device (``data.batch_size``).
        num_workers: loader processes for datasets read from disk; in-memory data uses none.
        augment: batched training augmentation settings (``data.augment``).
    """

    def __init__(self, batch_size: int = 64, num_workers: int | None = None, augment: dict | None = None):
        super().__init__()
        self.batch_size = check_positive_int("data.batch_size", batch_size)
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0):
            raise LitlabError(f"data.num_workers must be a non-negative integer or null, got {num_workers!r}.")
        self.num_workers = num_workers
        self.augment = Augment(**check_augment(augment))  # checked without torch: data_settings
        self.splits: Splits | None = None
        # which split test_dataloader() serves (eval can test on "val")
        self.test_split = "test"
        # the data record of a checkpoint being evaluated (build_data): a source may then lack
        # the training split, taking classes and normalization from the record
        self.trained: dict | None = None
        # batches per split that the loaders yield at most (first_batches); none: all of them
        self._batch_limits: dict[str, int | None] = {}
        # cross-validation (data.folds, data.fold): sources that cut their pool into folds set them
        self.folds: int | None = None
        self.fold = 0

    def evaluating(self) -> bool:
        """Whether this data serves a checkpoint's evaluation whose record gives the classes and
        the normalization (``self.trained``), so that a source may lack its training split."""
        return bool(self.trained) and "class_names" in self.trained and "preprocess" in self.trained

    # --- subclass contract -------------------------------------------------------------
    def load(self) -> Splits:
        raise NotImplementedError

    # --- facts the model needs -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.load()
            if splits.preprocess.kind != "image" and (self.augment.hflip or self.augment.shift):
                shape = ", ".join(map(str, splits.input_shape))
                raise LitlabError(
                    f"data.augment (hflip={self.augment.hflip}, shift={self.augment.shift}) flips and shifts images, "
                    f"and this data gives sequences or feature vectors of shape ({shape}); it would be ignored. "
                    f"Leave data.augment.hflip=false and data.augment.shift=0 for such data.")
            if splits.preprocess.kind == "image":
                self.augment.check_fits(*splits.input_shape[-2:])  # (C, H, W)
            self.splits = splits
            self.splits.preprocess.augment = self.augment

    def _ready(self) -> Splits:
        self.setup()
        assert self.splits is not None
        return self.splits

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._ready().input_shape)

    @property
    def num_classes(self) -> int:
        return len(self._ready().class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self._ready().class_names)

    @property
    def preprocess(self) -> Preprocess:
        return self._ready().preprocess

    def describe(self) -> dict:
        """What a checkpoint stores about the data, so eval and predict can rebuild it."""
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "preprocess": self.preprocess.to_dict(),
            **({"folds": self.folds, "fold": self.fold} if self.folds else {}),
        }

    def adopt_trained(self, record: dict, where: str) -> None:
        """Serves this data the way the model of ``record`` (a checkpoint's ``describe()``) was
        trained: its normalization, not statistics of this data's own training split, and only if
        the classes, the sample shape and the pixel scale are the same (else an error naming
        ``where``, the checkpoint). A record without these facts (older litlab) checks nothing."""
        if not record:
            return
        if (record.get("folds"), record.get("fold", 0)) != (self.folds, self.fold):
            raise other_fold((self.folds, self.fold), (record.get("folds"), record.get("fold", 0)), where)
        mine = {"class_names": self.class_names, "input_shape": list(self.input_shape)}
        for key, what in (("class_names", "classes"), ("input_shape", "sample shape")):
            theirs = list(record.get(key, mine[key]))
            if [str(v) for v in theirs] != [str(v) for v in mine[key]]:
                raise LitlabError(
                    f"The data has the {what} {_listed(mine[key])} but the model of {where} was trained on "
                    f"{_listed(theirs)}; its outputs would not mean the same. Point data.* at data with the "
                    f"same {what} as the training run's.{self._resize_hint(theirs) if key == 'input_shape' else ''}"
                )
        trained = Preprocess.from_dict(record["preprocess"]) if "preprocess" in record else None
        if trained is None:
            return
        if trained.pixels is not None and self.preprocess.pixels is not None and trained.pixels != self.preprocess.pixels:
            scale = {True: "8-bit pixels (uint8, scaled to [0, 1])", False: "values used as they are (not uint8)"}
            raise LitlabError(
                f"The data's inputs are {scale[self.preprocess.pixels]} but the model of {where} was trained on "
                f"{scale[trained.pixels]}. Give arrays of the training data's dtype."
            )
        self.preprocess.mean, self.preprocess.std = list(trained.mean), list(trained.std)

    def _resize_hint(self, trained_shape: list) -> str:
        """For image files (decoded to ``data.channels``, resized by ``data.image_size``), the keys that
        serve them in the trained ``(C, H, W)``: the files' own size is only the default."""
        if self.preprocess.channels is None or len(trained_shape) != 3:
            return ""
        c, h, w = (int(v) for v in trained_shape)
        keys = [f"data.image_size=[{h},{w}]"] + ([f"data.channels={c}"] if c != self.input_shape[0] else [])
        return f" For image files, {' '.join(keys)} reads them in that shape."

    @contextlib.contextmanager
    def without_trainer(self):
        """Inside, the loaders are those of one process with no trainer: every sample of a split,
        for work after training that measures the model on rank 0 alone (compression, export),
        where the trainer's loaders would give that rank its shard of the evaluation splits."""
        trainer, self.trainer = self.trainer, None
        try:
            yield self
        finally:
            self.trainer = trainer

    @contextlib.contextmanager
    def first_batches(self, limits: dict[str, int | None]):
        """Inside, the loader of split ``s`` yields at most ``limits[s]`` batches (None or absent:
        all of them), so that the debug presets' ``trainer.fast_dev_run`` and ``limit_*_batches``
        cut the work after training (compression, export) too."""
        before, self._batch_limits = self._batch_limits, dict(limits)
        try:
            yield self
        finally:
            self._batch_limits = before

    def _limited(self, split: str, loader: DataLoader):
        limit = self._batch_limits.get(split)
        return loader if limit is None else FirstBatches(loader, limit)

    # --- loaders -------------------------------------------------------------------------
    def _loader(self, ds: Dataset, shuffle: bool, sampler: Sampler | None = None) -> DataLoader:
        pin = torch.cuda.is_available()
        # the training loader's position within an epoch goes into checkpoints: data/resumable_loader.py
        kind = ResumableLoader if shuffle else DataLoader
        seed = run_seed()
        # no shuffle= argument: Lightning reads a given one to decide whether its distributed sampler shuffles.
        # A generator of its own for every loader: each new iterator draws its workers' seed from it, else from
        # torch's global generator, which dropout and augmentation draw from; a validation then moved the
        # training's draws, once per validation without workers and only at the first with persistent ones
        # (so a resumed run drew differently from an uninterrupted one)
        order: dict = {"sampler": sampler, "generator": loader_generator(seed)}
        if shuffle:  # the training order depends on (seed, epoch) only: data/shuffled_batches.py
            order["drop_last"] = self._lone_last_sample(len(ds))
            if sampler is None and isinstance(ds, TensorSplit) and self._one_process_plain_training():
                # in memory: each batch is one indexing op with an index tensor
                batches = ShuffledBatches(len(ds), self.batch_size, seed, drop_last=order["drop_last"])
                return kind(ds, batch_size=None, sampler=batches, generator=order["generator"],
                            collate_fn=collate_batch, pin_memory=pin)
            order["sampler"] = sampler or EpochShuffle(ds, seed)
        if isinstance(ds, TensorSplit):
            # in memory: worker processes would only add IPC
            return kind(ds, batch_size=self.batch_size, num_workers=0, collate_fn=collate_batch, pin_memory=pin,
                        **order)
        workers = self.num_workers
        if workers is None:
            workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        return kind(ds, batch_size=self.batch_size, num_workers=workers, persistent_workers=workers > 0,
                    pin_memory=pin, prefetch_factor=4 if workers > 0 else None, **order)

    def _lone_last_sample(self, n: int) -> bool:
        """Whether an epoch's training batches would end with a batch of one sample (per process),
        which is then left out: batch normalization cannot normalize a single sample (it fails on
        1x1 feature maps), and one sample of an epoch is not missed (the next epoch's order differs)."""
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        per_process = math.ceil(n / world)
        lone = per_process > 1 and per_process % self.batch_size == 1
        if lone and not getattr(self, "_told_lone", False):
            self._told_lone = True
            log.info("data: %d training samples per process and data.batch_size=%d leave a last batch of one "
                     "sample; each epoch leaves it out", per_process, self.batch_size)
        return lone

    def _one_process_plain_training(self) -> bool:
        """No DDP and no ``trainer.overfit_batches``: Lightning then uses the training loader as
        it is. Otherwise it rebuilds the loader around a sampler of its own (distributed or
        sequential), which needs the standard ``batch_size`` form."""
        trainer = self.trainer
        return trainer is None or (trainer.world_size == 1 and not trainer.overfit_batches)

    def _eval_loader(self, ds: Dataset, role: str) -> DataLoader:
        """With several processes, every sample on exactly one rank (``EvalShard``); Lightning's
        padding sampler stays only where the split is smaller than the number of ranks (a rank
        without samples would skip the evaluation epoch and its end-of-epoch reductions).

        An evaluation cut to its first batches (``role``'s ``trainer.limit_*_batches``, the debug
        presets) in one process reads the split in a fixed random order: its samples are stored class by class,
        so the first batches of the digits' test split held classes 0-3 only, and a short run's
        test/acc read 0.0 beside a val/acc of 0.23. Several processes shard that same order, rank
        ``r`` of ``W`` reading its samples ``r, r + W, ...``: they read the samples one process reads
        where the cut covers as many (Lightning's limit counts batches per rank, so W processes
        with ``limit_*_batches=k`` read what one reads with ``W * k``); ``temperature=auto`` then fits
        T on the same samples."""
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        order = None
        if self._eval_cut(role):
            order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
        if world > 1 and len(ds) >= world:
            return self._loader(ds, shuffle=False, sampler=EvalShard(ds, world, trainer.global_rank, order))
        return self._loader(ds, shuffle=False, sampler=order)

    def _eval_cut(self, role: str) -> bool:
        """Whether the ``role`` ("val" or "test") evaluation reads only its first batches."""
        if self._batch_limits.get(role) is not None:
            return True
        trainer = self.trainer
        if trainer is None:
            return False
        limit = getattr(trainer, f"limit_{role}_batches", 1.0)
        return bool(trainer.fast_dev_run) or not (isinstance(limit, float) and limit >= 1.0)

    def train_dataloader(self) -> DataLoader:
        return self._limited("train", self._loader(self._ready().train, shuffle=True))

    def val_dataloader(self) -> DataLoader:
        return self._limited("val", self._eval_loader(self._ready().val, "val"))

    def test_dataloader(self) -> DataLoader:
        return self._limited("test", self._eval_loader(getattr(self._ready(), self.test_split), "test"))

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """An ``(inputs, labels)`` pair of tensors moves with two ``.to`` calls; anything else the
        way Lightning moves any collection (its generic walk costs a small model ~5% per step)."""
        if type(batch) in (tuple, list) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch):
            non_blocking = device.type == "cuda"
            return batch[0].to(device, non_blocking=non_blocking), batch[1].to(device, non_blocking=non_blocking)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        trainer = self.trainer
        if trainer is None:
            return self.preprocess(x, train=False), y
        x = self.preprocess(x, train=trainer.training)  # float32
        # Lightning converts a batch to the precision's dtype before the transfer, when it still is
        # uint8 here; precisions that compute in another dtype (64, bf16-true, 16-true) need it now
        return trainer.precision_plugin.convert_input(x), y


def _listed(values: list) -> str:
    shown = ", ".join(map(str, values[:12])) + (f", ... ({len(values)} in all)" if len(values) > 12 else "")
    return f"({shown})"
