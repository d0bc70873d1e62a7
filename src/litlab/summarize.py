"""``python -m litlab.summarize DIR`` (``litlab-summarize``): one table of a sweep, best job first.

Reads each job's ``metrics.json`` and ``.hydra/overrides.yaml`` under a multirun folder; prints the
table ranked by the optimized metric (swept values as columns, failed jobs marked) and writes
``summary.csv``, ``summary.md``, ``metric_vs_params.png`` and, when the jobs were compressed,
``accuracy_vs_size.png`` / ``accuracy_vs_latency.png`` with their Pareto fronts. The same table
and figures go to TensorBoard in ``DIR/tensorboard_summary``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from litlab.errors import LitlabError
from litlab.sweeps.compressed_keys import compression_keys
from litlab.sweeps.sweep_plots import accuracy_vs_cost, metric_vs_params
from litlab.sweeps.sweep_table import (check_metric_present, direction_of, format_markdown, format_text,
                                       optimized_metrics, rank, read_jobs, swept_params, table_rows,
                                       write_csv)


log = logging.getLogger(__name__)

# the figures a summary may draw, each DIR/<name>.png
FIGURES = ("metric_vs_params", "accuracy_vs_size", "accuracy_vs_latency")


def summarize(sweep_dir: Path, metric: str | None = None, direction: str | None = None) -> dict:
    """Writes the summary files of ``sweep_dir``; returns ``rows``, ``metric``, ``direction``, ``files``."""
    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    optimized = optimized_metrics(jobs, sweep_dir)
    if metric is None and len(optimized) > 1:
        log.warning("the jobs of %s optimized different metrics (%s); ranking by %s. Choose one with --metric.",
                    sweep_dir, ", ".join(optimized), optimized[0])
    metric = metric or (optimized[0] if optimized else "val/acc")
    check_metric_present(jobs, metric)
    direction = direction or direction_of(metric, sweep_dir)
    params = swept_params(jobs)
    compressed = compression_keys([j.metrics for j in jobs])
    extra = [k for k in ("test/acc", *compressed.values()) if k != metric]
    ranked = rank(jobs, metric, direction)
    rows = table_rows(ranked, params, metric, extra)
    files = {"csv": sweep_dir / "summary.csv", "md": sweep_dir / "summary.md"}
    write_csv(rows, files["csv"])
    title = f"# Sweep {sweep_dir.name}: {len(jobs)} jobs ranked by {metric} ({direction})\n\n"
    files["md"].write_text(title + format_markdown(rows) + "\n")
    figures = {"metric_vs_params": metric_vs_params(jobs, params, metric)}
    for kind in ("size", "latency"):
        if "accuracy" in compressed and kind in compressed:
            drawn = accuracy_vs_cost(jobs, compressed["accuracy"], compressed[kind])
            if drawn is not None:
                figures[f"accuracy_vs_{kind}"] = drawn[0]
                for row in rows:
                    row.setdefault("pareto", "")
                    if row["job"] in drawn[1]:
                        row["pareto"] = (row["pareto"] + f" {kind}").strip()
    if any("pareto" in r for r in rows):  # rewrite with the Pareto column
        write_csv(rows, files["csv"])
        files["md"].write_text(title + format_markdown(rows) + "\n")
    for name in FIGURES:  # a figure of an earlier summary that this one does not draw is stale
        (sweep_dir / f"{name}.png").unlink(missing_ok=True)
    for name, fig in figures.items():
        if fig is not None:
            files[name] = sweep_dir / f"{name}.png"
            fig.savefig(files[name], dpi=110)
    files["tensorboard"] = _to_tensorboard(sweep_dir / "tensorboard_summary", rows, params, metric, extra, figures,
                                           title + format_markdown(rows))
    return {"rows": rows, "metric": metric, "direction": direction, "files": files}


def _to_tensorboard(log_dir: Path, rows: list[dict], params: list[str], metric: str, extra: list[str],
                    figures: dict, markdown: str) -> Path:
    """The table as TensorBoard text and hparams (one session per job), the figures as images."""
    from torch.utils.tensorboard import SummaryWriter

    import matplotlib.pyplot as plt

    shutil.rmtree(log_dir, ignore_errors=True)  # an earlier summary's events would show every job twice
    with SummaryWriter(str(log_dir)) as writer:
        writer.add_text("sweep/summary", markdown)
        for name, fig in figures.items():
            if fig is not None:
                writer.add_figure(f"sweep/{name}", fig, close=False)
        for row in rows:
            hparams = {p: _hparam(row.get(p)) for p in params}
            hparams["status"] = row["status"]
            values = {f"summary/{k}": row[k] for k in (metric, *extra) if isinstance(row.get(k), float)}
            writer.add_hparams(hparams, values or {f"summary/{metric}": float("nan")}, run_name=f"job_{row['job']}")
    plt.close("all")
    return log_dir


def _hparam(text: object) -> float | int | str:
    from litlab.sweeps.sweep_table import parse_value

    return parse_value(str(text)) if text is not None else ""


def main(argv: list[str] | None = None) -> None:
    """Command line: ``litlab-summarize DIR [--metric KEY] [--direction maximize|minimize]``."""
    parser = argparse.ArgumentParser(prog="litlab-summarize", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a multirun folder, e.g. outputs/multiruns/<time>")
    parser.add_argument("--metric", help="metrics.json key to rank by (default: the jobs' optimized_metric)")
    parser.add_argument("--direction", choices=("maximize", "minimize"),
                        help="default: the Optuna sweeper's direction, else guessed from the metric's name")
    args = parser.parse_args(argv)
    try:
        result = summarize(args.dir, args.metric, args.direction)
    except LitlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(f"{len(result['rows'])} jobs ranked by {result['metric']} ({result['direction']}):\n")
    print(format_text(result["rows"]))
    print()
    for kind, path in result["files"].items():
        print(f"  {kind:<18} {path}")
    print(f"  open in TensorBoard: tensorboard --logdir {result['files']['tensorboard']}")


if __name__ == "__main__":
    main()
