"""Cross-validation (``data.folds``/``data.fold``): stratified folds of a source's training and
validation samples, recorded, evaluated, kept on resume, refused when ill-set, and averaged by a sweep."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from litlab.data.datasets import split_off
from litlab.data.digits import DigitsDataModule
from litlab.data.image_folder import ImageFolderDataModule
from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from tests.conftest import refused_before_torch, run_cli
from tests.helpers import write_image_folder

# three classes of uneven size: 23, 17 and 9 samples, interleaved
LABELS = [0] * 23 + [1] * 17 + [2] * 9
LABELS = [LABELS[i] for i in np.random.default_rng(3).permutation(len(LABELS))]


@pytest.mark.parametrize("folds", [2, 5, 7])
def test_folds_are_disjoint_cover_the_pool_and_spread_every_class_evenly(folds):
    from litlab.data.datasets import fold_split

    n = len(LABELS)
    outs = []
    for fold in range(folds):
        keep, out = fold_split(LABELS, folds, fold, seed=11)
        assert sorted(keep.tolist() + out.tolist()) == list(range(n))  # a fold's two parts: the pool, once
        outs.append(out.tolist())
    assert sorted(i for out in outs for i in out) == list(range(n))  # each sample validates in one fold
    sizes = [len(out) for out in outs]
    assert max(sizes) - min(sizes) <= 1
    for c in (0, 1, 2):  # stratified: a class's count per fold differs by at most one
        per_fold = [sum(LABELS[i] == c for i in out) for out in outs]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == LABELS.count(c)


def test_the_same_seed_gives_the_same_folds_and_another_seed_others():
    from litlab.data.datasets import fold_split

    first = [fold_split(LABELS, 5, f, seed=4)[1].tolist() for f in range(5)]
    assert first == [fold_split(LABELS, 5, f, seed=4)[1].tolist() for f in range(5)]
    assert first != [fold_split(LABELS, 5, f, seed=5)[1].tolist() for f in range(5)]


def test_a_class_smaller_than_the_folds_keeps_a_training_sample_in_every_fold():
    from litlab.data.datasets import fold_split

    labels = [0] * 20 + [1] + [2] * 2  # class 1: one sample; class 2: two, fewer than the 5 folds
    for fold in range(5):
        keep, out = fold_split(labels, 5, fold, seed=0)
        kept = Counter(labels[i] for i in keep.tolist())
        assert kept[1] == 1 and kept[2] >= 1
        assert 20 not in out.tolist()  # the single sample trains in every fold and never validates


def _npz(path: Path, n_train: int = 30, n_val: int | None = 12, n_test: int = 9) -> Path:
    """Arrays whose every sample is told apart by its value (x = its number in the file)."""
    arrays, start = {}, 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n is None:
            continue
        arrays[f"x_{split}"] = np.arange(start, start + n, dtype=np.float32).reshape(n, 1, 1)
        arrays[f"y_{split}"] = np.arange(n) % 3
        start += n
    np.savez(path, **arrays)
    return path


def _ids(split) -> list[int]:
    return sorted(int(v) for v in split.x.flatten().tolist())


@pytest.mark.parametrize("n_val", [12, None])
def test_npz_folds_cut_x_train_and_x_val_together_and_leave_x_test(tmp_path, n_val, caplog):
    path = _npz(tmp_path / "a.npz", n_val=n_val)
    pool = 30 + (n_val or 0)
    vals = []
    for fold in range(3):
        with caplog.at_level(logging.INFO, logger="litlab"):
            dm = NpzDataModule(path=str(path), folds=3, fold=fold, split_seed=2)
            dm.setup()
        assert sorted(_ids(dm.splits.train) + _ids(dm.splits.val)) == list(range(pool))
        assert _ids(dm.splits.test) == list(range(pool, pool + 9))
        assert dm.describe()["folds"] == 3 and dm.describe()["fold"] == fold
        vals += _ids(dm.splits.val)
        assert (f"data: fold {fold} of 3 ({len(dm.splits.val)} validation, {len(dm.splits.train)} training samples)"
                in caplog.text)
    assert sorted(vals) == list(range(pool))


def test_without_folds_the_splits_are_the_ones_before(tmp_path, data_dir):
    """folds null: the digits' train/ and val/ folders as they are, and the npz hold-out of split_off."""
    path = _npz(tmp_path / "a.npz", n_val=None)
    dm = NpzDataModule(path=str(path), folds=None, split_seed=2)
    dm.setup()
    keep, out = split_off(torch.arange(30) % 3, 0.1, 2)
    assert _ids(dm.splits.train) == keep.tolist() and _ids(dm.splits.val) == out.tolist()
    assert "folds" not in dm.describe()
    digits = DigitsDataModule(root=str(data_dir / "digits"), in_memory=False, folds=None, fold=0)
    digits.prepare_data()
    digits.setup()
    for split in ("train", "val", "test"):
        on_disk = sorted(p.relative_to(data_dir / "digits") for p in (data_dir / "digits" / split).rglob("*.png"))
        served = sorted(Path(f).relative_to(data_dir / "digits") for f in getattr(digits.splits, split).files)
        assert served == on_disk


