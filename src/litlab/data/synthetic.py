"""Learnable synthetic data: each class has its own pattern, samples add noise to it."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from litlab.data.base import ClassificationData, Splits
from litlab.data.datasets import TensorSplit
from litlab.data.preprocess import Preprocess, compute_stats
from litlab.errors import LitlabError, check_choice, check_positive_int


def _image_prototypes(g: torch.Generator, num_classes: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Smooth random patterns, one per class: low-resolution noise upsampled. (K, C, H, W)"""
    c, h, w = shape
    low = torch.randn(num_classes, c, max(2, h // 4), max(2, w // 4), generator=g)
    protos = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    spread = protos.flatten(1).std(dim=1)  # unit variance; one pixel has none, see _scalar_prototypes
    return protos / spread.clamp_min(1e-6).view(-1, 1, 1, 1)


def _sequence_prototypes(g: torch.Generator, num_classes: int, shape: tuple[int, int]) -> torch.Tensor:
    """Sums of sines with class-specific frequencies and phases per feature. (K, L, F)"""
    length, feats = shape
    t = torch.linspace(0, 1, length).view(1, length, 1)
    freq = 1 + 4 * torch.rand(num_classes, 1, feats, generator=g)
    phase = 2 * math.pi * torch.rand(num_classes, 1, feats, generator=g)
    return torch.sin(2 * math.pi * freq * t + phase) * math.sqrt(2)


def scalar_spacing(num_classes: int) -> float:
    """Distance between neighbouring classes of ``_scalar_prototypes``: the one that gives them unit variance."""
    return math.sqrt(12 / (num_classes ** 2 - 1))


def _scalar_prototypes(num_classes: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Evenly spaced levels, one per class, for samples of a single value. (K, *shape)

    A single value has no pattern: random ones gave classes the same or nearly the same level
    (one pixel scaled to unit size was +-1 for every class), and the data was not learnable.
    """
    levels = (torch.arange(num_classes) - (num_classes - 1) / 2) * scalar_spacing(num_classes)
    return levels.view(num_classes, *shape)


def make_prototypes(kind: str, g: torch.Generator, num_classes: int, shape: tuple[int, ...]) -> torch.Tensor:
    """One pattern per class ``(K, *shape)``; the generator is untouched for single-value samples."""
    if math.prod(shape) == 1:
        return _scalar_prototypes(num_classes, shape)
    return (_image_prototypes if kind == "image" else _sequence_prototypes)(g, num_classes, shape)


def available_memory_bytes() -> int | None:
    """Memory this machine can still give (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_in_memory(nbytes: int, keys: str) -> None:
    """Data generated in memory (float32, with temporaries twice its size while it is drawn) must
    fit, or the process is killed with nothing reported."""
    available = available_memory_bytes()
    if available is not None and 3 * nbytes > available:
        raise LitlabError(f"{keys} ask for {nbytes / 2**30:.1f} GiB of float32 data, and drawing it needs about "
                          f"{3 * nbytes / 2**30:.1f} GiB; this machine has {available / 2**30:.1f} GiB available. "
                          f"Lower them.")


def make_synthetic(kind: str, shape: tuple[int, ...], num_classes: int, n: int, noise: float,
                   g: torch.Generator, protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples: a random class's prototype times a random gain, plus Gaussian noise.

    Single values are shifted by the gain instead (by at most a quarter of the spacing between
    classes): scaling a level by 0.75..1.25 slid it onto its neighbour's, where a pattern scaled
    stays its class's pattern.
    """
    y = torch.randint(0, num_classes, (n,), generator=g)
    gain = 0.75 + 0.5 * torch.rand(n, *([1] * len(shape)), generator=g)
    if math.prod(shape) == 1:
        signal = protos[y] + (gain - 1) * scalar_spacing(num_classes)
    else:
        signal = protos[y] * gain
    x = signal + noise * torch.randn(n, *shape, generator=g)
    return x.float(), y


class SyntheticDataModule(ClassificationData):
    """Synthetic images ``(C, H, W)`` or sequences ``(L, F)`` of any size and class count.

    Args:
        kind: ``image`` or ``sequence``.
        shape: ``[C, H, W]`` or ``[L, F]``.
        num_classes: number of classes.
        num_train, num_val, num_test: samples per split.
        noise: noise standard deviation relative to the unit-variance signal.
        data_seed: seed of the data itself (fixed, independent of the run's seed).
    """

    def __init__(self, kind: str = "image", shape=(1, 16, 16), num_classes: int = 10, num_train: int = 2000,
                 num_val: int = 500, num_test: int = 500, noise: float = 1.0, data_seed: int = 0,
                 batch_size: int = 64, num_workers: int | None = None, augment: dict | None = None):
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        self.kind = check_choice("data.kind", kind, ("image", "sequence"))
        want = 3 if kind == "image" else 2
        shape = tuple(shape) if isinstance(shape, (list, tuple)) else shape
        if not isinstance(shape, tuple) or len(shape) != want or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
            form = "[C, H, W]" if kind == "image" else "[L, F]"
            raise LitlabError(f"data.shape must be {form} of positive integers for data.kind={kind}, got {shape!r}.")
        self.shape = shape
        self.num_classes_ = check_positive_int("data.num_classes", num_classes)
        if num_classes < 2:
            raise LitlabError(f"data.num_classes must be at least 2, got {num_classes}.")
        self.sizes = [check_positive_int(f"data.{k}", v)
                      for k, v in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test))]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
            raise LitlabError(f"data.noise must be a non-negative finite number, got {noise!r}.")
        self.noise = float(noise)
        self.data_seed = data_seed
        check_fits_in_memory(sum(self.sizes) * math.prod(shape) * 4, "data.shape and data.num_train/num_val/num_test")

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(int(self.data_seed))
        protos = make_prototypes(self.kind, g, self.num_classes_, self.shape)
        parts = [TensorSplit(*make_synthetic(self.kind, self.shape, self.num_classes_, n, self.noise, g, protos))
                 for n in self.sizes]
        mean, std = compute_stats(parts[0].x, self.kind)
        pre = Preprocess(kind=self.kind, mean=mean, std=std, pixels=False)
        names = [f"class_{i}" for i in range(self.num_classes_)]
        return Splits(parts[0], parts[1], parts[2], names, self.shape, pre)
