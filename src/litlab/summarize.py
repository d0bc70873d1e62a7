"""``python -m litlab.summarize DIR`` (``litlab-summarize``): one table of a sweep, best job first.

Reads each job's ``metrics.json`` and ``.hydra/overrides.yaml`` under a multirun folder; prints the
table ranked by the optimized metric (swept values as columns, failed jobs marked) and writes
``summary.csv``, ``summary.md``, ``metric_vs_params.png`` and, when the jobs were compressed,
``accuracy_vs_size.png`` / ``accuracy_vs_latency.png`` / ``accuracy_vs_flops.png`` with their Pareto fronts. The same table
and figures go to TensorBoard in ``DIR/tensorboard_summary``. ``--out OUT`` writes these files into
``OUT`` instead (for a sweep folder that is read-only or shared). ``--average-over seed`` makes
one row of the jobs that differ only in the seed, with each metric's mean ± std over them
(``sweeps/seed_groups.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from litlab.errors import LitlabError
from litlab.metric_direction import names_a_rate
from litlab.sweeps.compressed_keys import compression_keys
from litlab.sweeps.grid_points import killed_lines, none_started, unstarted_commands, unstarted_lines
from litlab.sweeps.running_sweep import running_sweep, starting_or_killed, sweep_note, wait_for_a_job
from litlab.sweeps.seed_groups import average_keys, check_keys, group_jobs, group_notes, group_rows, shown_rows
from litlab.sweeps.sweep_plots import accuracy_vs_cost, metric_vs_params
from litlab.sweeps.sweep_table import (TEST_SPLIT_LEGEND, check_metric_present, direction_of, format_markdown,
                                       format_text, optimized_metrics, os_reason, rank, read_jobs, swept_params,
                                       table_rows, training_jobs, write_csv)


log = logging.getLogger(__name__)

# the figures a summary may draw, each DIR/<name>.png
FIGURES = ("metric_vs_params", "accuracy_vs_size", "accuracy_vs_latency", "accuracy_vs_flops")


def summarize(sweep_dir: Path, metric: str | None = None, direction: str | None = None,
              out_dir: Path | None = None, average_over: str | None = None) -> dict:
    """Writes the summary files of ``sweep_dir`` into ``out_dir`` (default: ``sweep_dir``); returns
    ``rows``, ``metric``, ``direction``, ``notes``, ``unstarted``, ``averaged`` (``rank_sweep``'s) and ``files``."""
    table = rank_sweep(sweep_dir, metric, direction, average_over)
    files = write_summary(table, out_dir)
    return {**{k: table[k] for k in ("rows", "metric", "direction", "notes", "unstarted", "averaged")},
            "files": files}


def rank_sweep(sweep_dir: Path, metric: str | None = None, direction: str | None = None,
               average_over: str | None = None) -> dict:
    """The ranked table of ``sweep_dir`` and its figures, with nothing written yet: the table can be
    printed before the files are, so that a folder that cannot take them still gives the ranking.

    ``notes`` are the lines under the table (folders left out, what a column means); ``unstarted``
    the jobs of an interrupted grid sweep that never started, with the commands that run them (of
    a sweep whose process still holds its folder, how many are still to start, without commands).
    ``direction`` is None for a metric that is best at neither end (``no_direction``), listed in job
    order, unranked. ``averaged`` is None, or with ``average_over`` (``"seed"``, ``"seed,data.split_seed"``) the table
    of the groups of jobs that differ only in those keys (``average_table``)."""
    sweep_dir = Path(sweep_dir)
    keys = average_keys(average_over) if average_over is not None else None
    try:
        found = starting_or_killed(sweep_dir, read_jobs(sweep_dir))
    except LitlabError:  # not one job folder: a grid sweep stopped before its first job says so
        running = running_sweep(sweep_dir)  # None for a single run's folder, held by its run
        message = none_started(sweep_dir, running, sweep_note(sweep_dir, []))
        if message is None and running:  # an Optuna search starting its first trial
            message = wait_for_a_job(sweep_dir, "holds no job folder yet", running)
        if message is None:
            raise
        raise LitlabError(message) from None
    jobs, left_out = training_jobs(found, sweep_dir)
    optimized = optimized_metrics(jobs, sweep_dir)
    if metric is None and len(optimized) > 1:
        log.warning("the jobs of %s optimized different metrics (%s); ranking by %s. Choose one with --metric.",
                    sweep_dir, ", ".join(optimized), optimized[0])
    metric = metric or default_metric(jobs, optimized)
    check_metric_present(jobs, metric)
    unranked = None if direction else no_direction(metric, jobs)
    direction = None if unranked else direction or direction_of(metric, sweep_dir)
    params = swept_params(jobs)
    compressed = compression_keys([j.metrics for j in jobs])
    # test/ece where the jobs logged it (litlab's eval report: runs before it have none)
    tested = ["test/acc", *(["test/ece"] if any(j.value("test/ece") is not None for j in jobs) else [])]
    extra = [k for k in (*tested, *compressed.values()) if k != metric]
    rows = table_rows(rank(jobs, metric, direction) if direction else jobs, params, metric, extra)
    if unranked:
        for row in rows:
            row["rank"] = "-"
    figures = {"metric_vs_params": metric_vs_params(jobs, params, metric)}
    for kind in ("size", "latency", "flops"):
        if "accuracy" in compressed and kind in compressed:
            drawn = accuracy_vs_cost(jobs, compressed["accuracy"], compressed[kind])
            if drawn is not None:
                figures[f"accuracy_vs_{kind}"] = drawn[0]
                for row in rows:
                    row.setdefault("pareto", "")
                    if row["job"] in drawn[1]:
                        row["pareto"] = (row["pareto"] + f" {kind}").strip()
    title = f"# Sweep {sweep_dir.name}: {counted(len(jobs), 'job')} {ordering(metric, direction)}\n\n"
    notes = [n for n in (left_out, TEST_SPLIT_LEGEND if any(r.get("test_split") == "val" for r in rows) else None,
                         unranked) if n] + killed_lines(sweep_dir, jobs)
    averaged = average_table(jobs, params, keys, metric, direction, extra, sweep_dir) if keys else None
    unstarted = unstarted_commands(sweep_dir, found, running_sweep(sweep_dir), sweep_note(sweep_dir, found))
    return {"rows": rows, "metric": metric, "direction": direction, "sweep_dir": sweep_dir, "params": params,
            "extra": extra, "figures": figures, "title": title, "notes": notes, "averaged": averaged,
            "unstarted": unstarted}


def average_table(jobs: list, params: list[str], keys: list[str], metric: str, direction: str | None,
                  extra: list[str], sweep_dir: Path) -> dict:
    """The groups of ``jobs`` that differ only in ``keys``: ``rows`` for summary.csv (each metric's
    mean, std and n as numbers), ``shown`` for the printed table and summary.md (``val/acc mean ± std
    (n)``), ``heading`` (after "N groups of M jobs", ``groups_of_jobs``) and ``notes``."""
    notes = check_keys(keys, jobs, params, sweep_dir)
    groups = group_jobs(jobs, params, keys)
    rows = group_rows(groups, metric, direction, extra)
    order = f"ranked by mean {metric} ({direction})" if direction else "listed in job order (no direction)"
    heading = f"averaged over {', '.join(keys)}, {order}"
    return {"keys": keys, "rows": rows, "shown": shown_rows(rows, metric, extra), "heading": heading,
            "notes": [*group_notes(groups, keys, metric, extra), *notes], "n_jobs": len(jobs)}


def groups_of_jobs(averaged: dict) -> str:
    """``3 groups of 9 jobs`` (``1 group of 3 jobs``): how many rows the grouped table has, of how many jobs."""
    return f"{counted(len(averaged['rows']), 'group')} of {counted(averaged['n_jobs'], 'job')}"


def counted(n: int, noun: str) -> str:
    """``1 job``, ``3 jobs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def default_metric(jobs: list, optimized: list[str]) -> str:
    """The metric to rank by where ``--metric`` is not given: of lr_find runs (every job ``task:
    lr_find``), their ``suggested_lr`` (listed unranked: ``no_direction``), checked first as their
    ``.hydra/config.yaml`` names the ``optimized_metric`` of train's config (val/acc) that they never
    record; else the one the jobs optimized (``optimized_metrics``); else val/acc."""
    if jobs and all(j.metrics.get("task") == "lr_find" for j in jobs):
        return "suggested_lr"
    return optimized[0] if optimized else "val/acc"


def no_direction(metric: str, jobs: list) -> str | None:
    """Why ``metric`` is best at neither end, for the line under the table; None for a score.
    A learning rate is a setting, not a score (``metric_direction.names_a_rate``), and every figure
    of lr_find's range tests (``task: lr_find``) describes the test: ranked, the largest suggested
    rate came first as if it were the best (guessed ``maximize``, the default for a name that does
    not tell). ``--direction`` ranks by it all the same."""
    if jobs and all(j.metrics.get("task") == "lr_find" for j in jobs):
        why = f"{metric} of a learning-rate range test (task: lr_find) describes the test; it is not a score"
    elif names_a_rate(metric):
        why = f"{metric} is a learning rate, a setting and not a score"
    else:
        return None
    return (f"no direction: {why}, so the jobs are listed in job order, unranked. Pass --direction maximize or "
            f"--direction minimize to rank them by it.")


def ordering(metric: str, direction: str | None) -> str:
    """How the table's jobs are ordered, after "N jobs": ``ranked by val/acc (maximize)``."""
    return f"ranked by {metric} ({direction})" if direction else f"by {metric} (no direction: listed in job order)"


def markdown_of(table: dict) -> str:
    """summary.md: the title, the table, its notes, and the commands of the jobs that never started
    (as a list, each command as code). With ``--average-over``, the grouped table and its notes come
    first and the per-job table under a heading of its own."""
    parts = [table["title"] + format_markdown(table["rows"]), *table["notes"]]
    averaged = table["averaged"]
    if averaged:
        jobs_title = table["title"].replace("# Sweep", "## Each job of sweep", 1)
        parts = [f"# Sweep {table['sweep_dir'].name}: {groups_of_jobs(averaged)} "
                 f"{averaged['heading']}\n\n" + format_markdown(averaged["shown"]), *averaged["notes"],
                 jobs_title + format_markdown(table["rows"]), *table["notes"]]
    if table["unstarted"]:
        head, commands = table["unstarted"]  # no commands for the jobs a running sweep has still to start
        parts.append("\n\n".join([head, *(["\n".join(f"- {label}: `{command}`" for label, command in commands)]
                                            if commands else [])]))
    return "\n\n".join(parts)


def write_summary(table: dict, out_dir: Path | None = None) -> dict[str, Path]:
    """Writes the files of ``rank_sweep``'s table into ``out_dir`` (default: the sweep folder);
    returns them by kind. A folder that cannot take them (read-only, a name too long) is a
    LitlabError naming it and ``--out``, not a traceback."""
    import matplotlib.pyplot as plt

    sweep_dir = table["sweep_dir"]
    folder = Path(out_dir) if out_dir is not None else sweep_dir
    rows, figures, markdown = table["rows"], table["figures"], markdown_of(table)
    files = {"csv": folder / "summary.csv", "md": folder / "summary.md"}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if table["averaged"]:  # summary.csv holds the groups, summary_jobs.csv the jobs
            files["jobs_csv"] = folder / "summary_jobs.csv"
            write_csv(table["averaged"]["rows"], files["csv"])
            write_csv(rows, files["jobs_csv"])
        else:
            (folder / "summary_jobs.csv").unlink(missing_ok=True)  # an earlier averaged summary's, now stale
            write_csv(rows, files["csv"])
        files["md"].write_text(markdown + "\n")
        for name in FIGURES:  # a figure of an earlier summary that this one does not draw is stale
            (folder / f"{name}.png").unlink(missing_ok=True)
        for name, fig in figures.items():
            if fig is not None:
                files[name] = folder / f"{name}.png"
                fig.savefig(files[name], dpi=110)
        files["tensorboard"] = _to_tensorboard(folder / "tensorboard_summary", rows, table["params"],
                                               table["metric"], table["extra"], figures, markdown)
    except OSError as e:
        raise LitlabError(_unwritable(e, folder, sweep_dir, out_dir is not None)) from None
    finally:
        plt.close("all")
    return files


def _unwritable(e: OSError, folder: Path, sweep_dir: Path, out_given: bool) -> str:
    """The paragraph for a summary that ``folder`` cannot take: which file, why, and the ``--out``
    that writes it elsewhere (the sweep folder of a finished sweep is often read-only, e.g. shared)."""
    key = f"--out {folder}" if out_given else f"DIR: {sweep_dir}"
    failed = os.fsdecode(e.filename) if e.filename is not None else str(folder)
    why = "it is a file, not a folder" if os.path.isfile(folder) else f"{failed}: {os_reason(e)}"
    example = Path("summaries") / (sweep_dir.name[:60] or "sweep")
    return (f"{key}: the summary files cannot be written into {folder} ({why}). Write them to a folder "
            f"you can write with --out DIR, e.g. python -m litlab.summarize {shlex.quote(str(sweep_dir))} --out "
            f"{shlex.quote(str(example))}.")


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
            values = {f"summary/{k}": float(row[k]) for k in (metric, *extra)
                      if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)}
            writer.add_hparams(hparams, values or {f"summary/{metric}": float("nan")}, run_name=f"job_{row['job']}")
    plt.close("all")
    return log_dir