def test_image_folder_folds_pool_train_and_val_folders(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    pool = {p for s in ("train", "val") for p in (root / s).rglob("*.png")}
    vals = []
    for fold in range(4):
        dm = ImageFolderDataModule(root=str(root), in_memory=False, folds=4, fold=fold)
        dm.setup()
        train, val = set(dm.splits.train.files), set(dm.splits.val.files)
        assert not train & val and train | val == pool
        assert set(dm.splits.test.files) == set((root / "test").rglob("*.png"))
        assert sorted(Counter(dm.splits.val.labels).values()) == [3, 3, 3]  # 12 per class over 4 folds
        vals += list(val)
    assert sorted(vals) == sorted(pool)


@pytest.mark.parametrize("folds,fold,match", [
    (1, 0, r"^data\.folds must be an integer >= 2"),
    (2.5, 0, r"^data\.folds must be an integer >= 2 .* got 2\.5"),
    (True, 0, r"^data\.folds must be an integer >= 2"),
    (5, 5, r"^data\.fold must lie in 0\.\.4 .* got 5"),
    (5, -1, r"^data\.fold must lie in 0\.\.4"),
    (None, 2, r"^data\.fold=2 picks the validation fold of a cross-validation, and data\.folds is null"),
    (3, "1", r"^data\.fold must be an integer"),
])
def test_bad_fold_settings_name_the_key(folds, fold, match):
    from litlab.data.fold_settings import check_folds

    with pytest.raises(LitlabError, match=match):
        check_folds(folds, fold)
    with pytest.raises(LitlabError, match=match):
        NpzDataModule(path="never_read.npz", folds=folds, fold=fold)


def test_more_folds_than_samples_is_refused_once_the_data_is_read(tmp_path):
    path = _npz(tmp_path / "small.npz", n_train=4, n_val=2)
    dm = NpzDataModule(path=str(path), folds=7, fold=0)
    with pytest.raises(LitlabError, match=r"^data\.folds=7 asks for more folds than the 6 samples of data\.path=.*"
                                          r"\(x_train and x_val\).*Use data\.folds=6 or fewer"):
        dm.setup()


@pytest.mark.parametrize("args,message", [
    (["data.folds=1"], "data.folds must be an integer >= 2"),
    (["data.fold=3"], "data.fold=3 picks the validation fold of a cross-validation, and data.folds is null"),
    (["-m", "data.folds=3", "data.fold=0,1,2,3"], "data.fold must lie in 0..2 (the validation fold of data.folds=3"),
    (["data=synthetic", "data.folds=3"], "data.folds is not a key of data=synthetic: cross-validation cuts"),
])
def test_the_command_line_refuses_bad_fold_settings_before_torch(tmp_path, args, message):
    err = refused_before_torch("litlab.train", [*args, f"paths.root_dir={tmp_path}"], tmp_path)
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "data").exists()


