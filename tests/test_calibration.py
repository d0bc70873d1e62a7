"""Calibration: the binned sums and ECE against a NumPy reference, known constructions, the
reliability diagram, and test/ece in the records of training and of litlab.eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from litlab.callbacks.calibration import CalibrationBins, bin_index
from litlab.callbacks.eval_report import _Tally
from litlab.callbacks.reliability_figure import BAR, BAR_EDGE, reliability_figure
from litlab.evaluation import evaluate
from litlab.training import train
from tests.callbacks.conftest import read_events


def _reference(logits: np.ndarray, y: np.ndarray, bins: int) -> dict:
    """Per-bin counts, mean confidence and accuracy, ECE and MCE, written out the textbook way in
    float64: bin k holds k/B <= p < (k+1)/B, the last also p = 1."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    which = np.digitize(conf, np.arange(1, bins) / bins)  # edges[i-1] <= p < edges[i]
    count, accuracy, confidence = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for k in range(bins):
        members = which == k
        count[k] = members.sum()
        if count[k]:
            accuracy[k] = (pred[members] == y[members]).mean()
            confidence[k] = conf[members].mean()
    gaps = np.abs(accuracy - confidence)
    return {"count": count, "accuracy": accuracy, "confidence": confidence,
            "ece": float((count / count.sum() * gaps).sum()), "mce": float(gaps[count > 0].max())}


def _tally(logits: torch.Tensor, y: torch.Tensor, bins: int, batch: int | None = None) -> CalibrationBins:
    """The bins EvalReport accumulates, fed ``batch`` samples at a time."""
    tally = _Tally(keep=0, bins=bins, top_k=5)
    batch = batch or len(y)
    for start in range(0, len(y), batch):
        part = slice(start, start + batch)
        tally.add(logits[part], y[part], logits[part])
    return tally.calibration


@pytest.mark.parametrize("bins", [1, 4, 15, 37])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_bins_and_ece_match_a_numpy_reference(bins, scale):
    g = torch.Generator().manual_seed(bins)
    logits = torch.randn(600, 10, generator=g) * scale
    # labels that agree with the prediction more often where the model is more confident
    y = torch.where(torch.rand(600, generator=g) < 0.7, logits.argmax(dim=1), torch.randint(0, 10, (600,), generator=g))
    ref = _reference(logits.double().numpy(), y.numpy(), bins)
    got = _tally(logits, y, bins)
    assert got.count.numpy().tolist() == ref["count"].tolist()
    np.testing.assert_allclose(got.accuracy().numpy(), ref["accuracy"], atol=1e-12)
    np.testing.assert_allclose(got.mean_confidence().numpy(), ref["confidence"], atol=1e-6)
    assert float(got.ece()) == pytest.approx(ref["ece"], abs=1e-6)
    assert float(got.max_error()) == pytest.approx(ref["mce"], abs=1e-6)
    assert 0 < ref["ece"] < 1


@pytest.mark.parametrize("bins,confidence,expected", [
    (4, [0.0, 0.25, 0.5, 0.75, 1.0], [0, 1, 2, 3, 3]),  # 0 in the first bin, 1 in the last
    (4, [0.2499999, 0.2500001, 0.9999999], [0, 1, 3]),
    (15, [0.0, 1 / 15, 2 / 15, 14 / 15, 1.0], [0, 1, 2, 14, 14]),
    (1, [0.0, 0.5, 1.0], [0, 0, 0]),
])
def test_confidences_on_bin_edges_go_to_the_bin_above_and_one_to_the_last(bins, confidence, expected):
    got = bin_index(torch.tensor(confidence, dtype=torch.float64), bins)
    assert got.tolist() == expected
    assert np.digitize(confidence, np.arange(1, bins) / bins).tolist() == expected  # the reference's rule


