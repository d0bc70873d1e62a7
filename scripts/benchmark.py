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
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

CASES = ("training", "data", "startup", "ddp", "gpu")
MODULES = {"training": "training_loop", "data": "data_path", "startup": "startup", "ddp": "multiprocess", "gpu": "gpu"}
# the cases' run folders: scratch, removed after each case (only the measured rates are kept)
RUN_FOLDERS = ("runs", "ddp-runs", "startup-runs")
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked before any case runs: a mistake in it (an unknown case, a JSON
    path that cannot be written) must not surface only after minutes of measuring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results here as JSON (missing folders are created)")
    p.add_argument("--tiny", "--quick", action="store_true",
                   help="tiny sizes and one repeat: checks that each case runs; judges no target")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--markdown", action="store_true", help="also print the table in Markdown (for BENCHMARKS.md)")
    p.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "bench",
                   help="data, generated images and run folders (default: outputs/bench)")
    p.add_argument("--probe-memory", metavar="NAME:CONTENDER:PHASE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.cases = case_names(p, args.cases)
    if args.json is not None:
        check_writable_file(p, "--json", args.json)
    check_folder(p, "--work-dir", args.work_dir)
    return args


def case_names(p: argparse.ArgumentParser, listed: str) -> list[str]:
    """``--cases``, split at commas and stripped (``"training, data"`` is two cases); an empty or
    unknown name is a usage error that names it."""
    names = [name.strip() for name in listed.split(",")]
    if "" in names:
        p.error(f"--cases: the list {listed!r} has an empty name; give comma-separated names from {', '.join(CASES)}")
    unknown = set(names) - set(CASES)
    if unknown:
        p.error(f"--cases: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    return names


def check_writable_file(p: argparse.ArgumentParser, option: str, path: Path) -> None:
    """``path`` can be written as a file once the run ends, checked before any case runs (the JSON
    is written last, and a bad path lost a whole run's results): not a folder, a name the file
    system takes, and a folder that is (or can be made) writable (``litlab.run_folders.path_problem``)."""
    from litlab.run_folders import name_limit, path_problem

    if path.is_dir():
        p.error(f"{option} {path}: is a folder; give a file name, e.g. {path / 'results.json'}")
    if len(os.fsencode(path.name)) > name_limit(path.parent):
        p.error(f"{option} {path}: the file name is too long for the file system")
    problem = path_problem(path.parent, writable=True)
    if problem:
        p.error(f"{option} {path}: {problem}")


def check_folder(p: argparse.ArgumentParser, option: str, path: Path) -> None:
    """``path`` is a folder or can be created as one, and is writable."""
    from litlab.run_folders import path_problem

    problem = path_problem(path, writable=True)
    if problem:
        p.error(f"{option} {path}: {problem}")


def run_case(case: str, work: Path, tiny: bool) -> tuple[list[dict], str | None]:
    """The records of one case, and why it failed (None if it ran). One broken case must not lose
    the others' results, nor hide its own targets: a crash gives each target the case would have
    judged a record that is skipped with the reason and missed (a case without targets: one record
    named after the case)."""
    module = None
    try:
        module = importlib.import_module(f"bench.{MODULES[case]}")
        return module.run(work, tiny), None
    except Exception as e:
        traceback.print_exc()
        reason = failure_reason(e)
        return failed_records(case, module, tiny, reason), reason


def failure_reason(error: BaseException, limit: int = 500) -> str:
    """``failed: TYPE: MESSAGE`` on one line of at most ``limit`` characters, for the case's
    records and the table. The message's first line says what failed and the rest why: where it
    carries a child process's stderr, that holds the child's own error (litlab's ``Error: ...``,
    a traceback's final exception line). A traceback's header and frames (indented lines) are left
    out, and an over-long first line (a command line with its paths) is shortened before the rest
    is; the traceback printed on stderr has everything."""
    first, *rest = str(error).splitlines() or [""]
    why = " ".join(ln.strip() for ln in rest
                   if ln.strip() and not ln[:1].isspace() and not ln.startswith("Traceback (most recent"))
    head = f"failed: {type(error).__name__}: {first.strip()}"
    if why and len(head) + 1 + len(why) > limit:
        head = shorten(head, max(limit - 1 - len(why), limit // 3))
    return shorten(f"{head} {why}".strip(), limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with "..."."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failed_records(case: str, module, tiny: bool, reason: str) -> list[dict]:
    """A crashed case's records: one per target it would have judged (its module's ``targets``),
    each missed, or one named after the case where it has none (or its module did not import)."""
    from bench.common import failed

    known = module.targets(tiny) if module is not None and hasattr(module, "targets") else []
    return [failed(name, unit, baseline, reason, target) for name, unit, baseline, target in known] or \
        [failed(case, "", "", reason)]


def fmt(value, digits: int = 3, blank: str = "-") -> str:
    if value is None:
        return blank
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


# said above the table of a --tiny run, whose verdicts are left out (``not_judged``)
TINY_NOTE = ("--tiny: the sizes and repeats are too small for the targets, so the ratios below check that each "
             "case runs and are not judged ({verdict}); run without --tiny to judge them")
TINY_HEADER = TINY_NOTE.format(verdict="met: -")


def not_judged(records: list[dict]) -> list[dict]:
    """The records of a ``--tiny`` run without their verdicts (``met`` None): a few steps of a tiny
    model time start-up and one-off costs, not the loop the targets are about (the litlab run was
    read as 7x slower than the raw loop). A case that crashed keeps its missed target: the
    plumbing that tiny mode checks failed."""
    return [r if (r["skipped"] or "").startswith("failed") else {**r, "met": None} for r in records]


def print_table(records: list[dict], tiny: bool = False) -> None:
    """One line per comparison, every field of the JSON record except the raw samples; a
    ``tiny`` run's table under ``TINY_HEADER``."""
    if tiny:
        print(TINY_HEADER)
    print(f"{'name':42} {'unit':22} {'litlab':>10} {'baseline':>10} {'base value':>11} {'ratio':>7} {'paired':>7}"
          f"  target              met")
    for r in records:
        if r["skipped"]:
            missed = f"  (target {r['target']}: NO)" if r["met"] is False else ""
            print(f"{r['name']:42} skipped: {r['skipped']}{missed}")
            continue
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['name']:42} {r['unit']:22} {fmt(r['litlab']):>10} {r['baseline']:>10} "
              f"{fmt(r['baseline_value']):>11} {fmt(r['ratio']):>7} {fmt(r['paired_ratio']):>7}  "
              f"{r['target'] or '-':19} {met}"
              + (f"  ({r['note']})" if r["note"] else ""))


def markdown_table(records: list[dict], tiny: bool = False) -> str:
    """The results as the Markdown table of BENCHMARKS.md; a ``tiny`` run's under the same note as
    its plain table (a blank line between: a line right above a table would join its header)."""
    note = [TINY_NOTE.format(verdict="met left blank"), ""] if tiny else []
    lines = [*note, "| comparison | unit | litlab | baseline | baseline value | ratio | paired ratio | target | met |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for r in records:
        if r["skipped"]:
            missed = "**no**, " if r["met"] is False else ""
            lines.append(f"| {r['name']} | | | | | | | {r['target'] or ''} | {missed}skipped: {r['skipped']} |")
            continue
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['name']} | {r['unit']} | {fmt(r['litlab'])} | {r['baseline']} | "
                     f"{fmt(r['baseline_value'])} | {fmt(r['ratio'])} | {fmt(r['paired_ratio'], blank='')} | "
                     f"{r['target'] or ''} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen cases and reports them; exit status 1 if any case failed (its records say
    why), so that a script or CI running the benchmark sees it."""
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
    failures: dict[str, str] = {}
    info_wall: dict[str, float] = {}
    for case in args.cases:
        print(f"== {case}", flush=True)
        case_start = time.perf_counter()
        try:
            case_records, failure = run_case(case, work, args.tiny)
        finally:
            for name in RUN_FOLDERS:
                shutil.rmtree(work / name, ignore_errors=True)
        records += case_records
        if failure is not None:
            failures[case] = failure
        info_wall[case] = round(time.perf_counter() - case_start, 1)
    info = machine()
    info["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
    info["case_wall_s"] = info_wall
    info["tiny"] = args.tiny
    if args.tiny:
        records = not_judged(records)
    print_table(records, args.tiny)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if args.markdown:
        print(markdown_table(records, args.tiny))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"tiny": args.tiny, "cases": records, "machine": info}, indent=2))
    return report_failures(failures)


def report_failures(failures: dict[str, str]) -> int:
    """Names the failed cases last, on stderr, where they cannot scroll out of sight behind the
    table; the exit status: 1 if any case failed, else 0."""
    for case, reason in failures.items():
        print(f"benchmark: case {case} {reason}", file=sys.stderr)
    if failures:
        print(f"benchmark: {len(failures)} case(s) failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
