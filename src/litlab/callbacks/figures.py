"""The images EvalReport writes: a confusion matrix and a grid of misclassified samples.

- Confusion matrix: rows are true classes, columns predictions. A cell's colour is its share of
  the row (recall) on a white-to-dark-blue scale, explained by a colour bar; its number is the
  count (up to ``ANNOTATE_MAX_CLASSES`` classes). Class names label both axes (up to
  ``NAMES_MAX_CLASSES`` classes).
- Misclassified grid: one panel per sample, captioned with the true class and the prediction with
  its confidence. Images are upscaled with nearest neighbour; sequences are drawn as one line per
  feature.

Both are drawn with Pillow and numpy, for ``tensorboard_writer.add_rgb_image``: the confusion
matrix as a ``BandedCanvas`` (painted a band of rows at a time while it is encoded, so its pixels
never exist all at once), the grid as an RGB Pillow image. They are drawn inside the training
process, where matplotlib's first figure added about 24 MiB of resident memory and took
100-200 ms. Pillow is already a dependency of the image data sets and draws each figure in a few
milliseconds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from litlab.callbacks.banded_canvas import BandedCanvas

# above these class counts the cells lose their numbers and the axes their names (unreadable)
ANNOTATE_MAX_CLASSES = 30
NAMES_MAX_CLASSES = 60

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
INK: RGB = (34, 34, 34)  # titles, axis labels, tick labels
FRAME: RGB = (90, 90, 90)  # frames around plots and their tick marks
CAPTION: RGB = (139, 0, 0)  # dark red: what the model got wrong

# text sizes in pixels
TITLE_SIZE = 15
LABEL_SIZE = 13
TICK_SIZE = 12
CAPTION_SIZE = 12
SMALL_SIZE = 10

PAD = 14  # the figure's outer margin
GAP = 6  # between neighbouring pieces: axis and tick labels, tick labels and axis label
TICK_LENGTH = 4
NAME_MAX_CHARS = 24  # longer class names are shortened so margins stay reasonable

# white to dark blue, evenly spaced stops from a share of 0 to 1 (the ColorBrewer "Blues" scale)
BLUES = np.array([(247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
                  (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107)], dtype=np.float64)
COLOUR_BAR_WIDTH = 16

IMAGE_SIDE = 96  # images are scaled to about this many pixels on their long side
PLOT_SIZE = (200, 120)  # a sequence's plot area (width, height)
SUPERSAMPLE = 3  # sequence lines are drawn this many times larger and scaled down, for smooth edges
PANEL_PAD = 12  # space around each sample's panel
# one colour per sequence feature (cycled when there are more features)
LINE_COLOURS: tuple[RGB, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


# --- text ------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` px, or its one-size bitmap font where scaling is not
    available (Pillow < 10.1 or no FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


@lru_cache(maxsize=1024)
def _text_mask(text: str, size: int) -> tuple[Image.Image, int, int]:
    """``text`` as an antialiased greyscale mask, with the rows where its capital-letter band
    starts and ends (top of "H" to the baseline)."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    _, cap_top, _, baseline = font.getbbox("H")
    top, bottom = min(top, cap_top), max(bottom, baseline)
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    return mask, cap_top - top, baseline - top


def _text_width(text: str, size: int) -> int:
    return _text_mask(text, size)[0].width


def _line_height(size: int) -> int:
    """Height of one line of text, descenders included."""
    return _text_mask("Hgjy()", size)[0].height


def _put_text(img: Image.Image | BandedCanvas, xy: tuple[float, float], text: str, size: int, fill: RGB, anchor: str = "mm",
              vertical: bool = False) -> None:
    """Draws ``text`` on ``img`` with its anchor point at ``xy``.

    ``anchor`` has two letters: horizontal ``l``, ``m`` or ``r`` and vertical ``t``, ``m`` or ``b``.
    Along the text, they refer to the ink's edges and middle. Across it, they refer to the
    capital-letter band, so digits centre in their cells and neighbouring labels share a baseline.
    ``vertical`` turns the text a quarter turn counterclockwise (it reads bottom to top); the
    anchor then refers to the turned text as it appears.
    """
    if not text:
        return
    mask, band_top, band_bottom = _text_mask(text, size)
    along, across = (0, mask.width), (band_top, band_bottom)
    if vertical:
        mask = mask.transpose(Image.Transpose.ROTATE_90)  # row y of the text becomes column y
        x_span, y_span = across, along
    else:
        x_span, y_span = along, across
    x = xy[0] - _anchor_offset(anchor[0], x_span, "lmr")
    y = xy[1] - _anchor_offset(anchor[1], y_span, "tmb")
    img.paste(fill, (round(x), round(y)), mask)


