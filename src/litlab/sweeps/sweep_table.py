"""A sweep's jobs as rows: swept values, status and metrics read from each job folder."""

from __future__ import annotations

import csv
import errno
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from litlab.errors import LitlabError
from litlab.metric_direction import lower_is_better
from litlab.run_lock import KILLED, KILLED_MEANS, is_running, recorded_status, running_elsewhere

log = logging.getLogger(__name__)

# bookkeeping overrides (where files go, how Hydra runs and searches, a resume's checkpoint): never a
# column, not even where they differ between jobs (each job's own folder, a sweeper's settings, the
# ckpt_path=last that resuming a job in its folder adds to that job's .hydra/overrides.yaml)
_NOT_PARAMS = ("hparams_search", "paths", "hydra", "ckpt_path")
# run setup (what is logged, which callbacks run): the same in most sweeps and then no column, not
# even in a one-job sweep; a column where jobs differ in it (early_stopping.patience=2,10, logger=csv,tensorboard)
_SETUP = ("logger", "callbacks")


def is_under(key: str, roots: tuple[str, ...]) -> bool:
    """``key`` is one of ``roots`` (a group choice) or a key inside one (``root.x``, ``root/x``)."""
    return any(key == r or key.startswith((f"{r}.", f"{r}/")) for r in roots)


def is_bookkeeping(key: str) -> bool:
    """``key`` says where files go or how the sweep runs (``_NOT_PARAMS``), not what a job trains."""
    return is_under(key, _NOT_PARAMS)


@dataclass
class Job:
    """One job folder of a multirun."""

    name: str
    overrides: dict[str, str]
    metrics: dict = field(default_factory=dict)
    # its .hydra/overrides.yaml as written (``+key=value`` kept): the job's command line
    lines: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.metrics.get("status", "missing")

    @property
    def completed(self) -> bool:
        """Only a completed job is ranked: a failed one may still hold the metric (it failed after
        training, e.g. on a misspelt ``optimized_metric``), an interrupted or running one a partial value."""
        return self.status == "completed"

    def value(self, metric: str) -> float | int | None:
        """The job's number under ``metric`` (a count such as size_bytes stays an int), None if absent."""
        v = self.metrics.get(metric)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return None
        return v if isinstance(v, int) else float(v)


def parse_value(text: str) -> float | int | str:
    """``0.001`` -> float, ``64`` -> int, anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder under ``sweep_dir`` (one with ``.hydra/overrides.yaml`` or ``metrics.json``).
    A job folder without ``metrics.json`` is ``killed`` where no command holds it
    (``status_without_record``)."""
    sweep_dir = Path(sweep_dir)
    jobs = []
    for folder in _job_folders(sweep_dir):
        over_file, metrics_file = folder / ".hydra" / "overrides.yaml", folder / "metrics.json"
        if not over_file.is_file() and not metrics_file.is_file():
            continue
        lines = yaml.safe_load(over_file.read_text()) if over_file.is_file() else []
        metrics = read_metrics(metrics_file) if metrics_file.is_file() else without_record(folder)
        jobs.append(Job(folder.name, override_values(lines or []), as_ended(folder, metrics), list(lines or [])))
    if not jobs and (sweep_dir / "metrics.json").is_file():
        raise LitlabError(f"DIR: {sweep_dir} is the folder of one run (it holds the run's metrics.json), not of a "
                          f"sweep. summarize ranks the jobs of a sweep's folder (outputs/multiruns/<time>) or the runs "
                          f"of a folder of runs (outputs/runs, or the folder this run is in: "
                          f"{sweep_dir.resolve().parent}): pass one of those.")
    if not jobs:
        raise LitlabError(f"DIR: {sweep_dir} holds no job folders (none has metrics.json or .hydra/overrides.yaml). "
                          f"Pass the folder of a multirun, e.g. outputs/multiruns/<time>.")
    jobs.sort(key=lambda j: (len(j.name), j.name))
    return jobs


# the error of a job killed before it wrote its metrics.json (``without_record``)
KILLED_BEFORE_RECORD = "killed before it wrote metrics.json (no command runs in its folder): rerun it"


def status_without_record(folder: Path) -> str:
    """The status of a job folder that has no ``metrics.json`` (only Hydra's ``.hydra/``): ``killed``
    where no command holds the folder (``run_lock.is_running``: SIGKILL, the out-of-memory killer
    before the job wrote its record), ``running`` where one does (a job starting), ``missing``
    where that cannot be told."""
    running = is_running(folder)
    return "missing" if running is None else "running" if running else KILLED


def without_record(folder: Path) -> dict:
    """The metrics of a job folder without ``metrics.json``: its status (``status_without_record``)
    and, where it was killed, why (``KILLED_BEFORE_RECORD``)."""
    status = status_without_record(folder)
    return {"status": status, "error": KILLED_BEFORE_RECORD} if status == KILLED else {"status": status}


