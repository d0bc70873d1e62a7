"""litlab performance benchmark: litlab against hand-written baselines, as ratios.

Each comparison runs its contenders in one process (or one subprocess each where a process is
what is measured), alternating them after warm-up, and reports medians and their ratio (for the
training loop also the median of each round's own ratio, which its targets are judged on); no
absolute time is meaningful on its own. Cases (``--cases``):

* ``training``: training-loop overhead vs a raw PyTorch loop and a plain Lightning module,
  plus peak memory;
* ``data``: image-folder data vs the same images as in-memory tensors; loader vs model rate;
* ``startup``: ``python -m litlab.train`` to its first training step vs ``import lightning``;
* ``ddp``: ``trainer=ddp_cpu`` with 2 processes vs 1 (scaling efficiency);
* ``gpu``: resnet50 bf16 channels-last with/without ``torch.compile`` (CUDA only).

Usage::

    .venv/bin/python scripts/benchmark.py --json outputs/bench/results.json
    .venv/bin/python scripts/benchmark.py --tiny --cases training,startup   # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

CASES = ("training", "data", "startup", "ddp", "gpu")
# the cases' run folders: scratch, removed after each case (only the measured rates are kept)
RUN_FOLDERS = ("runs", "ddp-runs", "startup-runs")
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.add_argument("--tiny", "--quick", action="store_true", help="tiny sizes and one repeat (checks, not numbers)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--markdown", action="store_true", help="also print the table in Markdown (for BENCHMARKS.md)")
    p.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "bench",
                   help="data, generated images and run folders (default: outputs/bench)")
    p.add_argument("--probe-memory", metavar="NAME:CONTENDER:PHASE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        p.error(f"--cases: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    return args


def run_case(case: str, work: Path, tiny: bool) -> list[dict]:
    """The records of one case; a case that crashes becomes a skipped record naming the error."""
    from bench import common

    modules = {"training": "training_loop", "data": "data_path", "startup": "startup", "ddp": "multiprocess",
               "gpu": "gpu"}
    try:
        module = __import__(f"bench.{modules[case]}", fromlist=["run"])
        return module.run(work, tiny)
    except Exception as e:  # one broken case must not lose the others' results
        traceback.print_exc()
        first_line = (str(e).splitlines() or [""])[0]  # the traceback above has the rest
        return [common.skipped(case, "", "", f"failed: {type(e).__name__}: {first_line}")]


def fmt(value, digits: int = 3, blank: str = "-") -> str:
    if value is None:
        return blank
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def print_table(records: list[dict]) -> None:
    """One line per comparison, every field of the JSON record except the raw samples."""
    print(f"{'name':42} {'unit':22} {'litlab':>10} {'baseline':>10} {'base value':>11} {'ratio':>7} {'paired':>7}"
          f"  target              met")
    for r in records:
        if r["skipped"]:
            print(f"{r['name']:42} skipped: {r['skipped']}")
            continue
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['name']:42} {r['unit']:22} {fmt(r['litlab']):>10} {r['baseline']:>10} "
              f"{fmt(r['baseline_value']):>11} {fmt(r['ratio']):>7} {fmt(r['paired_ratio']):>7}  "
              f"{r['target'] or '-':19} {met}"
              + (f"  ({r['note']})" if r["note"] else ""))


def markdown_table(records: list[dict]) -> str:
    """The results as the Markdown table of BENCHMARKS.md."""
    lines = ["| comparison | unit | litlab | baseline | baseline value | ratio | paired ratio | target | met |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for r in records:
        if r["skipped"]:
            lines.append(f"| {r['name']} | | | | | | | {r['target'] or ''} | skipped: {r['skipped']} |")
            continue
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['name']} | {r['unit']} | {fmt(r['litlab'])} | {r['baseline']} | "
                     f"{fmt(r['baseline_value'])} | {fmt(r['ratio'])} | {fmt(r['paired_ratio'], blank='')} | "
                     f"{r['target'] or ''} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe_memory:
        from bench.training_loop import probe_main

        # the parent passes its own work folder
        probe_main(args.probe_memory, args.work_dir.resolve(), args.tiny)
        return 0
    work = args.work_dir.resolve() / ("tiny" if args.tiny else "full")
    work.mkdir(parents=True, exist_ok=True)
    from bench.common import machine

    started = time.perf_counter()
    records: list[dict] = []
    info_wall: dict[str, float] = {}
    for case in args.cases.split(","):
        print(f"== {case}", flush=True)
        case_start = time.perf_counter()
        try:
            records += run_case(case, work, args.tiny)
        finally:
            for name in RUN_FOLDERS:
                shutil.rmtree(work / name, ignore_errors=True)
        info_wall[case] = round(time.perf_counter() - case_start, 1)
    info = machine()
    info["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
    info["case_wall_s"] = info_wall
    info["tiny"] = args.tiny
    print_table(records)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if args.markdown:
        print(markdown_table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cases": records, "machine": info}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
