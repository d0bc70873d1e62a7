"""Class weights of the training loss (``model.class_weights``, ``class_weights.py``): the weighted
loss against torch's own, balanced weights against scikit-learn's, null as before, the run's record,
resume, compression fine-tuning, and the refusals."""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path

import hydra
import lightning.pytorch as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.class_weights import check_class_weights, label_counts, resolve, resolve_on_data
from litlab.compression.distillation import distill_loss
from litlab.compression.finetune import FineTune, class_weight_tensor
from litlab.config_check import check_overrides
from litlab.data.datasets import FileSplit
from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from litlab.tasks.batch_mixing import Mixup
from litlab.tasks.classification import Classifier
from litlab.tasks.loss_weights import LossWeights
from litlab.training import train
from tests.conftest import made_once, refused_before_torch, run_cli

WEIGHTS = [0.5, 2.0, 1.5]


def write_imbalanced_npz(path: Path, counts=(24, 10, 6), missing: int | None = None) -> Path:
    """Flat samples, learnable by class offset; ``counts`` training samples per class (a class
    ``missing`` from training appears in val and test only), balanced val and test splits."""
    rng = np.random.default_rng(0)

    def make(labels):
        y = rng.permutation(np.asarray(labels, dtype=np.int64))
        return rng.normal(size=(len(y), 12)).astype(np.float32) + y[:, None], y

    classes = len(counts) + (missing is not None)
    present = [c for c in range(classes) if c != missing]
    train_labels = [c for c, n in zip(present, counts) for _ in range(n)]
    arrays = {}
    every = list(range(classes)) * 3
    for split, labels in (("train", train_labels), ("val", every), ("test", every)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = make(labels)
    np.savez(path, **arrays)
    return path


class _Fixed(Mixup):
    """Mixup with lam 0.3 and the batch reversed as partners."""

    def __call__(self, x, y):
        return self.mix(x, y, 0.3, torch.arange(len(y) - 1, -1, -1))


class _Losses(L.Callback):
    def __init__(self):
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())


class RankWeights:
    """A callback (``+callbacks.ranks._target_=...``) that writes each rank's applied class weights
    to ``<folder>/rank<N>.json`` when training starts."""

    def __new__(cls, folder: str):
        class _Write(L.Callback):
            def on_train_start(self, trainer, pl_module):
                path = Path(folder) / f"rank{trainer.global_rank}.json"
                path.write_text(json.dumps(pl_module.class_weights))

        return _Write()


def _fit(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> tuple[L.Trainer, list[torch.Tensor]]:
    """One epoch at learning rate 0 (the weights stay put), the training batches' losses."""
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    losses = _Losses()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[losses],
                        num_sanity_val_steps=0)
    trainer.fit(model, loader, loader)
    return trainer, losses.losses


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


@pytest.mark.parametrize("mixed", [False, True], ids=["unmixed", "mixup"])
def test_the_training_loss_is_cross_entropy_with_the_weight_tensor_and_val_loss_is_not_weighted(mixed):
    x, y = _data()
    model = Classifier(nn.Linear(4, 3), partial(torch.optim.SGD, lr=0.0), label_smoothing=0.1, num_classes=3,
                       fused_optimizer=False, mixing=_Fixed() if mixed else None, class_weights=WEIGHTS)
    trainer, losses = _fit(model, x, y)
    weight = torch.tensor(WEIGHTS)
    expected = []
    with torch.no_grad():
        for xb, yb in zip(x.split(8), y.split(8)):
            if mixed:  # each term weighted, as the unmixed loss
                logits = model.net(0.3 * xb + 0.7 * xb.flip(0))
                expected.append(0.3 * F.cross_entropy(logits, yb, weight=weight, label_smoothing=0.1)
                                + 0.7 * F.cross_entropy(logits, yb.flip(0), weight=weight, label_smoothing=0.1))
            else:
                expected.append(F.cross_entropy(model.net(xb), yb, weight=weight, label_smoothing=0.1))
        plain = F.cross_entropy(model.net(x), y)
    assert [v.item() for v in losses] == pytest.approx([v.item() for v in expected], abs=1e-6)
    # the weights change the loss here: the test would pass unweighted otherwise
    assert any(abs(v.item() - F.cross_entropy(model.net(xb), yb, label_smoothing=0.1).item()) > 1e-3
               for v, xb, yb in zip(losses, x.split(8), y.split(8)))
    assert float(trainer.callback_metrics["val/loss"]) == pytest.approx(plain.item(), abs=1e-6)


