"""The reliability diagram EvalReport writes beside the confusion matrix.

One bar per confidence bin (see ``calibration.py``): its height is the bin's accuracy, and a
see-through red box spans from there to the bin's mean confidence (the bin's gap: above the bar
where the model was overconfident, over the bar's top where it was underconfident). A calibrated
model's bars reach the dashed diagonal. Under the plot each bin's sample count is written, so that
a large gap over a handful of samples is read as such. Drawn with Pillow, with the text helpers
of ``figures.py``.

A bar needs a pixel column: with more bins than the plot is wide, neighbouring bins are merged
into one bar per column for drawing only (the title's ECE and MCE stay those of the real bins),
and the text under the plot says so.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from litlab.callbacks import figures
from litlab.callbacks.calibration import COUNT, CONFIDENCE, HITS, CalibrationBins
from litlab.callbacks.figures import FRAME, INK, LABEL_SIZE, PAD, SMALL_SIZE, TICK_LENGTH, TICK_SIZE, TITLE_SIZE, WHITE

PLOT_SIDE = 360  # the square plot area, in pixels
BAR: tuple[int, int, int] = (33, 113, 181)  # accuracy: the dark end of the confusion matrix's blues
BAR_EDGE: tuple[int, int, int] = (8, 48, 107)
GAP_EDGE: tuple[int, int, int] = (203, 24, 29)  # red: the distance to the mean confidence
GAP_ALPHA = 90  # of 255: the gap's fill lets the bar show through (light red on white, purple on blue)
DIAGONAL: tuple[int, int, int] = (110, 110, 110)
DASH = 6  # the diagonal's dash and space length, in pixels along x
TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SWATCH = 12  # a legend entry's colour square


def reliability_figure(bins: CalibrationBins, title: str) -> Image.Image:
    """Accuracy per confidence bin against the diagonal, with the bins' sample counts.

    The title gets the number of samples, the ECE and the maximum calibration error (MCE).
    """
    sums = bins.sums.cpu().double().numpy()  # (3, B)
    fullest, n = int(sums[COUNT].max()), bins.bins
    title = (f"{title} ({int(sums[COUNT].sum())} samples, ECE {float(bins.ece()):.4f}, "
             f"MCE {float(bins.max_error()):.4f})")
    drawn, merged_note = _merge_for_drawing(sums)  # (3, D): D = B, or PLOT_SIDE bars of merged bins
    count = drawn[COUNT]
    accuracy = drawn[HITS] / np.maximum(count, 1)
    confidence = drawn[CONFIDENCE] / np.maximum(count, 1)
    labels = [str(int(c)) if c > 0 else "" for c in count]
    bin_width = PLOT_SIDE / len(count)
    count_size, counts_vertical = _count_text(labels, bin_width)

    # horizontal layout: "accuracy" | tick labels | plot
    tick_label_width = max(figures._text_width(f"{t:g}", TICK_SIZE) for t in TICKS)
    samples_width = figures._text_width("samples", SMALL_SIZE)
    plot_x = PAD + figures._line_height(LABEL_SIZE) + figures.GAP + max(tick_label_width, samples_width) + \
        TICK_LENGTH + figures.GAP
    # vertical layout: title | legend | plot | tick labels | "confidence" | counts
    legend_y = PAD + figures._line_height(TITLE_SIZE) + 8
    plot_y = legend_y + SWATCH + 14
    xlabel_y = plot_y + PLOT_SIDE + TICK_LENGTH + figures.GAP + figures._line_height(TICK_SIZE) + figures.GAP
    counts_y = xlabel_y + figures._line_height(LABEL_SIZE) + 10
    counts_height = 0
    if count_size:
        counts_height = max((figures._text_width(s, count_size) for s in labels if s), default=0) if counts_vertical \
            else figures._line_height(count_size)
    counts_lines = 2 if merged_note else 1
    height = counts_y + max(counts_height, counts_lines * figures._line_height(SMALL_SIZE)) + PAD
    title_width = figures._text_width(title, TITLE_SIZE)
    width = max(plot_x + PLOT_SIDE + PAD + TICK_SIZE, title_width + 2 * PAD,
                plot_x + figures._text_width(merged_note, SMALL_SIZE) + PAD)

    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    # each bar's left edge, and the plot's right (one column each when bins were merged)
    edges = [plot_x + round(k * bin_width) for k in range(len(count) + 1)]
    _bars(img, draw, edges, plot_y, count, accuracy, confidence)
    _dashed_diagonal(draw, plot_x, plot_y)
    _axes(img, draw, plot_x, plot_y, xlabel_y)

    # sample counts under their bins
    figures._put_text(img, (plot_x - 1 - TICK_LENGTH - figures.GAP, counts_y), "samples", SMALL_SIZE, INK, "rt")
    if count_size:
        for k, text in enumerate(labels):
            centre = (edges[k] + edges[k + 1]) / 2
            figures._put_text(img, (centre, counts_y), text, count_size, INK, "mt", vertical=counts_vertical)
    else:  # too many bins for a number under each
        figures._put_text(img, (plot_x, counts_y), f"{fullest} in the fullest of {n} bins", SMALL_SIZE, INK, "lt")
    if merged_note:
        figures._put_text(img, (plot_x, counts_y + figures._line_height(SMALL_SIZE)), merged_note, SMALL_SIZE, INK,
                          "lt")

    _legend(img, draw, plot_x, legend_y)
    title_x = min(max(plot_x + PLOT_SIDE / 2, PAD + title_width / 2), width - PAD - title_width / 2)
    figures._put_text(img, (title_x, PAD), title, TITLE_SIZE, INK, "mt")
    return img


def _merge_for_drawing(sums: np.ndarray) -> tuple[np.ndarray, str]:
    """The per-bin sums ``(3, B)`` as drawn: unchanged when every bin gets a pixel column, else
    summed into ``PLOT_SIDE`` columns ``(3, PLOT_SIDE)``, with a line for the figure saying so
    ("" when unchanged).

    Bin ``k`` starts at pixel ``k * PLOT_SIDE / B`` of the plot and goes to the column holding
    that pixel, so each bar sits within a pixel of its bins' span of confidences; a column gets
    ``floor(B / PLOT_SIDE)`` or ``ceil(B / PLOT_SIDE)`` neighbouring bins.
    """
    n = sums.shape[1]
    if n <= PLOT_SIDE:  # bars at least a pixel wide (bin_width >= 1)
        return sums, ""
    columns = np.arange(n) * PLOT_SIDE // n  # (B,) integer arithmetic: no rounding at the column edges
    drawn = np.stack([np.bincount(columns, weights=row, minlength=PLOT_SIDE) for row in sums])  # (3, PLOT_SIDE)
    per_column = np.bincount(columns)  # (PLOT_SIDE,) bins merged into each column
    fewest, most = per_column.min(), per_column.max()
    per_bar = f"{fewest}" if fewest == most else f"{fewest} or {most}"
    return drawn, f"bars: {PLOT_SIDE} columns of {per_bar} merged bins (ECE and MCE: all {n} bins)"


def _row(value: float, plot_y: int) -> int:
    """The pixel row of an accuracy or a confidence in [0, 1]."""
    return plot_y + round((1.0 - float(np.clip(value, 0.0, 1.0))) * PLOT_SIDE)


def _bars(img: Image.Image, draw: ImageDraw.ImageDraw, edges: list[int], plot_y: int, count: np.ndarray,
          accuracy: np.ndarray, confidence: np.ndarray) -> None:
    """Each bin with samples: its accuracy as a bar, the gap to its mean confidence as a box."""
    bottom = _row(0.0, plot_y)
    for k in np.nonzero(count)[0]:
        left, right = edges[k], edges[k + 1] - 1
        if right - left >= 3:  # a pixel of space between neighbouring bars
            left, right = left + 1, right - 1
        top, conf_row = _row(accuracy[k], plot_y), _row(confidence[k], plot_y)
        if top < bottom:
            draw.rectangle((left, top, right, bottom), fill=BAR, outline=BAR_EDGE)
        if conf_row != top:
            _gap_box(img, draw, (left, min(top, conf_row), right, max(top, conf_row)))


def _axes(img: Image.Image, draw: ImageDraw.ImageDraw, plot_x: int, plot_y: int, xlabel_y: int) -> None:
    """The plot's frame, the same ticks on both axes, and the axis labels."""
    draw.rectangle((plot_x - 1, plot_y - 1, plot_x + PLOT_SIDE, plot_y + PLOT_SIDE), outline=FRAME)
    below = plot_y + PLOT_SIDE
    for t in TICKS:
        x, y = plot_x + round(t * PLOT_SIDE), _row(t, plot_y)
        draw.line((x, below + 1, x, below + TICK_LENGTH), fill=FRAME)
        figures._put_text(img, (x, below + TICK_LENGTH + figures.GAP), f"{t:g}", TICK_SIZE, INK, "mt")
        draw.line((plot_x - 1 - TICK_LENGTH, y, plot_x - 2, y), fill=FRAME)
        figures._put_text(img, (plot_x - 1 - TICK_LENGTH - figures.GAP, y), f"{t:g}", TICK_SIZE, INK, "rm")
    figures._put_text(img, (plot_x + PLOT_SIDE / 2, xlabel_y), "confidence (largest softmax probability)", LABEL_SIZE,
                      INK, "mt")
    figures._put_text(img, (PAD, plot_y + PLOT_SIDE / 2), "accuracy", LABEL_SIZE, INK, "lm", vertical=True)