def override_values(lines: list[str]) -> dict[str, str]:
    """``{key: value}`` of override lines (``+key=value`` as ``key``); a deletion (``~key``) sets nothing."""
    return dict(str(line).lstrip("+~").split("=", 1) for line in lines if "=" in str(line))


def training_jobs(jobs: list[Job], sweep_dir: Path) -> tuple[list[Job], str | None]:
    """The jobs that trained, and the line that says which folders were left out: an eval or
    predict run (``metrics.json`` ``task``) in a folder of runs scored no training, and ranked
    among trained jobs its figures would be read as one's. A record without ``task`` (older, or
    unreadable) stays in. None of them trained: all of one task (an eval sweep) are ranked as they
    are, a mix is a LitlabError."""
    left = {}
    for job in jobs:
        task = job.metrics.get("task", "train")
        if task != "train":
            left.setdefault(str(task), []).append(job.name)
    if not left:
        return jobs, None
    kept = [j for j in jobs if j.metrics.get("task", "train") == "train"]
    which = "; ".join(f"task {task}: {', '.join(names)}" for task, names in left.items())
    if not kept and len(left) == 1:  # every job ran one other entrypoint (a litlab.eval -m sweep): rank those
        return jobs, None
    if not kept:
        raise LitlabError(f"DIR: {sweep_dir} holds no training jobs: its {len(jobs)} run folder(s) are not training "
                          f"runs (metrics.json {which}), and summarize ranks trained jobs. Pass a sweep folder or a "
                          f"folder of training runs, e.g. outputs/multiruns/<time> or outputs/runs.")
    n = sum(len(names) for names in left.values())
    return kept, f"left out {n} folder(s) that are not training runs (metrics.json {which}): they scored no training."


def _job_folders(sweep_dir: Path) -> list[Path]:
    """The visible subfolders of ``sweep_dir``, sorted. A folder that cannot be listed (a name in
    its path too long, no permission) is a LitlabError naming it, not an OSError traceback."""
    try:
        if not sweep_dir.is_dir():
            raise LitlabError(f"DIR: {sweep_dir} is not a folder. Pass a multirun folder, e.g. "
                              f"outputs/multiruns/<time>.")
        return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise LitlabError(f"DIR: {sweep_dir} cannot be read ({os_reason(e)}). Pass the path of a multirun folder "
                          f"you can read, e.g. outputs/multiruns/<time>.") from None


def os_reason(e: OSError) -> str:
    """Why the OS refused a path, in words; a name too long says what the limit usually is, as
    "File name too long" alone does not say which name or how long it may be."""
    if e.errno == errno.ENAMETOOLONG:
        return "a name in this path is too long; the limit per file or folder name is usually 255 bytes"
    return e.strerror or str(e)


def read_metrics(path: Path) -> dict:
    """A job's metrics.json; one that is not a JSON object (cut short by a killed job, or edited)
    gives the job the status ``unreadable`` and a warning naming the file, not a traceback."""
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = f"not valid JSON ({e})"
    else:
        if isinstance(metrics, dict):
            return metrics
        why = f"a JSON {type(metrics).__name__}, not an object"
    log.warning("%s is %s; the job is listed as unreadable.", path, why)
    return {"status": "unreadable", "error": f"metrics.json is {why}"}


def as_ended(folder: Path, metrics: dict) -> dict:
    """A job's ``metrics`` with the status ``killed`` (and why, as its error) where they say
    ``running`` and no command runs in its folder (``run_lock.recorded_status``): a killed job
    was listed as running forever. One running on another machine says which (``running (on
    HOST)``): only there can it be told from a killed one."""
    status = recorded_status(folder, metrics)
    host = running_elsewhere(metrics) if status == "running" else None
    if host:
        return {**metrics, "status": f"running (on {host})"}
    if status == metrics.get("status"):
        return metrics
    return {**metrics, "status": status, "error": metrics.get("error") or KILLED_MEANS}


# the rates an lr_find run records in its metrics.json, which summarize can list its runs by
LR_FIND_FIGURES = ("suggested_lr", "min_loss_lr", "min_loss_lr_div10")


