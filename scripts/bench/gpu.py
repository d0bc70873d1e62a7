"""Case 5, GPU: resnet50 at 224x224, bf16-mixed, channels-last, with and without torch.compile.

Skipped (and recorded as skipped) without CUDA. The hand-written loop feeds pinned batches
from a ``DataLoader`` with workers, runs under ``torch.autocast(bfloat16)`` in channels-last,
eager and compiled. litlab runs ``train(cfg)`` with ``trainer=gpu trainer.precision=bf16-mixed``
(channels-last and the fused optimizer come from its defaults), once eager and once with
``model.compile=true``; each is compared with the loop of the same kind.
MFU is model FLOPs (``torch.utils.flop_counter``, forward + backward) x images/s / device peak.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bench.common import median, quiet, record, scratch_run, skipped
from bench.contenders import TrainSpec, run_litlab

# dense bf16 tensor-core peaks (FLOP/s) by device-name fragment, from the vendors' data sheets
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
NAMES = ("gpu_resnet50_eager_vs_raw", "gpu_resnet50_compiled_vs_raw", "gpu_resnet50_mfu")


def device_peak() -> float | None:
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_image(num_classes: int = 10) -> float:
    """Forward + backward FLOPs of resnet50 on one 224x224 image."""
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    x = torch.randn(2, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), torch.zeros(2, dtype=torch.long)).backward()
    return counter.get_total_flops() / 2


def raw_rate(batch: int, steps: int, compiled: bool, n: int) -> float:
    """Images/s of a hand-written bf16 channels-last loop (timed after ``steps // 3`` warm-up steps)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None, num_classes=10).cuda().to(memory_format=torch.channels_last)
    model = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    data = TensorDataset(torch.randn(n, 3, 224, 224), torch.randint(0, 10, (n,)))
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=4, pin_memory=True, drop_last=True)
    warm, done, start = steps // 3, 0, 0.0
    while done < steps:
        for x, y in loader:
            if done == warm:
                torch.cuda.synchronize()
                start = time.perf_counter()
            x = x.cuda(non_blocking=True).to(memory_format=torch.channels_last)
            y = y.cuda(non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    torch.cuda.synchronize()
    return (steps - warm) * batch / (time.perf_counter() - start)


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
    lit = {}
    for kind, extra in (("eager", []), ("compiled", ["model.compile=true"])):
        # the first epoch (and with it compilation) is outside the steady-state rate
        spec = TrainSpec(f"resnet50_gpu_{kind}", common + extra, epochs=3, limit_train=steps, limit_val=1)
        spec.litlab_overrides = _gpu_overrides(spec)
        with quiet(work / "runs.log"):
            one_run = scratch_run(lambda run_dir: run_litlab(spec, work / "data", run_dir), work / "runs" / f"gpu-{kind}")
            lit[kind] = median([one_run() for _ in range(repeats)])
    raw = {"eager": raw_rate(batch, steps, False, n), "compiled": raw_rate(batch, steps, True, n)}
    peak, flops = device_peak(), flops_per_image()
    rates = {"litlab_eager": lit["eager"], "litlab_compiled": lit["compiled"], "raw_eager": raw["eager"],
             "raw_compiled": raw["compiled"]}
    mfu = {k: (v * flops / peak if peak else None) for k, v in rates.items()}
    records = []
    for name, kind in zip(NAMES[:2], ("eager", "compiled")):
        r = record(name, "samples/s", lit[kind], f"raw {kind}", raw[kind], target="ratio >= 0.98",
                   samples={"litlab": [lit[kind]], "raw": [raw[kind]]},
                   note="both bf16-mixed, channels-last" + (", torch.compile" if kind == "compiled" else ", eager"))
        r["met"] = r["ratio"] is not None and r["ratio"] >= 0.98
        records.append(r)
    best = max(("eager", "compiled"), key=lambda k: lit[k])
    records.append(record(NAMES[2], "MFU", mfu[f"litlab_{best}"], f"raw {best}", mfu[f"raw_{best}"], samples=mfu,
                          note=f"litlab {best} (its faster mode); {flops / 1e9:.1f} GFLOP per image (fwd+bwd); "
                               f"peak {peak or 'unknown'} FLOP/s bf16"))
    return records


def _gpu_overrides(spec: TrainSpec):
    """Like ``TrainSpec.litlab_overrides`` without forcing the CPU."""
    base = spec.litlab_overrides

    def overrides(data_dir: Path) -> list[str]:
        return [o for o in base(data_dir) if o != "trainer.accelerator=cpu"]

    return overrides
