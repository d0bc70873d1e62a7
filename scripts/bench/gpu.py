"""Case 5, GPU: resnet50 at 224x224, bf16-mixed, channels-last, with and without torch.compile.

Skipped (and recorded as skipped) without CUDA. litlab runs ``train(cfg)`` with ``trainer=gpu
trainer.precision=bf16-mixed`` (channels-last and the fused optimizer come from its defaults),
once eager and once with ``model.compile=true``. Each is compared with the tuned hand-written
loop of ``bench.contenders`` built from the same config (same net, compiled or not, the same
fused AdamW and schedule, the same normalized in-memory data fetched a batch at a time, pinned
and copied ahead, under ``torch.autocast(bfloat16)``), alternating, over the same window: three
epochs of the same batches, the first excluded, the device synchronized at the window's ends.
MFU is model FLOPs (``torch.utils.flop_counter``, forward + backward) x images/s / device peak.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from bench.common import alternate, median, paired_ratio, quiet, record, scratch_run, skipped
from bench.contenders import TrainSpec, run_litlab, run_raw

# dense (not sparse) bf16 tensor-core peaks in FLOP/s by device-name fragment, from the vendors'
# data sheets. None: a variant whose figure is not known here; it must not fall back to the
# shorter name it contains (e.g. "H100 NVL" to the SXM "H100"), so its MFU is reported unknown.
PEAK_BF16 = {"H200": 989e12, "H200 NVL": None, "GH200": 989e12, "H100": 989e12, "H100 PCIe": 756e12,
             "H100 NVL": None, "A100": 312e12, "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A40": 149.7e12,
             "A10": 125e12, "A10G": None}
NAMES = ("gpu_resnet50_eager_vs_raw", "gpu_resnet50_compiled_vs_raw", "gpu_resnet50_mfu")
TARGET = 0.98
"""litlab / the tuned hand-written loop, paired: at least this (eager and compiled)."""


def targets(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The comparisons of case 5 that carry a target, as ``(name, unit, baseline, target)``: what a
    crash of the case reports as missed, instead of losing them."""
    return [(name, "samples/s", "raw", f"paired ratio >= {TARGET}") for name in NAMES[:2]]


def device_peak() -> float | None:
    """The dense bf16 peak of CUDA device 0, or None where it is not known."""
    return peak_for(torch.cuda.get_device_name(0))


def peak_for(device_name: str) -> float | None:
    """The dense bf16 peak for a device name, from its most specific fragment in ``PEAK_BF16``:
    fragments are tried longest first and must stand as whole words, since the names nest ("L4"
    in "L40", "A10" in "A10G", "H100" in "H100 PCIe") and a loose match gives a wrong MFU."""
    for fragment in sorted(PEAK_BF16, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(fragment)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return PEAK_BF16[fragment]
    return None


def flops_per_image(num_classes: int = 10) -> float:
    """Forward + backward FLOPs of resnet50 on one 224x224 image."""
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    x = torch.randn(2, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), torch.zeros(2, dtype=torch.long)).backward()
    return counter.get_total_flops() / 2


def run(work: Path, tiny: bool) -> list[dict]:
    """The records of case 5."""
    if not torch.cuda.is_available():
        return [skipped(n, "samples/s", "raw", "no CUDA device on this machine") for n in NAMES]
    batch, steps = (16, 6) if tiny else (256, 30)
    n = batch * (steps + 2)
    common = ["model=torchvision", "model.net.name=resnet50", "data=synthetic", "data.shape=[3,224,224]",
              f"data.num_train={n}", f"data.num_val={batch}", f"data.num_test={batch}", f"data.batch_size={batch}",
              "trainer=gpu", "trainer.precision=bf16-mixed", "logger=csv"]
    repeats = 1 if tiny else 2
    lit, raw, values = {}, {}, {}
    for kind, extra in (("eager", []), ("compiled", ["model.compile=true"])):
        # three epochs of `steps` batches; the first (and with it compilation) is outside the rate
        spec = TrainSpec(f"resnet50_gpu_{kind}", common + extra, epochs=3, limit_train=steps, limit_val=1,
                         accelerator="gpu")
        runs = {"litlab": run_litlab, "raw": functools.partial(run_raw, tuned=True)}
        with quiet(work / "runs.log"):
            values[kind] = alternate({name: scratch_run(lambda run_dir, f=f: f(spec, work / "data", run_dir),
                                                        work / "runs" / f"gpu-{kind}-{name}")
                                      for name, f in runs.items()}, repeats, warmup=0)
        lit[kind], raw[kind] = median(values[kind]["litlab"]), median(values[kind]["raw"])
    peak, flops = device_peak(), flops_per_image()
    rates = {"litlab_eager": lit["eager"], "litlab_compiled": lit["compiled"], "raw_eager": raw["eager"],
             "raw_compiled": raw["compiled"]}
    mfu = {k: (v * flops / peak if peak else None) for k, v in rates.items()}
    records = []
    for name, kind in zip(NAMES[:2], ("eager", "compiled")):
        r = record(name, "samples/s", lit[kind], "raw", raw[kind], target=f"paired ratio >= {TARGET}",
                   samples=values[kind], paired=paired_ratio(values[kind]["litlab"], values[kind]["raw"]),
                   note="both bf16-mixed, channels-last, fused AdamW, in-memory batches"
                        + (", torch.compile" if kind == "compiled" else ", eager"))
        r["met"] = r["paired_ratio"] is not None and r["paired_ratio"] >= TARGET
        records.append(r)
    best = max(("eager", "compiled"), key=lambda k: lit[k])
    if not peak:  # no MFU rather than one against a wrong peak; the rates are in the records above
        records.append(skipped(NAMES[2], "MFU", f"raw {best}", f"MFU unknown: no dense bf16 peak on record for "
                                                               f"{torch.cuda.get_device_name(0)}"))
        return records
    records.append(record(NAMES[2], "MFU", mfu[f"litlab_{best}"], f"raw {best}", mfu[f"raw_{best}"], samples=mfu,
                          note=f"litlab {best} (its faster mode); {flops / 1e9:.1f} GFLOP per image (fwd+bwd); "
                               f"peak {peak:.4g} FLOP/s bf16"))
    return records
