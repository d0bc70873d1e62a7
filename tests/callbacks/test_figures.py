"""The confusion matrix and misclassified-samples figures, drawn without training (and without matplotlib)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from litlab.callbacks import figures
from litlab.callbacks.banded_canvas import BandedCanvas
from litlab.callbacks.figures import confusion_figure, misclassified_figure

DARK_BLUE = np.array([8, 48, 107])
NEAR_WHITE = np.array([247, 251, 255])


def _pixels(figure, *args) -> np.ndarray:
    """A figure function's result as an (H, W, 3) array; the function must return an RGB image or
    a banded canvas, whose PNG must hold exactly the pixels of its whole painting."""
    img = figure(*args)
    if isinstance(img, BandedCanvas):
        whole = np.asarray(img.image())
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(img.png())).convert("RGB")), whole)
        return whole
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    return np.asarray(img)


def assert_rgb(img: np.ndarray) -> None:
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 0 and img.shape[1] > 0


def close_to(pixels: np.ndarray, colour: np.ndarray, tolerance: int = 30) -> np.ndarray:
    return (np.abs(pixels.astype(int) - colour) <= tolerance).all(axis=-1)


def test_confusion_figure_is_an_rgb_array_with_names_counts_and_title(drawn_texts):
    cm = torch.arange(100).view(10, 10)
    img = _pixels(confusion_figure, cm, [f"c{i}" for i in range(10)], "test confusion matrix")
    assert_rgb(img)
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert {f"c{i}" for i in range(10)} <= set(drawn_texts)
    assert {"99", "predicted", "true", "share of the true class", "0", "1"} <= set(drawn_texts)
    assert "test confusion matrix (4950 samples)" in drawn_texts
    assert drawn_texts.count("0") == 1  # the colour bar's; the zero count is not written


def test_diagonal_confusion_matrix_has_dark_diagonal_and_white_elsewhere():
    n = 10
    img = _pixels(confusion_figure, torch.eye(n, dtype=torch.long) * 5, [str(i) for i in range(n)], "diagonal")
    dark = close_to(img, DARK_BLUE)
    rows, cols = np.nonzero(dark)
    # the matrix's top-left cell is the leftmost dark area and its bottom-right cell the lowest one
    # (the colour bar lies to the right and is dark only at its top)
    top, left, bottom = rows.min(), cols.min(), rows.max()
    cell = (bottom - top + 1) / n
    assert cell >= 20
    quarter = int(cell / 4)
    for i in range(n):
        for j in range(n):
            cy, cx = int(top + (i + 0.5) * cell), int(left + (j + 0.5) * cell)
            # the middle half of the cell; its median pixel is the cell's colour even under a number
            patch = img[cy - quarter:cy + quarter, cx - quarter:cx + quarter].reshape(-1, 3)
            colour = np.median(patch, axis=0)
            assert close_to(colour, DARK_BLUE if i == j else NEAR_WHITE, 12), (i, j, colour)


def test_confusion_figure_for_200_classes_has_no_names_or_counts_and_stays_small(drawn_texts):
    n = 200
    cm = torch.eye(n, dtype=torch.long) * 7 + 1
    img = _pixels(confusion_figure, cm, [f"class{i}" for i in range(n)], "test confusion matrix")
    assert_rgb(img)
    assert max(img.shape[:2]) <= 2000 and min(img.shape[:2]) > 300
    # titles and labels only: no class names, no counts
    assert sorted(drawn_texts) == sorted(["test confusion matrix (41400 samples)", "predicted", "true",
                                          "share of the true class", "0", "1"])


@pytest.mark.parametrize("n", [0, 1, 16])
def test_misclassified_images(n):
    x = torch.rand(n, 1, 8, 8)
    target = torch.arange(n) % 10
    img = _pixels(misclassified_figure, x, target, (target + 1) % 10, torch.full((n,), 0.87), [str(i) for i in range(10)],
                               "image", "most confidently misclassified test samples")
    assert_rgb(img)
    if n == 16:
        assert img.shape[1] > 300


def test_misclassified_captions(drawn_texts):
    misclassified_figure(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), torch.tensor([1, 0]),
                         torch.tensor([0.87, 0.5]), ["cat", "dog"], "image", "wrong")
    assert drawn_texts == ["wrong", "true cat", "pred dog (87%)", "true dog", "pred cat (50%)"]


def test_misclassified_none_says_so(drawn_texts):
    img = _pixels(misclassified_figure, torch.zeros(0, 20, 3), torch.zeros(0), torch.zeros(0), torch.zeros(0), ["a"],
                               "sequence", "wrong")
    assert_rgb(img)
    assert drawn_texts == ["wrong: none"]


def test_misclassified_sequences_have_coloured_lines():
    x = torch.cumsum(torch.randn(5, 20, 3), dim=1)
    img = _pixels(misclassified_figure, x, torch.arange(5), (torch.arange(5) + 1) % 5, torch.rand(5), list("abcde"),
                               "sequence", "wrong")
    assert_rgb(img)
    # the first feature's line colour is in the picture
    assert close_to(img, np.array([31, 119, 180]), 20).sum() > 50


def test_constant_sequence_and_nan_are_drawn():
    x = torch.ones(2, 10, 2)
    x[1, 3, 0] = float("nan")
    assert_rgb(_pixels(misclassified_figure, x, torch.tensor([0, 1]), torch.tensor([1, 0]), torch.rand(2), ["a", "b"],
                                      "sequence", "wrong"))


def test_figures_work_with_the_fixed_size_bitmap_font(monkeypatch):
    load = ImageFont.load_default

    def without_size(size=None):
        if size is not None:
            raise TypeError("no size argument before Pillow 10.1")
        return load()

    monkeypatch.setattr(ImageFont, "load_default", without_size)
    figures._font.cache_clear()
    figures._text_mask.cache_clear()
    try:
        assert_rgb(_pixels(confusion_figure, torch.eye(3, dtype=torch.long), ["a", "b", "c"], "t"))
        assert_rgb(_pixels(misclassified_figure, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor([1, 0]),
                                        torch.rand(2), ["a", "b"], "image", "t"))
    finally:
        figures._font.cache_clear()
        figures._text_mask.cache_clear()


def test_importing_the_figures_does_not_import_matplotlib():
    code = "import sys, litlab.callbacks.figures; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
