"""Synthetic data is deterministic and learnable; digits are written once with a fixed split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from litlab.data.digits import DigitsDataModule, write_digits_tree
from litlab.data.preprocess import Augment, Preprocess
from litlab.data.synthetic import SyntheticDataModule
from litlab.errors import LitlabError


@pytest.mark.parametrize("kind,shape", [("image", [2, 8, 8]), ("sequence", [16, 3])])
def test_synthetic_is_deterministic_and_class_dependent(kind, shape):
    a = SyntheticDataModule(kind=kind, shape=shape, num_classes=4, num_train=400, num_val=50, num_test=50)
    b = SyntheticDataModule(kind=kind, shape=shape, num_classes=4, num_train=400, num_val=50, num_test=50)
    a.setup(), b.setup()
    assert a.input_shape == tuple(shape)
    assert torch.equal(a.splits.train.x, b.splits.train.x)
    # nearest class mean (computed on train) classifies test far above chance (0.25): learnable
    x, y = a.splits.train.x.flatten(1), a.splits.train.y
    means = torch.stack([x[y == k].mean(0) for k in range(4)])
    pred = torch.cdist(a.splits.test.x.flatten(1), means).argmin(1)
    assert (pred == a.splits.test.y).float().mean() > 0.6


def test_synthetic_bad_shape():
    with pytest.raises(LitlabError, match=r"data\.shape must be \[L, F\]"):
        SyntheticDataModule(kind="sequence", shape=[1, 8, 8])


def test_digits_tree_is_written_once_with_a_fixed_split(tmp_path):
    root = tmp_path / "digits"
    write_digits_tree(root, 0.15, 0.2)
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(files) == 1797
    counts = {s: len(list((root / s).rglob("*.png"))) for s in ("train", "val", "test")}
    assert counts == {"train": 1168, "val": 270, "test": 359}
    stamp = (root / "train" / "0").stat().st_mtime_ns
    write_digits_tree(root, 0.15, 0.2)
    assert (root / "train" / "0").stat().st_mtime_ns == stamp
    assert json.loads((root / "split.json").read_text())["test_fraction"] == 0.2
    dm = DigitsDataModule(root=str(root))
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10


def test_an_interrupted_digits_write_leaves_nothing_behind(tmp_path, monkeypatch):
    """Ctrl-C while the PNG files were written left a .digits-* folder for good."""
    from PIL import Image

    from litlab.data import digits

    real_save, saved = Image.Image.save, []

    def save_then_interrupt(self, *args, **kwargs):
        saved.append(1)
        if len(saved) == 50:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        digits.write_digits_tree(tmp_path / "digits", 0.15, 0.2)
    assert list(tmp_path.iterdir()) == []


def test_digits_never_replace_a_folder_they_did_not_write(tmp_path):
    """data=digits data.root=<someone's folder> is refused; the folder is left as it was. A digits
    tree of another split is replaced, and an empty folder is filled."""
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "thesis.txt").write_text("keep me")
    (mine / "photos" / "a.png").write_bytes(b"not really")
    with pytest.raises(LitlabError, match=r"data\.root=.*mine already holds files .* never deletes them"):
        DigitsDataModule(root=str(mine)).setup()
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["photos", "photos/a.png", "thesis.txt"]
    assert (mine / "thesis.txt").read_text() == "keep me"

    other_split = tmp_path / "digits"
    write_digits_tree(other_split, 0.1, 0.2)
    write_digits_tree(other_split, 0.15, 0.2)
    assert json.loads((other_split / "split.json").read_text())["val_fraction"] == 0.15
    assert len(list((other_split / "val").rglob("*.png"))) == 270
    empty = tmp_path / "empty"
    empty.mkdir()
    write_digits_tree(empty, 0.15, 0.2)
    assert len(list(empty.rglob("*.png"))) == 1797


def test_digits_fractions_are_checked(tmp_path):
    with pytest.raises(LitlabError, match=r"data\.val_fraction \+ data\.test_fraction"):
        DigitsDataModule(root=str(tmp_path), val_fraction=0.5, test_fraction=0.45)


def test_augment_shift_and_flip_keep_shape_and_content():
    torch.manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    pre = Preprocess(kind="image", mean=[0.0], std=[1.0], augment=Augment(hflip=True, shift=1))
    out = pre(x, train=True)
    assert out.shape == x.shape
    # every value of a shifted image comes from the original or the zero padding
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    assert torch.equal(pre(x, train=False), x)


def test_a_single_pixel_image_is_learnable_data_not_nan():
    """A 1x1 prototype's std (of one value) was NaN, and the run then blamed its learning rate."""
    dm = SyntheticDataModule(shape=[1, 1, 1], num_classes=3, num_train=64, num_val=8, num_test=8)
    dm.setup()
    assert bool(dm.splits.train.x.isfinite().all())