def test_null_weights_give_the_plain_cross_entropy_bit_for_bit():
    x, y = _data()
    model = Classifier(nn.Linear(4, 3), partial(torch.optim.SGD, lr=0.0), label_smoothing=0.1, num_classes=3,
                       fused_optimizer=False, class_weights=None)
    _, losses = _fit(model, x, y)
    assert model.class_weights is None
    with torch.no_grad():
        for loss, xb, yb in zip(losses, x.split(8), y.split(8)):
            assert torch.equal(loss, F.cross_entropy(model.net(xb), yb, label_smoothing=0.1))


def test_the_weights_follow_the_logits_dtype_in_true_half_precision_and_stay_float32_under_autocast():
    weights = LossWeights(WEIGHTS, 3)
    net, x, y = nn.Linear(4, 3), torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
        assert logits.dtype == torch.bfloat16 and weights.tensor(logits).dtype == torch.float32
        mixed = F.cross_entropy(logits, y, weight=weights.tensor(logits))
    half = net.bfloat16()(x.bfloat16())  # trainer.precision=bf16-true: torch refuses float32 weights here
    assert weights.tensor(half).dtype == torch.bfloat16
    expected = F.cross_entropy(half.float(), y, weight=torch.tensor(WEIGHTS))
    assert F.cross_entropy(half, y, weight=weights.tensor(half)).item() == pytest.approx(expected.item(), abs=1e-2)
    assert mixed.item() == pytest.approx(expected.item(), abs=1e-2)


def test_balanced_weights_of_an_imbalanced_npz_are_sklearns(tmp_path):
    dm = NpzDataModule(path=str(write_imbalanced_npz(tmp_path / "skew.npz")))
    dm.setup("fit")
    labels = dm.splits.train.y.numpy()
    assert np.bincount(labels).tolist() == [24, 10, 6]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert resolve("balanced", dm.splits.train, 3) == pytest.approx(expected.tolist(), rel=1e-12)
    # the fine-tuning's tensor is the same
    assert class_weight_tensor(FineTune(class_weights="balanced"), dm).tolist() == pytest.approx(expected, rel=1e-6)


def test_labels_of_streamed_image_files_are_counted_without_decoding_an_image():
    def decode(path):
        raise AssertionError(f"{path} was decoded")

    split = FileSplit([Path(f"{i}.png") for i in range(7)], [0, 2, 2, 1, 2, 0, 2], decode)
    assert label_counts(split, 4) == [2, 1, 4, 0]


