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
    path = _npz(tmp_path / "small.npz", n_train=6, n_val=3)  # labels 0 1 2 0 1 2 and 0 1 2
    dm = NpzDataModule(path=str(path), folds=10, fold=0)
    with pytest.raises(LitlabError, match=r"^data\.folds=10 asks for more folds than the 9 samples of data\.path=.*"
                                          r"\(x_train and x_val\) that can validate .*Use data\.folds=9 or fewer"):
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


def _evaluating(dm, class_names: list[str], preprocess: dict):
    """``dm`` set up as eval builds it for a checkpoint whose record gives these classes and normalization."""
    dm.trained = {"class_names": class_names, "preprocess": preprocess}
    dm.setup()
    return dm


def test_eval_of_a_fold_run_on_a_new_npz_file_scores_its_x_val(tmp_path):
    """New data (no x_train) is not the run's pool: its x_val is scored whole, as the run's
    validation fold could not be cut from it anyway."""
    arrays = {"x_val": np.arange(7, dtype=np.float32).reshape(7, 1, 1), "y_val": np.arange(7) % 3,
              "x_test": np.arange(7, 12, dtype=np.float32).reshape(5, 1, 1), "y_test": np.arange(5) % 3}
    np.savez(tmp_path / "new.npz", **arrays)
    pre = {"kind": "sequence", "mean": [0.0], "std": [1.0]}
    dm = _evaluating(NpzDataModule(path=str(tmp_path / "new.npz"), folds=3, fold=1), ["0", "1", "2"], pre)
    assert _ids(dm.splits.val) == list(range(7)) and _ids(dm.splits.test) == list(range(7, 12))


def test_eval_of_a_fold_run_on_a_new_image_folder_scores_its_val_folder(tmp_path):
    root = write_image_folder(tmp_path / "new", splits=("val", "test"), per_class=2)
    pre = {"kind": "image", "mean": [0.5], "std": [0.25], "pixels": True}
    dm = _evaluating(ImageFolderDataModule(root=str(root), in_memory=False, folds=3, fold=1), ["a", "b", "c"], pre)
    assert sorted(dm.splits.val.files) == sorted((root / "val").rglob("*.png"))


def test_eval_split_val_of_an_image_folder_with_train_scores_the_folds_val_samples(tmp_path):
    """The run's own folder (train/ there): the validation fold of train/ and val/, not val/."""
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    trained = ImageFolderDataModule(root=str(root), in_memory=False, folds=4, fold=1)
    trained.setup()
    pre = trained.preprocess.to_dict()
    dm = _evaluating(ImageFolderDataModule(root=str(root), in_memory=False, folds=4, fold=1), ["a", "b", "c"], pre)
    assert dm.splits.val.files == trained.splits.val.files
    assert set(dm.splits.val.files) != set((root / "val").rglob("*.png"))
    assert set(dm.splits.val.files) & set((root / "train").rglob("*.png"))


def _fold_names(dm) -> list[list[str]]:
    """Each fold's validation files as ``<class>/<file>``, wherever they lie."""
    return sorted("/".join(Path(f).parts[-2:]) for f in dm.splits.val.files)


def test_digits_folds_do_not_depend_on_val_fraction(data_dir, caplog):
    """The pool (every image but the test split's) is the same at any data.val_fraction, and so are its folds."""
    vals = []
    for val_fraction in (0.15, 0.25):
        with caplog.at_level(logging.INFO, logger="litlab"):
            dm = DigitsDataModule(root=str(data_dir / "digits"), in_memory=False, val_fraction=val_fraction, folds=5,
                                  fold=2)
            dm.prepare_data()
            dm.setup()
        vals.append(_fold_names(dm))
    assert len(vals[0]) == 288 and vals[0] == vals[1]
    for val_fraction in (0.15, 0.25):
        assert (f"data.val_fraction is not used with data.folds (each fold holds out 1/k of the samples; "
                f"data.val_fraction={val_fraction} is ignored)") in caplog.text


def test_digits_folds_read_one_tree_and_check_only_the_test_fraction(data_dir):
    """With folds, data.val_fraction sets neither the pool nor the tree written to disk, so it neither
    writes a tree of its own nor makes a valid data.test_fraction fail its sum check."""
    root = data_dir / "digits"
    for val_fraction in (0.05, 0.3):
        dm = DigitsDataModule(root=str(root), in_memory=True, val_fraction=val_fraction, folds=5, fold=0)
        dm.prepare_data()
    assert not (root / "splits").exists()  # the default tree, once
    dm = DigitsDataModule(root=str(root), in_memory=False, val_fraction=0.15, test_fraction=0.8, folds=3, fold=1)
    dm.prepare_data()
    dm.setup()
    assert len(_fold_names(dm)) > 0 and sorted(p.name for p in (root / "splits").iterdir()) == [
        "seed1234_val0.1_test0.8"]
    with pytest.raises(LitlabError, match="data.test_fraction must leave at least 10% of the digits for the folds"):
        DigitsDataModule(root=str(root), test_fraction=0.95, folds=3)