def _count_text(labels: list[str], bin_width: float) -> tuple[int, bool]:
    """The text size of the counts and whether they are turned upright; size 0 when even upright
    text would not fit in a bin."""
    widest = max(labels, key=len) or "0"
    if figures._text_width(widest, SMALL_SIZE) + 2 <= bin_width:
        return SMALL_SIZE, False
    for size in range(SMALL_SIZE, 6, -1):  # turned a quarter, a number needs a line height of room
        if figures._line_height(size) <= bin_width:
            return size, True
    return 0, True


def _dashed_diagonal(draw: ImageDraw.ImageDraw, plot_x: int, plot_y: int) -> None:
    """Perfect calibration: accuracy equal to confidence, from the bottom left to the top right."""
    bottom = plot_y + PLOT_SIDE - 1
    for start in range(0, PLOT_SIDE, 2 * DASH):
        end = min(start + DASH, PLOT_SIDE - 1)
        draw.line((plot_x + start, bottom - start, plot_x + end, bottom - end), fill=DIAGONAL, width=2)


def _gap_box(img: Image.Image, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    """A red outline around ``box`` (corners included) filled with see-through red."""
    left, top, right, bottom = box
    size = (right - left + 1, bottom - top + 1)
    img.paste(GAP_EDGE, (left, top, right + 1, bottom + 1), Image.new("L", size, GAP_ALPHA))
    draw.rectangle(box, outline=GAP_EDGE)


def _legend(img: Image.Image, draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    entries = (("accuracy", BAR), ("gap to mean confidence", GAP_EDGE), ("calibrated", None))
    for text, fill in entries:
        if fill == GAP_EDGE:
            _gap_box(img, draw, (x, y, x + SWATCH - 1, y + SWATCH - 1))
        elif fill is None:  # two of the diagonal's dashes
            for start in (0, SWATCH - 4):
                draw.line((x + start, y + SWATCH // 2, x + start + 4, y + SWATCH // 2), fill=DIAGONAL, width=2)
        else:
            draw.rectangle((x, y, x + SWATCH - 1, y + SWATCH - 1), fill=fill, outline=BAR_EDGE)
        figures._put_text(img, (x + SWATCH + 5, y + SWATCH / 2), text, SMALL_SIZE + 1, INK, "lm")
        x += SWATCH + 5 + figures._text_width(text, SMALL_SIZE + 1) + 16
