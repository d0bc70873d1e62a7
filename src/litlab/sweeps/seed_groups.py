"""``litlab.summarize DIR --average-over seed``: the jobs of a sweep that differ only in the given
keys (a seed, a data split's seed) as one row, with the mean and sample standard deviation of each
metric over the jobs of the row that completed with it.

One seed's difference between two settings may be noise; the spread across seeds says how much.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from litlab.errors import LitlabError
from litlab.sweeps.sweep_table import TEST_SPLIT_LEGEND, Job, is_ranked, job_split, parse_value

# the line under a grouped table that says what its cells are
GROUP_LEGEND = ("mean ± std (n): over the n jobs of the row that completed with that metric; std is the sample "
                "standard deviation (n - 1 in the denominator), none for n = 1. n in its own column counts every "
                "job of the row.")


@dataclass
class Group:
    """Jobs whose swept values are the same but for the averaged keys."""

    values: dict[str, str]  # the swept keys not averaged over, with this group's values
    jobs: list[Job]


def average_keys(text: str) -> list[str]:
    """``"seed, data.split_seed"`` -> ``["seed", "data.split_seed"]``; ``+seed`` is ``seed``, as in the
    summary's columns."""
    keys = [k.strip().lstrip("+~") for k in text.split(",")]
    keys = list(dict.fromkeys(k for k in keys if k))
    if not keys:
        raise LitlabError(f"--average-over {text!r} names no key. Pass the swept keys that only repeat a setting, "
                          f"e.g. --average-over seed or --average-over seed,data.split_seed.")
    return keys


def check_keys(keys: list[str], jobs: list[Job], params: list[str], sweep_dir: object) -> list[str]:
    """The notes for keys that have one value in every job; a key no job sweeps is a LitlabError
    naming it and the keys that are swept."""
    notes = []
    for key in keys:
        values = {_parsed(j, key) for j in jobs}  # None: a job without the key
        if key in params and len(values) > 1:
            continue
        if len(values) == 1 and None not in values:
            notes.append(f"--average-over {key}: every job has {key}={next(iter(values))}, so it averages "
                         f"nothing; each row holds the jobs of one setting of the other swept keys.")
        else:
            swept = ", ".join(params) if params else "none (every job has the same overrides)"
            example = next((p for p in params if "seed" in p), params[0] if params else "seed")
            why = ("no job's .hydra/overrides.yaml sets it" if values == {None} else
                   "it says where files go or how the sweep runs, not what a job trains")
            raise LitlabError(f"--average-over {key}: {key} is not swept in {sweep_dir} ({why}), so there is "
                              f"nothing to average over. The keys swept there are: {swept}. Pass some "
                              f"of them, e.g. --average-over {example}, or leave --average-over out to rank each "
                              f"job on its own.")
    return notes


def group_jobs(jobs: list[Job], params: list[str], keys: list[str]) -> list[Group]:
    """The groups of jobs with the same values of the swept keys but ``keys``, in order of their first job.
    Values are compared as numbers where they are ones: ``lr=1e-3`` typed by hand (a resumed job's
    record) and Hydra's ``lr=0.001`` are one setting; the row shows its first job's text."""
    kept = [p for p in params if p not in keys]
    groups: dict[tuple, Group] = {}
    for job in jobs:
        values = {p: job.overrides.get(p, "") for p in kept}
        same = tuple(parse_value(v) for v in values.values())
        groups.setdefault(same, Group(values, [])).jobs.append(job)
    return list(groups.values())


def _parsed(job: Job, key: str) -> float | int | str | None:
    """The job's value of ``key`` as ``group_jobs`` compares it; None where the job does not set it."""
    text = job.overrides.get(key)
    return None if text is None else parse_value(text)


def is_test_figure(name: str) -> bool:
    """A figure of the test split: ``test/acc``, ``compress/after/test_acc``; an image folder without
    test/ scores the validation split under these names (``test_split: val``)."""
    return name.startswith("test/") or name.rsplit("/", 1)[-1].startswith("test_")


def group_split(group: Group) -> str:
    """The split of the test figures of a group's completed jobs: ``val``, ``test``, ``mixed`` where
    they differ (not averaged: ``group_rows``), empty where none has test figures."""
    splits = {job_split(j) for j in group.jobs if j.completed} - {""}
    return "mixed" if len(splits) > 1 else next(iter(splits), "")


def marks_split(groups: list[Group]) -> bool:
    """Whether some job's test figures are of the validation split: then each row says its split."""
    return any(j.metrics.get("test_split") == "val" for g in groups for j in g.jobs)