NPZ_RUN = ["model=mlp", "data=npz", "trainer.max_epochs=1", "logger=none", "data.batch_size=8"]


def test_eval_split_val_scores_the_folds_validation_samples_and_a_resume_keeps_the_fold(cfg_factory, tmp_path):
    from litlab.evaluation import evaluate
    from litlab.training import train

    path = _npz(tmp_path / "a.npz", n_train=60, n_val=15, n_test=15)
    train(cfg_factory([*NPZ_RUN, f"data.path={path}", "data.folds=3", "data.fold=1"], name="f1"))
    record = json.loads((tmp_path / "f1" / "metrics.json").read_text())
    assert record["folds"] == 3 and record["fold"] == 1
    ckpt = torch.load(record["best_ckpt"], weights_only=False)
    assert ckpt["litlab"]["data"]["folds"] == 3 and ckpt["litlab"]["data"]["fold"] == 1
    dm = NpzDataModule(path=str(path), folds=3, fold=1)
    dm.setup()
    cfg = cfg_factory([f"ckpt_path={record['best_ckpt']}", "split=val"], name="ev", config_name="eval", fast=False)
    with torch.no_grad():
        metrics = evaluate(cfg, [])
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert scored["samples"] == len(dm.splits.val) == 25
    assert metrics["val/acc"] == pytest.approx(record["val/acc"], abs=1e-6)  # the run's own validation figure
    cfg = cfg_factory([f"ckpt_path={record['best_ckpt']}", "split=val"], name="ev2", config_name="eval", fast=False)
    with pytest.raises(LitlabError, match=r"^The data is fold 2 of data\.folds=3 but the model of ckpt_path="
                                          r".* was trained on fold 1 of data\.folds=3"):
        evaluate(cfg, ["data.fold=2"])
    before = (tmp_path / "f1" / "metrics.json").read_bytes()
    with pytest.raises(LitlabError, match=r"but the data differs \(data\.fold 1 in the checkpoint, 2 here\)"):
        train(cfg_factory([*NPZ_RUN, f"data.path={path}", "data.folds=3", "data.fold=2", "trainer.max_epochs=2",
                           "ckpt_path=last"], name="f1"))
    assert (tmp_path / "f1" / "metrics.json").read_bytes() == before


def test_a_checkpoint_from_before_the_fold_keys_resumes_without_them(cfg_factory, tmp_path):
    from litlab.resume import check_same_data_settings

    cfg = cfg_factory(["data=npz", "data.path=a.npz"])
    stored = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in ("folds", "fold")}
    check_same_data_settings(cfg, {"litlab": {"config": {"data": stored}}}, "old.ckpt")
    with pytest.raises(LitlabError, match=r"data\.folds absent in the checkpoint, 3 here"):
        check_same_data_settings(cfg_factory(["data=npz", "data.path=a.npz", "data.folds=3"], name="new"),
                                 {"litlab": {"config": {"data": stored}}}, "old.ckpt")


@pytest.mark.slow
def test_a_sweep_over_the_folds_averages_in_the_summary(tmp_path):
    from litlab.summarize import summarize

    path = _npz(tmp_path / "a.npz", n_train=60, n_val=15, n_test=15)
    proc = run_cli("litlab.train", "-m", *NPZ_RUN, f"data.path={path}", "data.folds=2", "data.fold=0,1",
                   "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", f"paths.log_dir={tmp_path}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    records = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert [(r["folds"], r["fold"]) for r in records] == [(2, 0), (2, 1)]
    (row,) = summarize(sweep_dir, average_over="data.fold")["averaged"]["rows"]
    accs = [r["val/acc"] for r in records]
    assert row["n"] == 2 and row["val/acc mean"] == pytest.approx(np.mean(accs))
    assert row["val/acc std"] == pytest.approx(np.std(accs, ddof=1))
