"""Figures of a sweep: the metric against each swept value; accuracy against size and latency."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from litlab.sweeps.sweep_table import Job, parse_value  # noqa: E402


def metric_vs_params(jobs: list[Job], params: list[str], metric: str) -> Figure | None:
    """One panel per swept key: the metric of each completed job (numbers on a numeric axis). A job
    that did not complete is left out, even one that holds the metric (failed after training)."""
    done = [j for j in jobs if j.completed and j.value(metric) is not None]
    if not params or not done:
        return None
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.4), squeeze=False)
    for ax, param in zip(axes[0], params):
        xs = [parse_value(j.overrides.get(param, "")) for j in done]
        ys = [j.value(metric) for j in done]
        if all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs):
            ax.scatter(xs, ys)
            positive = [x for x in xs if x > 0]
            if len(positive) == len(xs) and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:
            names = sorted({str(x) for x in xs})
            ax.scatter([names.index(str(x)) for x in xs], ys)
            ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} by swept value ({len(done)} of {len(jobs)} jobs finished)")
    fig.tight_layout()
    return fig


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (accuracy, cost) points no other point beats: as accurate or more and as
    cheap or cheaper, strictly better in one of the two."""
    front = []
    for i, (acc, cost) in enumerate(points):
        beaten = any(a >= acc and c <= cost and (a > acc or c < cost) for j, (a, c) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return front


def accuracy_vs_cost(jobs: list[Job], acc_key: str, cost_key: str) -> tuple[Figure, list[str]] | None:
    """Scatter of accuracy against a cost (size, latency, FLOPs) of the completed jobs, the Pareto front
    drawn and labelled; a failed job's numbers may be there but are no result to choose."""
    pairs = [(j, j.value(acc_key), j.value(cost_key)) for j in jobs if j.completed]
    pairs = [(j, a, c) for j, a, c in pairs if a is not None and c is not None]
    if not pairs:
        return None
    front = pareto_front([(a, c) for _, a, c in pairs])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([c for _, _, c in pairs], [a for _, a, _ in pairs], color="tab:gray", label="job")
    best = sorted((pairs[i] for i in front), key=lambda p: p[2])
    ax.plot([c for _, _, c in best], [a for _, a, _ in best], "o-", color="tab:red", label="Pareto front")
    for job, a, c in pairs:
        ax.annotate(job.name, (c, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(cost_key)
    ax.set_ylabel(acc_key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig, [j.name for j, _, _ in best]