def test_image_folder_folds_do_not_depend_on_which_folder_holds_a_file(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    for f in list((root / "val").rglob("*.png")):  # names of their own: val/b/v0.png may move to train/b/
        f.rename(f.with_name(f"v{f.name}"))
    before = []
    for fold in range(3):
        dm = ImageFolderDataModule(root=str(root), in_memory=True, folds=3, fold=fold)
        dm.setup()
        before.append((sorted(dm.splits.val.y.tolist()), dm.splits.val.x.sum().item()))
    for name in ("v0.png", "v3.png"):  # two of val/'s files move to train/
        (root / "val" / "b" / name).rename(root / "train" / "b" / name)
    after = []
    for fold in range(3):
        dm = ImageFolderDataModule(root=str(root), in_memory=True, folds=3, fold=fold)
        dm.setup()
        after.append((sorted(dm.splits.val.y.tolist()), dm.splits.val.x.sum().item()))
    assert after == before


@pytest.mark.parametrize("n_val,noted", [(None, True), (12, False)])
def test_npz_folds_note_that_val_fraction_is_unused_where_it_would_hold_out(tmp_path, caplog, n_val, noted):
    path = _npz(tmp_path / "a.npz", n_val=n_val)
    with caplog.at_level(logging.INFO, logger="litlab"):
        NpzDataModule(path=str(path), folds=3, fold=0, val_fraction=0.3).setup()
    assert ("data.val_fraction is not used with data.folds" in caplog.text) == noted


def test_a_class_of_one_sample_takes_no_folds_turn_and_the_advice_holds_in_every_fold():
    from litlab.data.datasets import fold_of_pool

    labels = [0, 1, 2, 0, 1]  # class 2: one sample, which can never validate
    for fold in range(5):
        with pytest.raises(LitlabError, match=r"^data\.folds=5 asks for more folds than the 4 samples of here that can "
                                              r"validate .*less 1 alone in its class.*Use data\.folds=4 or fewer\.$"):
            fold_of_pool(labels, 5, fold, seed=0, where="here")
    outs = [fold_of_pool(labels, 4, fold, seed=0, where="here")[1].tolist() for fold in range(4)]
    assert sorted(i for out in outs for i in out) == [0, 1, 3, 4] and all(len(out) == 1 for out in outs)


def test_four_folds_of_a_a_b_c_d_d_each_validate_on_one_sample_of_a_or_d():
    from litlab.data.datasets import fold_of_pool

    labels = [0, 0, 1, 2, 3, 3]  # A A B C D D: B and C alone in their class
    for seed in range(5):
        outs = [fold_of_pool(labels, 4, fold, seed, "here", ["A", "B", "C", "D"])[1].tolist() for fold in range(4)]
        assert sorted(i for out in outs for i in out) == [0, 1, 4, 5]
    with pytest.raises(LitlabError, match=r"than the 4 samples of here that can validate .*less 2 alone in their class"
                                          r".*Use data\.folds=4 or fewer"):
        fold_of_pool(labels, 5, 0, 0, "here", ["A", "B", "C", "D"])


def test_eval_refuses_another_fold_with_evals_advice_before_its_folder(tmp_path):
    """``litlab.eval ckpt_path=... data.fold=9``: the run's own fold is the one to evaluate."""
    ckpt = tmp_path / "run.ckpt"
    data = {"_target_": "litlab.data.npz.NpzDataModule", "path": str(_npz(tmp_path / "a.npz")), "folds": 3, "fold": 1}
    torch.save({"litlab": {"config": {"data": data}, "data": {"folds": 3, "fold": 1}}, "state_dict": {}}, ckpt)
    for given in ("data.fold=9", "data.folds=5"):
        err = refused_before_torch("litlab.eval", [f"ckpt_path={ckpt}", given, f"paths.root_dir={tmp_path}"], tmp_path)
        shown = "fold 9 of data.folds=3" if given == "data.fold=9" else "fold 1 of data.folds=5"
        assert (f"The data is {shown} but the model of ckpt_path={ckpt} was trained on fold 1 of data.folds=3" in err
                and "Leave data.folds and data.fold out of the command (the run's own are used)." in err)
        assert "Sweep every fold" not in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("given,run,message", [
    ({"fold": 2}, {"folds": None, "fold": 0}, "data.fold=2 picks a cross-validation fold, and the model of "
                                              "ckpt_path=r.ckpt was trained on one hold-out split (data.folds=null)"),
    ({"folds": 4}, {"folds": None, "fold": 0}, "The data is fold 0 of data.folds=4 but the model of ckpt_path=r.ckpt "
                                               "was trained on one hold-out split"),
    ({"fold": 7}, None, "data.fold=7 picks the validation fold of a cross-validation, and data.folds is null"),
    ({"folds": None, "fold": 3}, {"folds": None, "fold": 0}, "data.fold=3 picks a cross-validation fold, and the "
                                                             "model of ckpt_path=r.ckpt was trained on one hold-out"),
    # data.folds=null alone names no fold: the run's own fold is not "given" (it was, as data.fold=2)
    ({"folds": None}, {"folds": 5, "fold": 2}, "The data is one hold-out split (data.folds=null) but the model of "
                                               "ckpt_path=r.ckpt was trained on fold 2 of data.folds=5"),
])
def test_eval_fold_settings_get_evals_advice(given, run, message):
    from litlab.data.fold_settings import check_eval_folds

    cfg = OmegaConf.create({"ckpt_path": "r.ckpt", "data": given})
    with pytest.raises(LitlabError) as e:
        check_eval_folds(cfg, None if run is None else {"data": {"path": "a.npz", **run}})
    assert str(e.value).startswith(message)
    assert "out of the command" in str(e.value) and "Sweep" not in str(e.value) and "Add data.folds" not in str(e.value)
    check_eval_folds(OmegaConf.create({"ckpt_path": "r.ckpt", "data": {"fold": 1}}), {"data": {"folds": 3, "fold": 1}})
