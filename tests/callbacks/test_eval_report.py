"""EvalReport: confusion matrices, per-class tables, top-k scalars and misclassified samples in
TensorBoard, with numbers checked against the task's own accuracy."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image
from tensorboard.util.tensor_util import make_ndarray

from litlab.callbacks.eval_report import EvalReport, _Tally
from litlab.errors import LitlabError
from litlab.training import train
from tests.callbacks.conftest import EVERYTHING, read_events


def image(events, tag: str, index: int = -1) -> Image.Image:
    return Image.open(io.BytesIO(events.Images(tag)[index].encoded_image_string))


def table_rows(events, tag: str) -> list[list[str]]:
    text = make_ndarray(events.Tensors(f"{tag}/text_summary")[-1].tensor_proto).item().decode()
    lines = text.splitlines()[2:]  # after the header and the alignment row
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_confusion_matrices_for_every_validation_epoch_and_test(tensorboard_run):
    _, _, events = tensorboard_run
    assert len(events.Images("val/confusion_matrix")) == 2  # every_n_epochs=1, 2 epochs
    assert len(events.Images("test/confusion_matrix")) == 1
    width, height = image(events, "test/confusion_matrix").size
    assert width > 300 and height > 300


def test_per_class_table_matches_the_task_accuracy(tensorboard_run):
    _, metrics, events = tensorboard_run
    assert len(events.Tensors("val/per_class/text_summary")) == 2
    rows = table_rows(events, "test/per_class")
    classes = rows[:-2]
    assert [r[0] for r in classes] == [str(d) for d in range(10)]
    assert rows[-1][0] == "**weighted avg**"
    # support-weighted recall is the accuracy, computed here from the confusion matrix
    assert float(rows[-1][2]) == pytest.approx(metrics["test/acc"], abs=1e-4)
    assert sum(int(r[4]) for r in classes) == 359  # the digits test split


def test_top5_accuracy_scalars(tensorboard_run):
    _, metrics, events = tensorboard_run
    val = [e.value for e in events.Scalars("val/acc_top5")]
    assert len(val) == 2 and all(0 < v <= 1 for v in val)
    assert metrics["test/acc_top5"] >= metrics["test/acc"]
    assert events.Scalars("test/acc_top5")[-1].value == pytest.approx(metrics["test/acc_top5"])


def test_top_k_0_runs_no_top_k_and_logs_no_top_k_accuracy(cfg_factory, tmp_path, monkeypatch):
    """top_k=0 (as litlab.eval builds the report) ran logits.topk(0) on every val/test batch: the
    condition was only "more classes than top_k"."""
    asked: list[int] = []
    topk = torch.Tensor.topk

    def spy(self, k, *args, **kwargs):
        asked.append(k)
        return topk(self, k, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "topk", spy)
    train(cfg_factory(["model=mlp", "trainer.max_epochs=1", "logger=tensorboard", "callbacks.eval_report.top_k=0"]))
    monkeypatch.undo()
    assert 0 not in asked
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "test/acc" in metrics and not [k for k in metrics if "acc_top" in k]
    assert not [tag for tag in read_events(tmp_path / "run").Tags()["scalars"] if "acc_top" in tag]


@pytest.mark.parametrize("top_k,counted", [(0, False), (3, True), (10, False), (12, False)])
def test_tally_counts_top_k_hits_only_for_0_lt_top_k_lt_classes(top_k, counted):
    g = torch.Generator().manual_seed(top_k)
    logits, y = torch.randn(50, 10, generator=g), torch.randint(0, 10, (50,), generator=g)
    tally = _Tally(keep=0, bins=15, top_k=top_k)
    tally.add(logits[:20], y[:20], logits[:20])
    tally.add(logits[20:], y[20:], logits[20:])
    if not counted:  # none asked for, or every sample a hit: neither counted nor logged
        assert tally.topk_hits is None
        return
    ranks = (-logits.numpy()).argsort(axis=1)[:, :top_k]  # (50, k) the k highest logits' classes
    assert int(tally.topk_hits) == int((ranks == y.numpy()[:, None]).any(axis=1).sum())


def test_calibration_scalars_and_reliability_diagrams(tensorboard_run):
    _, metrics, events = tensorboard_run
    val = [e.value for e in events.Scalars("val/ece")]
    assert len(val) == 2 and all(0 <= v <= 1 for v in val)
    assert 0 <= metrics["test/ece"] <= 1
    assert events.Scalars("test/ece")[-1].value == pytest.approx(metrics["test/ece"])
    # drawn with the confusion matrices: each validation (every_n_epochs=1) and the test
    for stage, drawn in (("val", 2), ("test", 1)):
        diagrams = events.Images(f"{stage}/reliability")
        assert [e.step for e in diagrams] == [e.step for e in events.Images(f"{stage}/confusion_matrix")]
        assert len(diagrams) == drawn and min(image(events, f"{stage}/reliability").size) > 300


def test_misclassified_test_samples_grid(tensorboard_run):
    _, metrics, events = tensorboard_run
    assert metrics["test/acc"] < 1.0  # two epochs leave mistakes to show
    assert len(events.Images("test/misclassified")) == 1
    assert image(events, "test/misclassified").size[0] > 300


def test_sequences_get_line_plots_and_no_histograms_by_default(cfg_factory, tmp_path):
    cfg = cfg_factory(["data=synthetic_seq", "data.num_train=128", "data.num_val=32", "data.num_test=32",
                       "data.noise=3.0", "model=gru", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
                       "logger=tensorboard"])
    train(cfg)
    events = read_events(tmp_path / "run")
    tags = events.Tags()
    assert {"val/confusion_matrix", "test/confusion_matrix", "test/misclassified", "val/reliability",
            "test/reliability"} <= set(tags["images"])
    assert {"val/acc_top5", "val/ece", "test/ece"} <= set(tags["scalars"])
    assert not tags["histograms"]


@pytest.mark.parametrize("key,value", [("every_n_epochs", 0), ("misclassified", -1), ("top_k", 1.5),
                                       ("calibration_bins", 0)])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(LitlabError, match=f"callbacks.eval_report.{key}"):
        EvalReport(**{key: value})


def test_the_last_validation_is_drawn_when_training_ends_before_max_epochs_reports(cfg_factory, tmp_path):
    """Validation at epoch 2 of 3 only, figures every 5th epoch: the run's last validation used to
    be drawn only at max_epochs, so this run (like one stopped early) had no validation figures."""
    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", "logger=tensorboard",
                       "test=false"]))
    events = read_events(tmp_path / "run")
    # at the step of the validation's scalars (the epoch's last training step)
    assert [e.step for e in events.Images("val/confusion_matrix")] == [2 * 19 - 1]
    assert [e.step for e in events.Images("val/reliability")] == [2 * 19 - 1]
    assert [e.step for e in events.Scalars("val/acc")] == [2 * 19 - 1]
    assert len(events.Tensors("val/per_class/text_summary")) == 1


def test_a_resume_keeps_the_finished_epochs_figures_and_histograms(cfg_factory, tmp_path):
    """A validation's figures and the weight histograms sat one step after the epoch's scalars, at
    the checkpoint's step, which a resume drops: the last finished epoch's were lost."""
    common = ["model=mlp", "logger=tensorboard", "callbacks.eval_report.every_n_epochs=1", "logger.histograms=true",
              "test=false"]
    train(cfg_factory([*common, "trainer.max_epochs=2"], name="r"))
    train(cfg_factory([*common, "trainer.max_epochs=3", "ckpt_path=last"], name="r"))
    events = read_events(tmp_path / "r")
    every_epoch = [19 - 1, 2 * 19 - 1, 3 * 19 - 1]  # each epoch's last step, where its scalars are
    # (sorted: the two starts' event files may be read in either order when made in the same second)
    assert sorted(e.step for e in events.Scalars("val/acc")) == every_epoch
    assert sorted(e.step for e in events.Images("val/confusion_matrix")) == every_epoch
    assert sorted(e.step for e in events.Histograms("weights/net.layers.1.weight")) == every_epoch


def test_a_resume_shows_only_its_own_test_and_compression_results(cfg_factory, tmp_path):
    """The first start's test results (logged at the checkpoint's step) stayed beside the resumed
    run's in TensorBoard, its compression results (logged at step 0) too, and TensorBoard's Python
    reader showed the unfinished epoch's steps twice: the resume's purge marker was read differently
    by each reader. Now the earlier events are gone from the files, whichever reader reads them."""
    from collections import Counter

    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    common = ["model=mlp", "logger=tensorboard", "callbacks.eval_report.every_n_epochs=1"]
    train(cfg_factory([*common, "trainer.max_epochs=2", "compress=prune", "compress.finetune.epochs=1",
                       "compress.measure.warmup=1", "compress.measure.repeats=2"], name="r"))
    train(cfg_factory([*common, "trainer.max_epochs=3", "ckpt_path=last"], name="r"))
    test_acc = json.loads((tmp_path / "r" / "metrics.json").read_text())["test/acc"]

    # every (tag, step) once in the files: no reader can show an earlier start's point
    points, markers = Counter(), 0
    for path in (tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"):
        for event in LegacyEventFileLoader(str(path)).Load():
            markers += event.HasField("session_log")
            points.update((v.tag, event.step) for v in event.summary.value)
    # ("epoch" goes with each of Lightning's logging calls: several at an epoch's step, one value)
    assert [p for p, n in points.items() if n > 1 and p[0] != "epoch"] == []
    assert not [tag for tag, _ in points if tag.startswith("compress")]
    assert markers == 0  # nothing left for a reader to interpret

    legacy = read_events(tmp_path / "r")
    plugin = plugin_event_accumulator.EventAccumulator(str(tmp_path / "r" / "tensorboard"), size_guidance=EVERYTHING)
    plugin.Reload()
    assert [e.value for e in legacy.Scalars("test/acc")] == [pytest.approx(test_acc)]
    assert [e.step for e in plugin.Tensors("test/acc")] == [3 * 19]
    assert len(legacy.Tensors("test/per_class/text_summary")) == 1
    steps = [e.step for e in plugin.Tensors("train/loss_step")]
    assert len(steps) == len(set(steps)) == len(legacy.Scalars("train/loss_step"))
