"""Case 2, the data path: litlab trained from image files vs from the same images as tensors.

Both sides run ``litlab.train`` with the same CNN; only ``data=`` differs: an image folder
(digits as PNG files; generated 64x64 JPEGs) or an ``.npz`` of exactly the decoded images,
which litlab serves from memory. The loader alone (no model) is timed against the rate at
which the model consumes samples, to show whether the files' decoding is the bottleneck.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import alternate, compose_cfg, median, quiet, record, scratch_run
from bench.contenders import TrainSpec, run_litlab


def write_jpeg_folder(root: Path, n: int, size: int, classes: int = 10, seed: int = 0) -> Path:
    """``root/{train,val,test}/<class>/<i>.jpg``: class-specific smooth colour patterns plus noise
    (80/10/10 split); written once, reused while the marker file matches."""
    marker = root / f".complete-{n}-{size}"
    if marker.is_file():
        return root
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(classes, 3, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.arange(n) % classes  # every split gets every class
    images = (protos[labels] + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C) for PIL
    for i in range(n):
        split = "train" if i < 0.8 * n else "val" if i < 0.9 * n else "test"
        d = root / split / str(int(labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i], mode="RGB").save(d / f"{i:05d}.jpg", quality=90)
    marker.write_text("")
    return root


def write_npz_twin(folder_overrides: list[str], data_dir: Path, out: Path, work: Path) -> Path:
    """The image folder's splits, decoded by litlab itself, saved as arrays for ``data=npz``."""
    from litlab.build import build_data

    cfg = compose_cfg([*folder_overrides, f"paths.data_dir={data_dir}", "data.in_memory=true"], work / "runs" / "npz")
    with quiet(work / "runs.log"):
        dm = build_data(cfg)
    arrays = {}
    for split in ("train", "val", "test"):
        ds = getattr(dm.splits, split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = ds.x.numpy(), ds.y.numpy()
    np.savez(out, **arrays)
    return out


def loader_rate(folder_overrides: list[str], data_dir: Path, work: Path, passes: int = 2) -> float:
    """Images/s of the training loader alone (no model): the last of ``passes`` epochs, so
    worker start-up is excluded as it is from the training figures. Its worker processes are shut
    down at the end, as Lightning does after a fit: left to the garbage collector (the loader is in
    a reference cycle), they stalled whatever ran at the next collection by 5 s per worker (10 s
    idle in the tiny benchmark's ddp case; in a full run possibly inside a later timed window)."""
    from lightning.pytorch.utilities.combined_loader import _shutdown_workers_and_reset_iterator

    from litlab.build import build_data

    cfg = compose_cfg([*folder_overrides, f"paths.data_dir={data_dir}"], work / "runs" / "loader")
    with quiet(work / "runs.log"):
        loader = build_data(cfg).train_dataloader()
        rate = 0.0
        for _ in range(passes):
            start, n = time.perf_counter(), 0
            for _, y in loader:
                n += len(y)
            rate = n / (time.perf_counter() - start)
    _shutdown_workers_and_reset_iterator(loader)
    return rate


DIGITS_TARGET = 0.9
"""Digits from the PNG folder / from tensors: at least this."""
LOADER_TARGET = 1.3
"""The streaming JPEG loader alone / the model's consumption: at least this."""


def jpeg_set(tiny: bool) -> tuple[int, int]:
    """Number and side of the generated JPEGs."""
    return (200, 32) if tiny else (3000, 64)


def targets(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The comparisons of case 2 that carry a target, as ``(name, unit, baseline, target)``: what a
    crash of the case reports as missed, instead of losing them with its other records."""
    return [("data_digits_png_folder_vs_tensors", "samples/s", "in-memory tensors (npz)",
             f"ratio >= {DIGITS_TARGET}"),
            (f"data_jpeg{jpeg_set(tiny)[1]}_loader_vs_model", "samples/s", "model consumption (npz)",
             f"ratio >= {LOADER_TARGET}")]


def compare(name: str, folder: TrainSpec, tensors: TrainSpec, work: Path, repeats: int, warmup: int,
            target: float | None) -> tuple[dict, dict]:
    """Alternating runs of the folder and tensor specs; the record and the raw values."""

    def runner(spec):
        return scratch_run(lambda run_dir: run_litlab(spec, work / "data", run_dir), work / "runs" / f"{name}-{spec.name}")

    with quiet(work / "runs.log"):
        values = alternate({"folder": runner(folder), "tensors": runner(tensors)}, repeats, warmup)
    r = record(name, "samples/s", median(values["folder"]), "in-memory tensors (npz)", median(values["tensors"]),
               target=f"ratio >= {target}" if target else None, samples=values)
    if target is not None:
        r["met"] = r["ratio"] is not None and r["ratio"] >= target
    return r, values


def run(work: Path, tiny: bool) -> list[dict]:
    """All records of case 2."""
    repeats, warmup = (1, 0) if tiny else (3, 1)
    n_jpeg, size = jpeg_set(tiny)
    epochs, limit = (2, 2) if tiny else (3, 10)
    data_dir = work / "data"
    records = []

    digits = ["data=digits"]
    digits_npz = write_npz_twin(digits, data_dir, work / "digits.npz", work)
    folder = TrainSpec("digits_png", digits, epochs=2 if tiny else 5, limit_train=limit if tiny else None)
    tensors = TrainSpec("digits_npz", ["data=npz", f"data.path={digits_npz}"], epochs=folder.epochs,
                        limit_train=folder.limit_train)
    r, _ = compare("data_digits_png_folder_vs_tensors", folder, tensors, work, repeats, warmup, DIGITS_TARGET)
    r["note"] = "digits are small: litlab decodes the folder into memory once (data.in_memory=auto)"
    records.append(r)

    root = write_jpeg_folder(work / f"jpeg{size}", n_jpeg, size)
    jpeg = ["data=imagefolder", f"data.root={root}", "data.channels=3"]
    jpeg_npz = write_npz_twin(jpeg, data_dir, work / f"jpeg{size}.npz", work)
    tensors = TrainSpec("jpeg_npz", ["data=npz", f"data.path={jpeg_npz}"], epochs=epochs, limit_train=limit)
    streamed = TrainSpec("jpeg_streamed", [*jpeg, "data.in_memory=false"], epochs=epochs, limit_train=limit)
    r, values = compare(f"data_jpeg{size}_streamed_vs_tensors", streamed, tensors, work, repeats, warmup, None)
    r["note"] = f"{n_jpeg} JPEGs decoded by loader workers every epoch (data.in_memory=false)"
    records.append(r)
    if not tiny:  # the same code path as the digits row; skipped to keep tiny mode short
        auto = TrainSpec("jpeg_auto", jpeg, epochs=epochs, limit_train=limit)
        r, _ = compare(f"data_jpeg{size}_folder_auto_vs_tensors", auto, tensors, work, 1, 0, None)
        r["note"] = "default data.in_memory=auto: this set fits, so it is decoded once into memory"
        records.append(r)

    model_rate = median(values["tensors"])
    rates = [loader_rate([*jpeg, "data.in_memory=false"], data_dir, work) for _ in range(1 if tiny else 3)]
    r = record(f"data_jpeg{size}_loader_vs_model", "samples/s", median(rates), "model consumption (npz)",
               model_rate, target=f"ratio >= {LOADER_TARGET}", samples={"loader": rates},
               note="streaming loader alone, no model, vs the model's training rate from tensors")
    r["met"] = r["ratio"] is not None and r["ratio"] >= LOADER_TARGET
    records.append(r)
    return records
