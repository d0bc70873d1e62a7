"""Batched preprocessing: scaling, normalization and augmentation of whole batches.

Doing this per batch (after the batch reaches the device) instead of per sample in loader
workers is what makes in-memory data fast: one vectorized op per batch instead of thousands
of small tensor ops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import torch
from torch import Tensor, nn

from litlab.errors import LitlabError


@dataclass
class Augment:
    """Batched training augmentation (images only)."""

    hflip: bool = False
    """Flip each image left-right with probability 0.5."""
    shift: int = 0
    """Translate each image by up to this many pixels; the uncovered border is 0 after normalization,
    the mean colour of the training images."""

    def check_fits(self, height: int, width: int) -> None:
        """A shift of the image's height or width or more moves some images entirely out of view
        (they are left blank): ``data.augment.shift=100`` on 32x32 images blanked about 90% of the
        training images and the run learnt almost nothing, without a word."""
        if self.shift >= min(height, width):
            raise LitlabError(
                f"data.augment.shift={self.shift} shifts images by up to {self.shift} pixels, but the images are "
                f"{height}x{width} pixels (height x width): a shift of {min(height, width)} or more moves some "
                f"images entirely out of view. Set data.augment.shift below {min(height, width)}, typically an "
                f"eighth of the image size or less (e.g. {max(1, min(height, width) // 8)})."
            )


@dataclass
class Preprocess:
    """How raw batches become model inputs; saved in every checkpoint so eval and predict
    reproduce it without the user repeating it."""

    kind: str
    """``image`` (inputs ``(C, H, W)``) or ``sequence`` (inputs ``(L, F)``)."""
    mean: list[float]
    """Per channel (images) or per feature (sequences), on the 0..1 scale for uint8 images."""
    std: list[float]
    augment: Augment = field(default_factory=Augment)
    image_size: list[int] | None = None
    """``[H, W]`` that files are resized to (image folders), or None."""
    channels: int | None = None
    """1 (grayscale) or 3 (RGB) for image files."""
    pixels: bool | None = None
    """True: the raw inputs are 8-bit pixels, uint8 tensors scaled to [0, 1] before normalization
    (image folders, uint8 image arrays); False: raw inputs are used as they are (other arrays,
    synthetic data); None: not recorded (checkpoints written before litlab recorded it)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["augment"] = Augment(**d.get("augment", {}))
        return cls(**d)

    def module(self) -> "Normalize":
        """The deterministic part as an ``nn.Module`` (for export and prediction)."""
        return Normalize(self.kind, self.mean, self.std)

    def __call__(self, x: Tensor, train: bool = False) -> Tensor:
        x = normalize(x, self.kind, self.mean, self.std)
        if train and self.kind == "image":
            x = augment_images(x, self.augment)
        return x


def _stat_view(values: list[float], kind: str, x: Tensor) -> Tensor:
    """``values`` as a tensor shaped to broadcast over ``x``; built once per (values, dtype, device)."""
    return _cached_stat(tuple(values), kind, x.dtype, x.device)


@lru_cache(maxsize=64)
def _cached_stat(values: tuple[float, ...], kind: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    return _stat_tensor(list(values), kind, torch.empty(0, dtype=dtype, device=device))


def _stat_tensor(values: list[float], kind: str, x: Tensor) -> Tensor:
    t = torch.as_tensor(values, dtype=x.dtype, device=x.device)
    # images: (B, C, H, W) -> stats as (1, C, 1, 1); sequences: (B, L, F) -> (1, 1, F)
    return t.view(1, -1, 1, 1) if kind == "image" else t.view(1, 1, -1)


def normalize(x: Tensor, kind: str, mean: list[float], std: list[float]) -> Tensor:
    """uint8 -> float in [0, 1], then ``(x - mean) / std`` per channel or feature."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif not x.is_floating_point():
        x = x.float()
    else:  # the caller's tensor: not in place
        return (x - _stat_view(mean, kind, x)) / _stat_view(std, kind, x)
    return x.sub_(_stat_view(mean, kind, x)).div_(_stat_view(std, kind, x))


def augment_images(x: Tensor, aug: Augment) -> Tensor:
    """Random flips and shifts for a whole batch ``(B, C, H, W)`` in a few tensor ops."""
    if aug.hflip:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if aug.shift > 0:
        s = aug.shift
        b, _, h, w = x.shape
        padded = nn.functional.pad(x, (s, s, s, s))
        # one random offset per image; gather the crop with advanced indexing
        dy = torch.randint(0, 2 * s + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * s + 1, (b,), device=x.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device).view(1, h))  # (B, H)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device).view(1, w))  # (B, W)
        bi = torch.arange(b, device=x.device).view(b, 1, 1)
        # (B, H, W, C) -> (B, C, H, W)
        x = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
        x = x.contiguous()
    return x


def compute_stats(x: Tensor, kind: str) -> tuple[list[float], list[float]]:
    """Per-channel (images) or per-feature (sequences) mean and std of a training set.

    Computed in float64 and rounded to 6 significant digits, not decimals, so that features on
    any scale (1e-7 as well as 1e7) are normalized to unit std. A constant channel or feature
    (std 0, or a single sample) gets std 1: centred, and not blown up by a tiny divisor. The
    float64 copies are made a chunk of samples at a time, not of a whole in-memory image set."""
    dims, view = ((0, 2, 3), (1, -1, 1, 1)) if kind == "image" else ((0, 1), (1, 1, -1))
    chunks = x.split(max(1, 2**22 * len(x) // max(1, x.numel())))  # about 4M values (32 MB) each
    total = sum(c.double().sum(dim=dims) for c in chunks)
    count = x.numel() // total.numel()
    mean = total / count
    squares = sum(((c.double() - mean.view(view)) ** 2).sum(dim=dims) for c in chunks)
    scale = 255.0 if x.dtype == torch.uint8 else 1.0  # 8-bit pixels: stats on the 0..1 scale
    mean, std = mean / scale, (squares / (count - 1)).sqrt() / scale
    std = torch.where(std > 0, std, torch.ones_like(std))  # NaN (one sample) is not > 0 either
    return [float(f"{v:.6g}") for v in mean.tolist()], [float(f"{v:.6g}") for v in std.tolist()]


class Normalize(nn.Module):
    """``normalize`` as a module: raw batch in, model input out."""

    def __init__(self, kind: str, mean: list[float], std: list[float]):
        super().__init__()
        self.kind = kind
        self.register_buffer("mean", _stat_tensor(mean, kind, torch.zeros(1)))
        self.register_buffer("std", _stat_tensor(std, kind, torch.zeros(1)))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return (x.float() - self.mean) / self.std