def _balanced_ddp_run(tmp: Path) -> None:
    """Into ``tmp``: skew.npz, the run folder run/ and the ranks' applied weights in ranks/."""
    path = write_imbalanced_npz(tmp / "skew.npz")
    run, ranks = tmp / "run", tmp / "ranks"
    ranks.mkdir()
    done = run_cli("litlab.train", "data=npz", f"data.path={path}", "model=mlp", "model.class_weights=balanced",
                   "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1", "logger=none", "test=false",
                   f"+callbacks.ranks._target_={__name__}.RankWeights", f"+callbacks.ranks.folder={ranks}",
                   f"hydra.run.dir={run}", env={"PYTHONPATH": os.pathsep.join(
                       filter(None, [os.environ.get("PYTHONPATH"), str(Path(__file__).resolve().parents[1])]))})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def balanced_ddp_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(npz, run folder, folder of the ranks' applied weights)`` of one run of the real entrypoint
    on an imbalanced npz with ``model.class_weights=balanced`` over two DDP ranks. Two tests read it
    (one start-up less): the run's record, log and checkpoint, and the weights each rank applied;
    one run for the session, also when ``pytest -n N`` sends the two to different workers."""
    tmp = made_once(tmp_path_factory, "balanced", _balanced_ddp_run)
    return tmp / "skew.npz", tmp / "run", tmp / "ranks"


@pytest.mark.slow
def test_a_run_on_an_imbalanced_npz_records_and_logs_the_balanced_weights(balanced_ddp_run):
    path, run, _ = balanced_ddp_run
    metrics = json.loads((run / "metrics.json").read_text())
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.load(path)["y_train"])
    assert metrics["status"] == "completed"
    assert metrics["class_weights"] == pytest.approx(expected.tolist(), rel=1e-12)
    log = (run / "train.log").read_text()
    assert log.count("class weights of the training loss (model.class_weights=balanced): [0.5556, 1.333, 2.222]") == 1
    # the checkpoint keeps the weights applied, for a resume
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["class_weights"] == metrics["class_weights"]


@pytest.mark.slow
def test_every_ddp_rank_applies_the_weights_of_the_whole_training_split(balanced_ddp_run):
    path, run, ranks = balanced_ddp_run
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.load(path)["y_train"]).tolist()
    applied = [json.loads((ranks / f"rank{r}.json").read_text()) for r in (0, 1)]
    # from the whole split (not a rank's 20-sample shard), the same on both ranks
    assert applied[0] == applied[1] == pytest.approx(expected, rel=1e-12)
    assert (run / "train.log").read_text().count("class weights of the training loss") == 1


def test_a_resume_keeps_the_checkpoints_weights(cfg_factory, tmp_path, caplog):
    common = ["model=mlp", "logger=none", "test=false", "+trainer.limit_train_batches=2",
              "+trainer.limit_val_batches=1"]
    train(cfg_factory([*common, "trainer.max_epochs=1", "model.class_weights=[1,2,3,4,5,6,7,8,9,10]"]))
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert first["class_weights"] == [float(w) for w in range(1, 11)]
    caplog.set_level(logging.WARNING, logger="litlab.tasks.loss_weights")
    train(cfg_factory([*common, "trainer.max_epochs=2", "ckpt_path=last"]))  # model.class_weights=null now
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert resumed["global_step"] == 4 and resumed["class_weights"] == first["class_weights"]
    assert any("the resume keeps the checkpoint's" in r.getMessage() for r in caplog.records)


def test_compression_fine_tuning_takes_the_runs_weights_and_distillation_weighs_its_hard_labels(cfg_factory):
    cfg = cfg_factory(["model=mlp", "model.class_weights=[1,2,3,4,5,6,7,8,9,10]", "compress=prune"])
    method = hydra.utils.instantiate(cfg.compress, _convert_="all")
    assert method.finetune.class_weights == [float(w) for w in range(1, 11)]
    none = hydra.utils.instantiate(cfg_factory(["model=mlp", "compress=distill"], name="d").compress, _convert_="all")
    assert none.finetune.class_weights is None
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 2, 1, 0])
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    weight = torch.tensor(WEIGHTS)
    loss = distill_loss(teacher, 0.3, 4.0, weight)(student, x, y)
    logits = student(x)
    kl = F.kl_div(F.log_softmax(logits / 4.0, dim=1), F.log_softmax(teacher(x) / 4.0, dim=1), reduction="batchmean",
                  log_target=True)
    assert loss.item() == pytest.approx((0.3 * F.cross_entropy(logits, y, weight=weight) + 0.7 * 16 * kl).item(),
                                        abs=1e-6)


@pytest.mark.parametrize("value,message", [
    ("Balanced", r"model.class_weights=Balanced is not a setting litlab knows: it takes null \(plain cross-entropy\), "
                 r"balanced .* or a list of num_classes positive numbers"),
    ("[1,0,2]", r"model.class_weights=\[1,0,2\] holds 0: each class's weight must be a positive number"),
    ("[1,-2,2]", r"model.class_weights=\[1,-2,2\] holds -2: each class's weight must be a positive number"),
    ("[1,a,2]", r"model.class_weights=\[1,'a',2\] holds 'a': each class's weight must be a positive number"),
    ("[]", r"model.class_weights must be null .*; got \[\]\."),
])
def test_bad_weights_are_refused_before_the_run_folder_is_made(value, message, cfg_factory, tmp_path):
    with pytest.raises(LitlabError, match=message):
        check_class_weights(cfg_factory([f"model.class_weights={value}"]))
    folder = tmp_path / "cli"
    with pytest.raises(LitlabError, match=message):
        check_overrides([f"model.class_weights={value}", f"hydra.run.dir={folder}"])
    with pytest.raises(LitlabError, match=message):  # lr_find trains on the same loss
        check_overrides([f"model.class_weights={value}", f"hydra.run.dir={folder}"], "lr_find")
    assert not folder.exists()


def test_the_command_line_refuses_bad_weights_before_torch_with_exit_2(tmp_path):
    err = refused_before_torch("litlab.train", ["model.class_weights=[1,0]", f"hydra.run.dir={tmp_path / 'run'}"],
                               tmp_path)
    assert "model.class_weights=[1,0] holds 0" in err
    assert not (tmp_path / "run").exists()


def test_a_list_of_the_wrong_length_is_refused_before_training_naming_num_classes(cfg_factory, tmp_path):
    with pytest.raises(LitlabError, match=r"model.class_weights=\[1,2,3\] gives 3 weights, but the data has "
                                          r"num_classes=10: give one weight per class"):
        train(cfg_factory(["model=mlp", "model.class_weights=[1,2,3]"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_balanced_with_a_class_without_training_samples_is_refused_naming_it(tmp_path):
    path = write_imbalanced_npz(tmp_path / "gap.npz", counts=(8, 5, 4), missing=2)  # classes 0, 1, 3 train
    run = tmp_path / "run"
    done = run_cli("litlab.train", "data=npz", f"data.path={path}", "model=mlp", "model.class_weights=balanced",
                   "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=none", f"hydra.run.dir={run}")
    assert done.returncode == 2
    assert ("model.class_weights=balanced weighs each class by n / (num_classes * n_c) over the training split, and "
            "class 2 has no training sample (of 17)") in done.stderr
    assert not (run / "checkpoints").exists()


# ---- compression's fine-tuning weights (compress.finetune.class_weights) and the data's class count ----

@pytest.mark.parametrize("overrides,message", [
    (["compress=prune", "compress.finetune.class_weights=[1,0,2]"],
     r"^compress.finetune.class_weights=\[1,0,2\] holds 0: each class's weight must be a positive number"),
    (["compress=distill", "compress.finetune.class_weights=Balanced"],
     r"^compress.finetune.class_weights=Balanced is not a setting litlab knows"),
    # the class count known from the config: data=digits has 10, data=synthetic its data.num_classes
    (["compress=prune", "compress.finetune.class_weights=[1,2,3]"],
     r"^compress.finetune.class_weights=\[1,2,3\] gives 3 weights, but the data has num_classes=10"),
    (["model.class_weights=[1,2,3]"],
     r"^model.class_weights=\[1,2,3\] gives 3 weights, but the data has num_classes=10"),
    (["data=synthetic", "data.num_classes=4", "model.class_weights=[1,2,3]"],
     r"^model.class_weights=\[1,2,3\] gives 3 weights, but the data has num_classes=4: give one weight per class"),
])
def test_bad_fine_tuning_weights_and_wrong_lengths_are_refused_on_the_command_line_naming_the_key(
        overrides, message, tmp_path):
    folder = tmp_path / "cli"
    with pytest.raises(LitlabError, match=message):
        check_overrides([*overrides, f"hydra.run.dir={folder}"])
    assert not folder.exists()


def test_weights_of_the_right_length_or_of_data_counted_later_pass_the_command_line(tmp_path):
    folder = tmp_path / "cli"
    assert check_overrides(["data=synthetic", "data.num_classes=3", "model.class_weights=[1,2,3]",
                            "compress=prune", "compress.finetune.class_weights=[3,2,1]", f"hydra.run.dir={folder}"])
    # an npz's classes are known once it is read (only that the file is there is told before)
    (tmp_path / "x.npz").write_bytes(b"")
    assert check_overrides(["data=npz", f"data.path={tmp_path / 'x.npz'}", "model.class_weights=[1,2,3]",
                            f"hydra.run.dir={folder}"])


def test_the_command_line_refuses_bad_fine_tuning_weights_before_torch(tmp_path):
    err = refused_before_torch("litlab.train", ["compress=prune", "compress.finetune.class_weights=[1,0,2]",
                                                f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert "compress.finetune.class_weights=[1,0,2] holds 0" in err and "model.class_weights" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting,message", [
    ("balanced", r"^compress.finetune.class_weights=balanced weighs each class by n / \(num_classes \* n_c\) over "
                 r"the training split, and class 2 has no training sample \(of 17\)"),
    ("[1,2]", r"^compress.finetune.class_weights=\[1,2\] gives 2 weights, but the data has num_classes=4"),
])
def test_fine_tuning_weights_that_do_not_fit_the_data_are_refused_before_training(setting, message, cfg_factory,
                                                                                  tmp_path):
    path = write_imbalanced_npz(tmp_path / "gap.npz", counts=(8, 5, 4), missing=2)  # classes 0, 1, 3 train
    cfg = cfg_factory(["data=npz", f"data.path={path}", "model=mlp", "logger=none", "compress=prune",
                       f"compress.finetune.class_weights={setting}"])
    with pytest.raises(LitlabError, match=message):
        train(cfg)
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() and not (run / "compressed").exists()


def test_a_failure_in_compression_leaves_no_half_written_compressed_folder(cfg_factory, tmp_path, monkeypatch):
    from litlab.compression.pruning import MagnitudePrune

    def refuse(self, net, dm, ctx):
        assert (tmp_path / "run" / "compressed" / "dense.pt").is_file()  # written before the method applies
        raise LitlabError("this method refuses")

    monkeypatch.setattr(MagnitudePrune, "apply", refuse)
    cfg = cfg_factory(["model=mlp", "logger=none", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                       "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "compress=prune"])
    with pytest.raises(LitlabError, match="this method refuses"):
        train(cfg)
    assert not (tmp_path / "run" / "compressed").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # training's files are kept


def test_a_resumed_runs_compression_fine_tunes_with_the_weights_the_training_applied(cfg_factory, tmp_path, caplog):
    common = ["model=mlp", "logger=none", "test=false", "+trainer.limit_train_batches=2",
              "+trainer.limit_val_batches=1"]
    train(cfg_factory([*common, "trainer.max_epochs=1", "model.class_weights=[1,2,3,4,5,6,7,8,9,10]"]))
    caplog.set_level(logging.INFO, logger="litlab")
    # the command now gives no weights; the resume trains on the checkpoint's, and so does the fine-tuning
    train(cfg_factory([*common, "trainer.max_epochs=2", "ckpt_path=last", "compress=prune",
                       "compress.finetune.epochs=1"]))
    applied = [float(w) for w in range(1, 11)]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["class_weights"] == applied
    report = json.loads((tmp_path / "run" / "compression.json").read_text())
    assert report["settings"]["class_weights"] == applied
    messages = [r.getMessage() for r in caplog.records]
    assert ("compression fine-tunes with the class weights the training applied (model.class_weights): "
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]") in messages
    assert "fine-tuning with class weights [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in messages


def test_fine_tuning_weights_given_on_the_command_line_win_over_the_trainings(cfg_factory, caplog):
    from litlab.compression.finetune import use_class_weights

    caplog.set_level(logging.INFO, logger="litlab.compression.finetune")
    own = cfg_factory(["model=mlp", "model.class_weights=[1,2,3,4,5,6,7,8,9,10]", "compress=prune",
                       "compress.finetune.class_weights=balanced"])
    method = hydra.utils.instantiate(own.compress, _convert_="all")
    use_class_weights(method.finetune, own, [float(w) for w in range(1, 11)])
    assert method.finetune.class_weights == "balanced"
    assert caplog.messages == ["compression fine-tunes with compress.finetune.class_weights=balanced, not the "
                               "training's weights"]
    default = cfg_factory(["model=mlp", "model.class_weights=balanced", "compress=prune"], name="d")
    method = hydra.utils.instantiate(default.compress, _convert_="all")
    use_class_weights(method.finetune, default, [0.5, 2.0])  # the list the training applied, not "balanced"
    assert method.finetune.class_weights == [0.5, 2.0]


def test_balanced_fine_tuning_weights_on_data_without_splits_are_refused_naming_the_key():
    class NoSplits:
        num_classes = 3

    with pytest.raises(LitlabError, match=r"^compress.finetune.class_weights=balanced counts the training split's "
                                          r"labels, and this data module \(NoSplits\) has no splits"):
        class_weight_tensor(FineTune(class_weights="balanced"), NoSplits())
    assert class_weight_tensor(FineTune(class_weights=WEIGHTS), NoSplits()).tolist() == WEIGHTS  # a list needs none


def test_lr_find_records_the_class_weights_its_steps_applied(cfg_factory, tmp_path):
    from litlab.tuning.lr_range import lr_find

    path = write_imbalanced_npz(tmp_path / "skew.npz")
    cfg = cfg_factory(["data=npz", f"data.path={path}", "data.batch_size=8", "model=mlp", "logger=none",
                       "model.class_weights=balanced", "lr_find.num_steps=20"], config_name="lr_find")
    record = lr_find(cfg)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.load(path)["y_train"])
    assert record["class_weights"] == pytest.approx(expected.tolist(), rel=1e-12)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["class_weights"] == record["class_weights"]


@pytest.mark.parametrize("overrides,order", [
    # digits and npz classes are their label numbers: the log lists no classes (build.class_listing)
    (["model.class_weights=[1,2,3]"], "in the order of the labels (the first weight is label 0's), or"),
    (["data=synthetic", "data.num_classes=4", "model.class_weights=[1,2,3]"],
     "in output-index order (the class listing at the start of the run's log: data: classes in index order), or"),
], ids=["digits", "synthetic"])
def test_a_wrong_length_points_to_a_class_order_the_log_shows(overrides, order, tmp_path):
    """The message sent digits and npz users to "the class listing at the start of the run's log",
    which the log leaves out where the class names are the indices."""
    with pytest.raises(LitlabError) as e:
        check_overrides([*overrides, f"hydra.run.dir={tmp_path / 'cli'}"])
    assert f"give one weight per class, {order} model.class_weights=balanced" in str(e.value)


def test_a_wrong_length_on_data_read_later_names_both_orders(cfg_factory, tmp_path, caplog):
    """An npz's class count is known once it is read (the task checks the length, without the
    names): the message gives the label order for numbered classes and the listing for named ones."""
    path = write_imbalanced_npz(tmp_path / "a.npz")
    with caplog.at_level(logging.INFO, logger="litlab.build"), pytest.raises(LitlabError) as e:
        train(cfg_factory(["data=npz", f"data.path={path}", "model=mlp", "model.class_weights=[1,2]"]))
    assert "classes in index order" not in caplog.text  # npz labels are numbers: no listing printed
    assert ("give one weight per class, in the order of the labels (the first weight is label 0's) where the classes "
            "are numbered (data=digits, data=npz), else in output-index order (the class listing") in str(e.value)
    # with the data module at hand (compression's fine-tuning weights): its own order only
    dm = NpzDataModule(path=str(path))
    dm.setup("fit")
    with pytest.raises(LitlabError, match=r"give one weight per class, in the order of the labels \(the first weight "
                                          r"is label 0's\), or compress"):
        resolve_on_data([1, 2], dm, key="compress.finetune.class_weights")