@pytest.mark.parametrize("noise", [float("nan"), float("inf")])
def test_noise_must_be_finite(noise):
    with pytest.raises(LitlabError, match=r"data\.noise must be a non-negative finite number"):
        SyntheticDataModule(noise=noise)


def test_data_larger_than_the_memory_is_refused_before_it_is_drawn(monkeypatch):
    """data.shape=[3,10000,10000] was drawn until the kernel killed the run, with nothing reported."""
    import litlab.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "available_memory_bytes", lambda: 2**30)
    with pytest.raises(LitlabError, match=r"data\.shape and data\.num_train/num_val/num_test ask for 1\.1 GiB of "
                                          r"float32 data, and drawing it needs about 3\.4 GiB; this machine has 1\.0 GiB"):
        SyntheticDataModule(shape=[3, 100, 100], num_train=8000, num_val=1000, num_test=1000)
    SyntheticDataModule(shape=[3, 10, 10], num_train=8000, num_val=1000, num_test=1000)  # 34 MiB: fine


def test_data_split_seed_chooses_the_digits_split(tmp_path):
    """It was accepted and did nothing: the split used a fixed seed whatever data.split_seed said."""
    root = tmp_path / "digits"
    DigitsDataModule(root=str(root)).prepare_data()  # the default split
    default = {p.name for p in (root / "test").rglob("*.png")}
    DigitsDataModule(root=str(root), split_seed=7).prepare_data()
    tree = root / "splits" / "seed7_val0.15_test0.2"  # each split in a folder of its own
    other = {p.name for p in (tree / "test").rglob("*.png")}
    assert len(other) == len(default) == 359 and other != default
    assert json.loads((tree / "split.json").read_text())["seed"] == 7
    assert json.loads((root / "split.json").read_text())["seed"] == 1234
    with pytest.raises(LitlabError, match=r"data\.split_seed must be an integer >= 0, got 'x'"):
        DigitsDataModule(root=str(root), split_seed="x")


def test_a_streamed_split_keeps_its_files_while_another_split_is_written(tmp_path):
    """A run streaming the digits from disk (data.in_memory=false) stopped with "... was listed when
    the run started but is gone now": a run of another split rewrote data/digits meanwhile."""
    root = tmp_path / "digits"
    dm = DigitsDataModule(root=str(root), in_memory=False)
    dm.setup()
    train = dm.splits.train
    assert len(train) == 1168 and all(f.is_relative_to(root / "train") for f in train.files)
    DigitsDataModule(root=str(root), split_seed=7).prepare_data()  # the other run starts meanwhile
    for split in (train, dm.splits.val, dm.splits.test):  # every listed file still reads, as it was
        assert [split[i][1] for i in range(len(split))] == split.labels
    assert (train[0][0].shape, len(dm.splits.val), len(dm.splits.test)) == ((1, 8, 8), 270, 359)
    # eval's data.root=<that split's tree> reads it as it is; a run of another split is refused
    tree = root / "splits" / "seed7_val0.15_test0.2"
    mine = DigitsDataModule(root=str(tree), split_seed=7, in_memory=False)
    mine.setup()
    assert len(mine.splits.test) == 359 and mine.splits.test.files[0].parent.parent == tree / "test"
    assert sorted(p.name for p in tree.iterdir()) == ["split.json", "test", "train", "val"]
    with pytest.raises(LitlabError, match=r"data\.root=.*seed7_val0\.15_test0\.2 is the digits tree of one "
                                          r"split \(seed7_val0\.15_test0\.2\).* Point data\.root at the digits"):
        DigitsDataModule(root=str(tree), split_seed=8).prepare_data()