def _anchor_offset(letter: str, span: tuple[int, int], letters: str) -> float:
    start, end = span
    return (start, (start + end) / 2, end)[letters.index(letter)]


def _fitting_size(text: str, room: int, largest: int, smallest: int = 7) -> int:
    """The largest text size up to ``largest`` at which ``text`` is at most ``room`` px wide."""
    size = largest
    while size > smallest and _text_width(text, size) > room:
        size -= 1
    return size


def _short(name: str) -> str:
    return name if len(name) <= NAME_MAX_CHARS else name[:NAME_MAX_CHARS - 3] + "..."


# --- confusion matrix ------------------------------------------------------------------------
def _blues(share: np.ndarray) -> np.ndarray:
    """Colours for shares in [0, 1], as uint8 RGB with one more trailing axis."""
    stops = np.linspace(0.0, 1.0, len(BLUES))
    share = np.clip(share, 0.0, 1.0)
    channels = [np.interp(share, stops, BLUES[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _cell_size(n: int) -> int:
    """Pixels per cell side: the matrix aims at about 640 px, leaves room for counts and names
    where they are drawn, and stays within 1400 px up to 350 classes."""
    cell = round(640 / n)
    if n <= ANNOTATE_MAX_CLASSES:
        cell = max(cell, 34)
    elif n <= NAMES_MAX_CLASSES:
        cell = max(cell, 15)
    else:
        cell = max(cell, 4)
    return max(1, min(cell, 160, 1400 // n))


def confusion_figure(cm: Tensor, class_names: list[str], title: str) -> BandedCanvas:
    """Rows are true classes, columns predictions; colour is the share of the row (recall),
    numbers are counts. Returned as a canvas that is painted a band at a time when encoded."""
    counts = cm.cpu().numpy().astype(np.int64)
    n = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    title = f"{title} ({int(counts.sum())} samples)"
    cell = _cell_size(n)
    side = n * cell
    names = [_short(str(c)) for c in class_names[:n]] if n <= NAMES_MAX_CLASSES else []
    tick_size = min(TICK_SIZE, cell - 2)
    name_width = max((_text_width(s, tick_size) for s in names), default=0)
    flat_names = name_width + 4 <= cell  # the x axis names fit side by side without turning
    ticks = TICK_LENGTH + GAP if names else 0

    # horizontal layout: "true" | row names | matrix | colour bar | 0/1 | bar label
    matrix_x = PAD + _line_height(LABEL_SIZE) + GAP + name_width + ticks
    bar_x = matrix_x + side + 24
    bar_labels_x = bar_x + COLOUR_BAR_WIDTH + TICK_LENGTH + 3
    bar_title_x = bar_labels_x + _text_width("0", TICK_SIZE) + 2 * GAP
    width = bar_title_x + _line_height(LABEL_SIZE) + PAD
    # vertical layout: title | matrix | column names | "predicted"
    matrix_y = PAD + _line_height(TITLE_SIZE) + 10
    names_height = (_line_height(tick_size) if flat_names else name_width) if names else 0
    xlabel_y = matrix_y + side + ticks + names_height + GAP
    height = xlabel_y + _line_height(LABEL_SIZE) + PAD
    title_width = _text_width(title, TITLE_SIZE)
    width = max(width, title_width + 2 * PAD)

    img = draw = BandedCanvas(width, height, WHITE)
    # one pixel per cell, enlarged one row of cells at a time and only when a band needs it
    colours = _blues(rates)
    for i in range(n):
        def strip(i=i):
            return Image.fromarray(colours[i:i + 1]).resize((side, cell), Image.Resampling.NEAREST)
        img.paste(strip, (matrix_x, matrix_y + i * cell), size=(side, cell))
    draw.rectangle((matrix_x - 1, matrix_y - 1, matrix_x + side, matrix_y + side), outline=FRAME)
    centres = [k * cell + cell / 2 for k in range(n)]  # offsets of the cells' centres from the matrix's corner

    if n <= ANNOTATE_MAX_CLASSES:
        number_size = _fitting_size(str(counts.max()), cell - 6, min(13, max(7, cell // 3)))
        for i, j in zip(*np.nonzero(counts)):
            fill = WHITE if rates[i, j] > 0.5 else BLACK
            _put_text(img, (matrix_x + centres[j], matrix_y + centres[i]), str(counts[i, j]), number_size, fill)
    if names:
        below = matrix_y + side + 1
        for name, c in zip(names, centres):
            y, x = matrix_y + c, matrix_x + c
            draw.line((matrix_x - 1 - TICK_LENGTH, y, matrix_x - 2, y), fill=FRAME)
            _put_text(img, (matrix_x - 1 - ticks, y), name, tick_size, INK, "rm")
            draw.line((x, below, x, below + TICK_LENGTH - 1), fill=FRAME)
            _put_text(img, (x, below + ticks), name, tick_size, INK, "mt", vertical=not flat_names)

    _colour_bar(img, bar_x, matrix_y, side)
    _put_text(img, (bar_labels_x, matrix_y + side), "0", TICK_SIZE, INK, "lm")
    _put_text(img, (bar_labels_x, matrix_y), "1", TICK_SIZE, INK, "lm")
    _put_text(img, (bar_title_x, matrix_y + side / 2), "share of the true class", LABEL_SIZE, INK, "lm",
              vertical=True)
    _put_text(img, (matrix_x + side / 2, xlabel_y), "predicted", LABEL_SIZE, INK, "mt")
    _put_text(img, (PAD, matrix_y + side / 2), "true", LABEL_SIZE, INK, "lm", vertical=True)
    # centred over the matrix, moved in where the figure's edge would cut it
    title_x = min(max(matrix_x + side / 2, PAD + title_width / 2), width - PAD - title_width / 2)
    _put_text(img, (title_x, PAD), title, TITLE_SIZE, INK, "mt")
    return img


def _colour_bar(canvas: BandedCanvas, x: int, y: int, height: int) -> None:
    """The colour scale from 1 (top) to 0 (bottom), framed, with tick marks at both ends."""
    share = 1.0 - (np.arange(height) + 0.5) / height
    column = _blues(share)[:, None, :]  # (height, 1, 3)
    canvas.paste(Image.fromarray(np.repeat(column, COLOUR_BAR_WIDTH, axis=1)), (x, y))
    right = x + COLOUR_BAR_WIDTH
    canvas.rectangle((x - 1, y - 1, right, y + height), outline=FRAME)
    for tick_y in (y - 1, y + height):
        canvas.line((right, tick_y, right + TICK_LENGTH, tick_y), fill=FRAME)


# --- misclassified samples -------------------------------------------------------------------
def misclassified_figure(x: Tensor, target: Tensor, pred: Tensor, confidence: Tensor, class_names: list[str],
                         kind: str, title: str) -> Image.Image:
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
    samples = np.nan_to_num(x.detach().float().cpu().numpy())
    n = len(samples)
    if n == 0:
        return _title_only(f"{title}: none")
    draw_panel = _image_panel if kind == "image" else _sequence_panel
    panels = [draw_panel(sample) for sample in samples]
    captions = [(f"true {class_names[int(t)]}", f"pred {class_names[int(p)]} ({float(c):.0%})")
                for t, p, c in zip(target, pred, confidence)]

    cols = min(n, 4 if kind == "sequence" else 6)
    rows = math.ceil(n / cols)
    line = _line_height(CAPTION_SIZE)
    caption_width = max(_text_width(s, CAPTION_SIZE) for pair in captions for s in pair)
    panel_width = max(caption_width, max(p.width for p in panels)) + 2 * PANEL_PAD
    panel_height = 2 * line + 4 + max(p.height for p in panels) + PANEL_PAD
    grid_top = PAD + _line_height(TITLE_SIZE) + 6
    width = max(cols * panel_width + 2 * PAD, _text_width(title, TITLE_SIZE) + 2 * PAD)
    height = grid_top + rows * panel_height + PAD

    img = Image.new("RGB", (width, height), WHITE)
    _put_text(img, (width / 2, PAD), title, TITLE_SIZE, INK, "mt")
    left = (width - cols * panel_width) // 2
    for i, (panel, (true_line, pred_line)) in enumerate(zip(panels, captions)):
        row, col = divmod(i, cols)
        x0, y0 = left + col * panel_width, grid_top + row * panel_height
        centre = x0 + panel_width / 2
        _put_text(img, (centre, y0 + PANEL_PAD // 2), true_line, CAPTION_SIZE, CAPTION, "mt")
        _put_text(img, (centre, y0 + PANEL_PAD // 2 + line), pred_line, CAPTION_SIZE, CAPTION, "mt")
        img.paste(panel, (round(centre - panel.width / 2), y0 + PANEL_PAD // 2 + 2 * line + 4))
    return img


def _title_only(text: str) -> Image.Image:
    img = Image.new("RGB", (_text_width(text, TITLE_SIZE) + 2 * PAD, _line_height(TITLE_SIZE) + 2 * PAD), WHITE)
    _put_text(img, (img.width / 2, PAD), text, TITLE_SIZE, INK, "mt")
    return img


def _image_panel(sample: np.ndarray) -> Image.Image:
    """A ``(C, H, W)`` image in [0, 1] in a thin frame, about ``IMAGE_SIDE`` px on its long side:
    in colour for 3 channels, else channel 0 in grey."""
    pixels = sample.transpose(1, 2, 0) if sample.shape[0] == 3 else sample[0]
    picture = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)).convert("RGB")
    long_side = max(picture.size)
    if long_side <= IMAGE_SIDE * 1.5:  # whole-number upscaling keeps every pixel the same size
        scale = max(1, round(IMAGE_SIDE / long_side))
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    else:
        scale = IMAGE_SIDE / long_side
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BOX)
    framed = Image.new("RGB", (picture.width + 2, picture.height + 2), FRAME)
    framed.paste(picture, (1, 1))
    return framed


def _sequence_panel(sample: np.ndarray) -> Image.Image:
    """An ``(L, F)`` sequence as one line per feature in a framed plot, with the data's largest and
    smallest value marked on the left."""
    lo, hi = float(sample.min()), float(sample.max())
    spread = hi - lo if hi > lo else 1.0
    top, bottom = hi + 0.06 * spread, lo - 0.06 * spread  # a little room above and below the lines
    plot_w, plot_h = PLOT_SIZE

    def row(value, height: int):  # a value's (or an array of values') row in a plot area ``height`` px tall
        return (top - value) / (top - bottom) * (height - 1)

    s = SUPERSAMPLE
    canvas = Image.new("RGB", (plot_w * s, plot_h * s), WHITE)
    draw = ImageDraw.Draw(canvas)
    length = len(sample)
    columns = np.linspace(0, plot_w * s - 1, length) if length > 1 else np.array([plot_w * s / 2])
    for f in range(sample.shape[1]):
        rows = row(sample[:, f], plot_h * s)
        points = list(zip(columns.tolist(), rows.tolist()))
        colour = LINE_COLOURS[f % len(LINE_COLOURS)]
        if length > 1:
            draw.line(points, fill=colour, width=s + 1, joint="curve")
        else:
            cx, cy = points[0]
            draw.ellipse((cx - 2 * s, cy - 2 * s, cx + 2 * s, cy + 2 * s), fill=colour)
    plot = canvas.resize(PLOT_SIZE, Image.Resampling.BOX)  # averaging blocks of pixels smooths the lines

    labels = [f"{hi:.3g}", f"{lo:.3g}"] if hi > lo else [f"{hi:.3g}"]
    label_width = max(_text_width(t, SMALL_SIZE) for t in labels)
    plot_x = label_width + 3 + TICK_LENGTH + 1
    panel = Image.new("RGB", (plot_x + plot_w + 1, plot_h + 2), WHITE)
    panel.paste(plot, (plot_x, 1))
    frame = ImageDraw.Draw(panel)
    frame.rectangle((plot_x - 1, 0, plot_x + plot_w, plot_h + 1), outline=FRAME)
    for text, value in zip(labels, (hi, lo)):
        y = 1 + row(value, plot_h)
        frame.line((plot_x - 1 - TICK_LENGTH, y, plot_x - 2, y), fill=FRAME)
        _put_text(panel, (plot_x - 1 - TICK_LENGTH - 3, y), text, SMALL_SIZE, INK, "rm")
    return panel
