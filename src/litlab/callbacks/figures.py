"""The images EvalReport writes: a confusion matrix and a grid of misclassified samples.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no display) and
returned as ``(H, W, 3)`` uint8 arrays for ``SummaryWriter.add_image``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

# above these class counts the cells lose their numbers and the axes their names (unreadable)
ANNOTATE_MAX_CLASSES = 30
NAMES_MAX_CLASSES = 60


def to_array(fig: Figure) -> np.ndarray:
    """Renders ``fig`` to an ``(H, W, 3)`` uint8 array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_figure(cm: Tensor, class_names: list[str], title: str) -> np.ndarray:
    """Rows are true classes, columns predictions; colour is the share of the row (recall),
    numbers are counts."""
    counts = cm.cpu().numpy().astype(np.int64)
    n = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(4.5, 0.45 * n + 2.5), 24.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot()
    shown = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} ({int(counts.sum())} samples)")
    if n <= NAMES_MAX_CLASSES:
        ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), [str(c) for c in class_names])
    if n <= ANNOTATE_MAX_CLASSES:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return to_array(fig)


def misclassified_figure(x: Tensor, target: Tensor, pred: Tensor, confidence: Tensor, class_names: list[str],
                         kind: str, title: str) -> np.ndarray:
    """A grid with one panel per sample: images as images, sequences as one line per feature.

    Args:
        x: samples on the data's own scale, ``(N, C, H, W)`` images in [0, 1] or ``(N, L, F)``.
        target: true class indices ``(N,)``.
        pred: predicted class indices ``(N,)``.
        confidence: probability of the predicted class ``(N,)``.
        class_names: names by class index.
        kind: ``image`` or ``sequence``.
        title: the figure's title.
    """
    x = x.detach().float().cpu()
    n = len(x)
    cols = min(n, 4 if kind == "sequence" else 6) or 1
    rows = max(1, math.ceil(n / cols))
    panel = (3.2, 2.2) if kind == "sequence" else (2.0, 2.3)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows + 0.6), dpi=100)
    fig.suptitle(title if n else f"{title}: none")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        if kind == "image":
            img = x[i]
            # (C, H, W) -> (H, W) grey or (H, W, 3) colour; other channel counts show channel 0
            if img.shape[0] == 3:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.plot(x[i].numpy(), linewidth=0.8)  # (L, F): one line per feature
            ax.tick_params(labelsize=6)
        t, p = int(target[i]), int(pred[i])
        ax.set_title(f"true {class_names[t]}\npred {class_names[p]} ({float(confidence[i]):.0%})", fontsize=8,
                     color="darkred")
    fig.tight_layout()
    return to_array(fig)