def mean_std(jobs: list[Job], metric: str) -> tuple[float | None, float | None, int]:
    """Mean, sample std and count of ``metric`` over the completed jobs that have it; std is None
    for fewer than two, both None for none."""
    values = [j.value(metric) for j in jobs if is_ranked(j, metric)]
    if not values:
        return None, None, 0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)


def group_rows(groups: list[Group], metric: str, direction: str | None, extra: list[str]) -> list[dict]:
    """One dict per group, best mean first (groups without an averaged job last, rank ``-``; in
    group order where ``direction`` is None): rank, the other swept values, its jobs, n, their
    statuses, ``test_split`` where some job's test figures are the validation split's (``group_split``;
    a ``mixed`` group's test figures are not averaged), and ``<metric> mean``/``std``/``n`` for the
    ranked metric and each extra one."""
    rows, marked = [], marks_split(groups)
    for group in groups:
        row = {"rank": "-", **group.values, "jobs": " ".join(j.name for j in group.jobs), "n": len(group.jobs),
               "status": ", ".join(f"{n} {s}" for s, n in Counter(j.status for j in group.jobs).items())}
        split = group_split(group) if marked else ""
        if marked:
            row["test_split"] = split
        for name in (metric, *extra):
            mixed = split == "mixed" and is_test_figure(name)  # val figures and test figures: no one mean
            row[f"{name} mean"], row[f"{name} std"], row[f"{name} n"] = (None, None, 0) if mixed else mean_std(
                group.jobs, name)
        rows.append(row)
    if direction is None:
        return rows
    scored = sorted((r for r in rows if r[f"{metric} n"]), key=lambda r: r[f"{metric} mean"],
                    reverse=direction == "maximize")
    for i, row in enumerate(scored, 1):
        row["rank"] = i
    return scored + [r for r in rows if not r[f"{metric} n"]]


def shown_rows(rows: list[dict], metric: str, extra: list[str]) -> list[dict]:
    """``group_rows`` for the printed table and summary.md: each metric's three columns as one,
    ``val/acc mean ± std (n)`` with cells such as ``0.9123 ± 0.0041 (2)``."""
    names = (metric, *extra)
    shown = []
    for row in rows:
        cells = {k: v for k, v in row.items() if not any(k in (f"{m} mean", f"{m} std", f"{m} n") for m in names)}
        for name in names:
            if any(r[f"{name} n"] for r in rows):  # a column no group has a value of is left out
                cells[f"{name} mean ± std (n)"] = _mean_cell(row[f"{name} mean"], row[f"{name} std"], row[f"{name} n"])
        shown.append(cells)
    return shown


def _mean_cell(mean: float | None, std: float | None, n: int) -> str:
    if not n:
        return ""
    spread = f" ± {std:.2g}" if std is not None else ""
    return f"{mean:.4g}{spread} ({n})"


def group_notes(groups: list[Group], keys: list[str], metric: str, extra: list[str] = ()) -> list[str]:
    """The lines under the grouped table: the legend (and the test_split one where rows say their
    split), the groups whose test figures were not averaged across splits, the jobs counted but not
    averaged, and a sweep where no two jobs differ only in ``keys`` (an Optuna search draws each
    trial's values afresh)."""
    notes = [GROUP_LEGEND]
    if marks_split(groups):
        notes.append(TEST_SPLIT_LEGEND)
    mixed = [g for g in groups if group_split(g) == "mixed"]
    figures = [n for n in (metric, *extra) if is_test_figure(n)]
    if mixed and figures:
        which = "; ".join(" ".join(j.name for j in g.jobs) for g in mixed)
        notes.append(f"test_split mixed: row(s) of jobs {which} hold jobs whose test figures are of the validation "
                     f"split beside jobs whose are of the test split, so {', '.join(figures)} "
                     f"{'is' if len(figures) == 1 else 'are'} not averaged there (left empty); the per-job table "
                     f"gives each job's figures and split.")
    left = [f"{j.name} ({j.status if not j.completed else f'completed without {metric}'})"
            for g in groups for j in g.jobs if not is_ranked(j, metric)]
    if left:
        notes.append(f"not averaged: job(s) {', '.join(left)} did not complete with {metric}; they are counted in n "
                     f"but not in the means.")
    if len(groups) > 1 and all(len(g.jobs) == 1 for g in groups):
        notes.append(f"every row holds one job: no two jobs differ only in {', '.join(keys)} (in an Optuna search the "
                     f"other values are drawn afresh for each trial), so nothing was averaged. Repeat each setting "
                     f"with a grid over {keys[0]} to average over it.")
    return notes