def test_an_older_litlabs_tree_of_another_split_gives_way_to_the_default_one(tmp_path):
    """An older litlab rewrote data.root with each run's split; its tree of another split there is
    replaced by the default split's, and the trees of other splits beside it are left alone."""
    root = tmp_path / "digits"
    (root / "train" / "0").mkdir(parents=True)
    (root / "train" / "0" / "0000.png").write_bytes(b"an older split's")
    (root / "split.json").write_text(json.dumps({"source": "sklearn.datasets.load_digits", "val_fraction": 0.15,
                                                 "test_fraction": 0.2, "seed": 7}))
    (root / "splits" / "being_read").mkdir(parents=True)
    (root / "splits" / "being_read" / "a.png").write_bytes(b"keep")
    assert write_digits_tree(root, 0.15, 0.2, 7) == root / "splits" / "seed7_val0.15_test0.2"
    assert json.loads((root / "split.json").read_text())["seed"] == 1234
    assert {s: len(list((root / s).rglob("*.png"))) for s in ("train", "val", "test")} == {
        "train": 1168, "val": 270, "test": 359}
    assert len(list((root / "splits" / "seed7_val0.15_test0.2").rglob("*.png"))) == 1797
    assert (root / "splits" / "being_read" / "a.png").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]  # no temporary folder left


def test_the_digits_folders_follow_the_umask(tmp_path):
    """data/digits was made with mode 0700 whatever the umask (a temporary folder renamed into
    place), so a team's shared paths.data_dir held digits only its first user could read."""
    import os
    import stat

    before = os.umask(0o022)
    try:
        tree = write_digits_tree(tmp_path / "digits", 0.15, 0.2, 7)
    finally:
        os.umask(before)
    for folder in (tmp_path / "digits", tmp_path / "digits" / "train" / "3", tmp_path / "digits" / "splits", tree):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~0o022 == 0o755, folder


def _read_split_sums(root: str, seed: int, rounds: int, out, started=None) -> None:
    """Loads the digits with ``split_seed=seed`` ``rounds`` times; puts the test split's pixel sum of
    each. ``started`` (an event) is set just before the first load."""
    if started is not None:
        started.set()
    for _ in range(rounds):
        dm = DigitsDataModule(root=root, split_seed=seed)
        out.put((seed, int(dm.load().test.x.long().sum())))


def test_processes_with_other_splits_each_read_their_own(tmp_path):
    """Parallel sweep jobs over data.split_seed rewrite one digits tree; without taking turns a job
    could read the tree another had just written, and train on a split it did not record.

    The two processes: a fresh one (split 1) and this one (split 2), which starts its loads once the
    other's begin, so that they overlap; one interpreter start-up fewer than two fresh processes."""
    import multiprocessing as mp
    import queue

    from sklearn.datasets import load_digits

    images = np.clip(np.round(load_digits().images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    expected = {s: int(images[np.random.default_rng(s).permutation(len(images))[:359]].astype(np.int64).sum())
                for s in (1, 2)}
    root = str(tmp_path / "digits")
    ctx = mp.get_context("spawn")
    out, started = ctx.Queue(), ctx.Event()
    other = ctx.Process(target=_read_split_sums, args=(root, 1, 4, out, started))
    other.start()
    try:
        assert started.wait(timeout=120), "the other process never started its loads"
        mine: queue.Queue = queue.Queue()
        _read_split_sums(root, 2, 4, mine)
        seen = [out.get(timeout=120) for _ in range(4)] + [mine.get_nowait() for _ in range(4)]
    finally:
        other.join(timeout=60)
    assert all(total == expected[seed] for seed, total in seen), (seen, expected)


def test_an_evaluation_cut_to_its_first_batches_sees_every_class(data_dir):
    """The digits' test split is stored class by class: debug=limit's two test batches held
    classes 0-3 only, and a short run's test/acc read 0.0 beside a val/acc of 0.23."""
    from types import SimpleNamespace

    dm = DigitsDataModule(root=str(data_dir / "digits"), batch_size=64)
    dm.setup()

    def first_labels(**limits):
        dm.trainer = SimpleNamespace(**{"world_size": 1, "fast_dev_run": False, "limit_val_batches": 1.0,
                                        "limit_test_batches": 1.0, **limits})
        loader = dm.test_dataloader()
        return torch.cat([y for _, (_, y) in zip(range(2), loader)])

    whole = first_labels()
    assert set(whole.tolist()) <= {0, 1, 2, 3}  # the stored order: the whole split is read anyway
    cut = first_labels(limit_test_batches=2)
    assert len(cut) == 128 and set(cut.tolist()) == set(range(10))
    assert torch.equal(cut, first_labels(limit_test_batches=2))  # the same sample every time
    dm.trainer = None