def _hparam(text: object) -> float | int | str:
    from litlab.sweeps.sweep_table import parse_value

    return parse_value(str(text)) if text is not None else ""


def main(argv: list[str] | None = None) -> None:
    """Command line: ``litlab-summarize DIR [--metric KEY] [--direction maximize|minimize] [--out DIR]
    [--average-over KEY[,KEY...]]``.

    The ranked table is printed before any file is written: a sweep folder that cannot take the
    files (read-only) still shows its ranking, then one paragraph naming ``--out``."""
    parser = argparse.ArgumentParser(prog="litlab-summarize", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a multirun folder, e.g. outputs/multiruns/<time>")
    parser.add_argument("--metric", help="metrics.json key to rank by (default: the jobs' optimized_metric)")
    parser.add_argument("--direction", choices=("maximize", "minimize"),
                        help="default: the Optuna sweeper's direction, else guessed from the metric's name; a "
                             "learning rate, and every figure of lr_find runs, has none: listed in job order")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for summary.csv/.md, the figures and tensorboard_summary/ (default: DIR itself)")
    parser.add_argument("--average-over", metavar="KEY[,KEY...]",
                        help="swept keys that only repeat a setting, e.g. seed or data.split_seed: the jobs that "
                             "differ only in them form one row with each metric's mean ± sample std (n), ranked by "
                             "the mean. summary.csv then holds these rows and summary_jobs.csv the per-job table; "
                             "the printout and summary.md show both, the per-job table below")
    args = parser.parse_args(argv)
    try:
        table = rank_sweep(args.dir, args.metric, args.direction, args.average_over)
        averaged = table["averaged"]
        if averaged:
            _show(f"{groups_of_jobs(averaged)} {averaged['heading']}:\n",
                  format_text(averaged["shown"]), "\n" + "\n".join(averaged["notes"]) + "\n")
        each = "Each job: " if averaged else ""
        after = [*table["notes"], *unstarted_lines(table["unstarted"], table["sweep_dir"])]
        _show(f"{each}{counted(len(table['rows']), 'job')} {ordering(table['metric'], table['direction'])}:\n",
              format_text(table["rows"]), "\n" + "\n".join(after) + "\n" if after else "")
        files = write_summary(table, args.out)
    except LitlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    _show(*(f"  {kind:<18} {path}" for kind, path in files.items()),
          f"  open in TensorBoard: tensorboard --logdir {shlex.quote(str(files['tensorboard']))}")


def _show(*lines: str) -> None:
    """Print ``lines``; a reader that stopped reading (``litlab-summarize DIR | head``) has what it
    wanted: the rest of the printout goes nowhere, and the files are still written."""
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

if __name__ == "__main__":
    main()