def _two_class_logits(confidence: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax gives class 0 probability ``confidence`` (> 0.5: the prediction)."""
    return torch.stack([confidence.log(), (1 - confidence).log()], dim=1)  # (N, 2)


def test_a_calibrated_construction_has_no_calibration_error():
    # 40 samples at each confidence; exactly that share of them are of the predicted class 0
    levels = torch.tensor([0.55, 0.65, 0.75, 0.8, 0.9, 0.95])
    confidence = levels.repeat_interleave(40)
    y = torch.cat([(torch.arange(40) >= round(float(c) * 40)).long() for c in levels])
    bins = _tally(_two_class_logits(confidence), y, 15)
    assert bins.count.sum() == 240
    assert float(bins.ece()) == pytest.approx(0.0, abs=1e-6)
    assert float(bins.max_error()) == pytest.approx(0.0, abs=1e-6)


def test_an_overconfident_construction_has_its_known_error():
    # 100 samples at 0.9 of which 60 right (gap 0.3), 100 at 0.6 of which 60 right (gap 0)
    confidence = torch.cat([torch.full((100,), 0.9), torch.full((100,), 0.6)])
    y = torch.cat([(torch.arange(100) >= 60).long(), (torch.arange(100) >= 60).long()])
    bins = _tally(_two_class_logits(confidence), y, 15)
    assert float(bins.ece()) == pytest.approx(0.15, abs=1e-6)  # half the samples, 0.3 off
    assert float(bins.max_error()) == pytest.approx(0.3, abs=1e-6)
    assert float(_tally(_two_class_logits(confidence[:100]), y[:100], 15).ece()) == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batches_add_up_to_one_batch_of_every_sample(batch):
    g = torch.Generator().manual_seed(batch)
    logits, y = torch.randn(300, 5, generator=g) * 2, torch.randint(0, 5, (300,), generator=g)
    whole, parts = _tally(logits, y, 15), _tally(logits, y, 15, batch=batch)
    assert parts.count.tolist() == whole.count.tolist()
    torch.testing.assert_close(parts.sums, whole.sums, rtol=1e-12, atol=1e-9)
    assert float(parts.ece()) == pytest.approx(float(whole.ece()), abs=1e-12)


def test_no_samples_give_zero_rather_than_nan():
    bins = CalibrationBins.empty(15, "cpu")
    assert float(bins.ece()) == 0.0 and float(bins.max_error()) == 0.0


# --- the reliability diagram ----------------------------------------------------------------
def _overconfident_bins(bins: int) -> CalibrationBins:
    calibration = CalibrationBins.empty(bins, "cpu")
    calibration.add(torch.full((100,), 0.95), torch.arange(100) < 60)  # the last bin: 60% right
    calibration.add(torch.full((20,), 0.3), torch.arange(20) < 6)  # a calibrated bin
    return calibration


def test_reliability_figure_has_title_counts_and_axes(drawn_texts):
    img = reliability_figure(_overconfident_bins(10), "test reliability diagram")
    assert img.mode == "RGB" and img.width > 300 and img.height > 300
    ece = (100 * 0.35) / 120
    assert f"test reliability diagram (120 samples, ECE {ece:.4f}, MCE 0.3500)" in drawn_texts
    assert {"100", "20", "samples", "accuracy", "0.6", "1"} <= set(drawn_texts)
    assert "0" in drawn_texts and drawn_texts.count("100") == 1  # empty bins get no count


def _bar_heights(img) -> set[int]:
    """The heights in pixels of the blue bars standing on the plot's bottom (a bar one pixel wide
    is all edge)."""
    img = np.asarray(img).astype(int)
    blue = np.zeros(img.shape[:2], dtype=bool)
    for colour in (BAR, BAR_EDGE):
        blue |= (np.abs(img - np.array(colour)) <= 10).all(axis=-1)
    bottom = np.nonzero(blue)[0].max()  # the bars' lowest row (the legend's blue square is above)
    # per column standing on that row: how many blue pixels rise from it without a break
    return {int(np.argmin(blue[bottom::-1, c])) for c in np.nonzero(blue[bottom])[0]}


def test_reliability_bars_are_as_high_as_the_accuracy():
    heights = _bar_heights(reliability_figure(_overconfident_bins(10), "t"))
    assert len(heights) == 2  # two bars, of accuracy 0.3 and 0.6
    assert max(heights) / min(heights) == pytest.approx(2.0, rel=0.02)
    assert max(heights) == pytest.approx(0.6 * 360, abs=2)  # the plot is 360 px high


def test_reliability_figure_of_many_bins_says_how_full_the_fullest_is(drawn_texts):
    img = reliability_figure(_overconfident_bins(200), "t")
    assert img.width > 300
    assert "100 in the fullest of 200 bins" in drawn_texts
    assert not [t for t in drawn_texts if "merged" in t]  # 200 bins get a bar each


@pytest.mark.parametrize("bins,per_bar", [(361, "1 or 2"), (400, "1 or 2"), (720, "2"), (1000, "2 or 3")])
def test_more_bins_than_pixels_are_drawn_merged_and_said_so(bins, per_bar, drawn_texts):
    """Bins narrower than a pixel drew a rectangle with its right edge left of its left edge,
    which Pillow refuses (ValueError): a run with calibration_bins above 360 crashed."""
    # a right sample in every bin: every column of the plot gets a bar
    everywhere = CalibrationBins.empty(bins, "cpu")
    everywhere.add((torch.arange(bins, dtype=torch.float64) + 0.5) / bins, torch.ones(bins, dtype=torch.bool))
    img = np.asarray(reliability_figure(everywhere, "t")).astype(int)
    blue = (np.abs(img - np.array(BAR_EDGE)) <= 10).all(axis=-1)
    assert blue.any(axis=0).sum() >= 360  # the bars of all 360 columns (and the legend's square)
    assert f"bars: 360 columns of {per_bar} merged bins (ECE and MCE: all {bins} bins)" in drawn_texts

    img = reliability_figure(_overconfident_bins(bins), "t")
    assert "100 in the fullest of %d bins" % bins in drawn_texts
    heights = _bar_heights(img)  # the two filled bins, in columns of their own
    assert len(heights) == 2 and max(heights) == pytest.approx(0.6 * 360, abs=2)


def test_merged_bars_pool_their_bins_while_the_title_keeps_the_real_bins(drawn_texts):
    # 720 bins: bins 600 and 601 share the plot's column 300; 10 samples in the first all right,
    # 30 in the second all wrong, so the column's bar is 10 / 40 = 0.25 high
    c1, c2 = 600.5 / 720, 601.5 / 720
    bins = CalibrationBins.empty(720, "cpu")
    bins.add(torch.full((10,), c1, dtype=torch.float64), torch.ones(10, dtype=torch.bool))
    bins.add(torch.full((30,), c2, dtype=torch.float64), torch.zeros(30, dtype=torch.bool))
    img = reliability_figure(bins, "t")
    (height,) = _bar_heights(img)
    assert height == pytest.approx(0.25 * 360, abs=2)
    # the gaps of the two real bins (1 - c1 and c2), not of the drawn column (c - 0.25)
    ece, mce = (10 * (1 - c1) + 30 * c2) / 40, max(1 - c1, c2)
    assert f"t (40 samples, ECE {ece:.4f}, MCE {mce:.4f})" in drawn_texts


# --- test/ece in the records -------------------------------------------------------------------
def test_a_run_with_400_bins_draws_its_reliability_diagrams(cfg_factory, tmp_path):
    """Crashed at the first validation (ValueError from Pillow) before bins were merged for drawing."""
    train(cfg_factory(["model=mlp", "trainer.max_epochs=1", "logger=tensorboard", "+trainer.limit_train_batches=2",
                       "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
                       "callbacks.eval_report.calibration_bins=400"]))
    events = read_events(tmp_path / "run")
    assert len(events.Images("val/reliability")) == 1 and len(events.Images("test/reliability")) == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["test/ece"] <= 1


def test_train_and_eval_record_the_same_test_ece(cfg_factory, tmp_path, capsys):
    train(cfg_factory(["model=mlp", "callbacks.eval_report.calibration_bins=10"]))
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= trained["test/ece"] <= 1 and 0 <= trained["val/ece"] <= 1
    assert f"{'test/ece':<22} {trained['test/ece']:.4f}" in capsys.readouterr().out  # the run's summary
    cfg = cfg_factory([f"ckpt_path={trained['best_ckpt']}"], name="ev", config_name="eval", fast=False)
    with torch.no_grad():
        scored = evaluate(cfg)
    recorded = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    # the same weights and test split, binned the same way (the run's calibration_bins=10)
    assert recorded["test/ece"] == pytest.approx(trained["test/ece"], abs=1e-6)
    assert scored["test/ece"] == recorded["test/ece"]