def check_metric_present(jobs: list[Job], metric: str) -> None:
    """A metric no job has would rank nothing: an error naming the keys the jobs have."""
    if any(j.value(metric) is not None for j in jobs):
        return
    have = sorted({k for j in jobs for k, v in j.metrics.items()
                   if ("/" in k or k in LR_FIND_FIGURES) and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if have:  # jobs with figures, none of them this one: a misspelt name
        raise LitlabError(f"no job of the sweep has the metric {metric}; they have {', '.join(have)}. Pass one of "
                          f"them with --metric KEY.")


def swept_params(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs, ``logger``/``callbacks`` ones included (a job
    without the key differs from one with it); when there is one job, its override keys but the
    run setup. Bookkeeping keys (``paths``, ``hydra``, ``hparams_search``, ``ckpt_path``) are never columns."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides if not is_bookkeeping(k)))
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return varying or ([k for k in keys if not is_under(k, _SETUP)] if len(jobs) == 1 else [])


def optimized_metrics(jobs: list[Job], sweep_dir: Path) -> list[str]:
    """The metrics the jobs optimized, first seen first: each job's ``metrics.json`` names it, else
    its ``.hydra/config.yaml`` (a job that failed before the end records none, or null); where no
    job says, the sweep's ``multirun.yaml``. Empty when nothing names one."""
    sweep_dir = Path(sweep_dir)
    names = [j.metrics.get("optimized_metric") or configured_metric(sweep_dir / j.name / ".hydra" / "config.yaml")
             for j in jobs]
    # multirun.yaml comes last: where optimized_metric was swept it holds the config's default, not a job's
    names = [n for n in names if n] or [configured_metric(sweep_dir / "multirun.yaml")]
    return list(dict.fromkeys(n for n in names if n))


def configured_metric(config_file: Path) -> str | None:
    """``optimized_metric`` of a Hydra config file; None where the file is missing or unreadable."""
    if not config_file.is_file():
        return None
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = config.get("optimized_metric") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None


def direction_of(metric: str, sweep_dir: Path) -> str:
    """``maximize`` or ``minimize``: the Optuna sweeper's own when ``metric`` is the one it optimized
    (from the sweep's ``multirun.yaml``, or a job's ``.hydra/`` record where Optuna wrote none),
    else guessed from the metric's name."""
    sweep_dir = Path(sweep_dir)
    records = [(sweep_dir / "multirun.yaml", sweep_dir / "multirun.yaml")]
    records += [(j / "config.yaml", j / "hydra.yaml") for j in sorted(sweep_dir.glob("*/.hydra"))[:1]]
    for config_file, hydra_file in records:
        if not hydra_file.is_file():
            continue
        try:
            hydra = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}) or {}
            config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
        except (OSError, yaml.YAMLError):
            continue
        direction = (hydra.get("sweeper", {}) or {}).get("direction")
        optimized = config.get("optimized_metric")
        if isinstance(direction, str) and optimized in (None, metric):
            return "maximize" if direction.lower().endswith("maximize") else "minimize"
    return "minimize" if lower_is_better(metric) else "maximize"


def is_ranked(job: Job, metric: str) -> bool:
    """A completed job with a value of ``metric``; every other job is listed after them, unranked."""
    return job.completed and job.value(metric) is not None


def rank(jobs: list[Job], metric: str, direction: str) -> list[Job]:
    """Completed jobs best first, then the others (failed, interrupted, killed, running, missing, or
    completed without the metric) in job order."""
    scored = [j for j in jobs if is_ranked(j, metric)]
    scored.sort(key=lambda j: j.value(metric), reverse=direction == "maximize")
    return scored + [j for j in jobs if not is_ranked(j, metric)]


def table_rows(ranked: list[Job], params: list[str], metric: str, extra: list[str]) -> list[dict]:
    """One dict per job: rank, job, swept values, status, the metric and extra metrics, and why a
    job that did not complete ended (its recorded error). Where some job's test figures are of the
    validation split (an image folder without test/: ``test_split: val``), a ``test_split`` column
    says for each job which split its test/* figures are of (see ``TEST_SPLIT_LEGEND``)."""
    marks_split = any(j.metrics.get("test_split") == "val" for j in ranked)
    rows = []
    for i, job in enumerate(ranked, 1):
        row = {"rank": i if is_ranked(job, metric) else "-", "job": job.name}
        row.update({p: job.overrides.get(p, "") for p in params})
        row["status"] = job.status
        row[metric] = job.value(metric)
        row.update({k: job.value(k) for k in extra})
        if marks_split:
            row["test_split"] = job_split(job)
        if job.status == "failed" or (not job.completed and job.metrics.get("error")):
            row["error"] = str(job.metrics.get("error", ""))[:70]
        rows.append(row)
    return rows


def job_split(job: Job) -> str:
    """The split a job's test figures are of (the ``test_split`` column): its metrics.json's, else
    ``test`` where it has test/acc, else empty (no test figures)."""
    return str(job.metrics.get("test_split", "test" if job.value("test/acc") is not None else ""))


# the line under a table with a test_split column
TEST_SPLIT_LEGEND = ("test_split val: the job's data had no test/ folder, so its test/* figures are of the validation "
                     "split, which also picked best.ckpt; they are not comparable with test figures.")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def columns_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def format_text(rows: list[dict]) -> str:
    """An aligned plain-text table for the terminal."""
    cols = columns_of(rows)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def format_markdown(rows: list[dict]) -> str:
    cols = columns_of(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    cols = columns_of(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows({c: ("" if r.get(c) is None else r.get(c)) for c in cols} for r in rows)
