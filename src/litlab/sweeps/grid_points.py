"""The jobs of a grid sweep that never started, and the commands that run them.

A grid sweep (Hydra's basic sweeper) stopped by Ctrl-C or SIGTERM leaves no folder for the jobs
after the one it stopped in, so nothing listed them: the summary ranked the jobs that ran as if
they were the whole sweep, and the sweep folder cannot take the sweep again
(``run_folders.check_new_sweep_dir``). The grid is expanded again from what the sweep wrote into
its ``multirun.yaml`` before its first job (the command's overrides, ``hydra.overrides.task``, and
the sweeper's ``params``) by the basic sweeper's own expansion, so the jobs are numbered as the
sweep numbered them (``hydra.job.num``, the job folder's name). An Optuna search has no fixed
grid (and writes no ``multirun.yaml``): nothing is said there.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from litlab.sweeps.running_sweep import job_elsewhere, wait_for_a_job
from litlab.sweeps.sweep_table import Job, is_bookkeeping, override_values

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# the entrypoints a sweep may run (multirun.yaml's hydra.job.name)
ENTRYPOINTS = ("train", "eval", "predict")


def grid_points(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of each job of the grid sweep in ``sweep_dir``, in job order; None for a
    folder without a basic sweeper's ``multirun.yaml`` (an Optuna search, a folder of runs) or a
    grid that cannot be expanded again as it was: ``glob()`` lists a group's files, which may have
    changed since, and ``shuffle()`` drew an order that was not recorded."""
    return _points(_hydra_record(Path(sweep_dir)))


def _points(hydra: dict) -> list[list[str]] | None:
    """``grid_points`` of a sweep's ``hydra`` record (``_hydra_record``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    sweeper = hydra.get("sweeper") or {}
    if not isinstance(sweeper, dict) or sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    # the order of BasicSweeper.sweep: its params first, then the command's overrides
    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += [str(o) for o in (hydra.get("overrides") or {}).get("task") or []]
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        if any(getattr(o.value(), "shuffle", False) for o in overrides):  # shuffle(): an order not recorded
            return None
        return BasicSweeper.split_arguments(overrides, None)[0]
    except HydraException:  # glob() (no config loader here), or an override Hydra no longer reads
        return None


def _hydra_record(sweep_dir: Path) -> dict:
    """The ``hydra`` section of ``sweep_dir/multirun.yaml``; empty where there is none to read."""
    try:
        record = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    hydra = record.get("hydra") if isinstance(record, dict) else None
    return hydra if isinstance(hydra, dict) else {}


def unstarted_jobs(sweep_dir: Path, jobs: list[Job], points: list[list[str]] | None
                   ) -> tuple[list[list[str]], list[int]] | None:
    """``(the grid's jobs' overrides, the numbers of those without a folder among jobs)`` of the
    grid ``points`` (``grid_points``); None where ``sweep_dir`` holds no grid sweep or cannot be
    listed. A job started if its folder (its number) is there, or a job holds its values (a
    ``hydra.sweep.subdir`` that names folders otherwise); a resumed job still does (``ckpt_path``,
    ``paths``, ``hydra`` are bookkeeping, not values)."""
    if points is None:
        return None
    try:  # a job folder without its records yet (a submitit job starting) started too
        folders = {j.name for j in jobs} | {p.name for p in Path(sweep_dir).iterdir() if p.is_dir()}
    except OSError:  # a folder that cannot be listed: nothing can be said of its jobs
        return None
    missing = []
    for number, point in enumerate(points):
        values = {k: v for k, v in override_values(point).items() if not is_bookkeeping(k)}
        if str(number) not in folders and not any(all(j.overrides.get(k) == v for k, v in values.items())
                                                  for j in jobs):
            missing.append(number)
    return points, missing


def unstarted_commands(sweep_dir: Path, jobs: list[Job], running: str | None = None, note: str | None = None
                       ) -> tuple[str, list[tuple[str, str]]] | None:
    """A line saying how many of the grid's jobs never started, and for each a label (its number
    and swept values) and the command that runs it in its own folder of the sweep, where summarize
    finds it (the sweep itself cannot start again there); None where all started or ``sweep_dir``
    holds no grid sweep. ``running``: words for a sweep still running (``running_sweep``), whose
    jobs without a folder are waiting for their turn: the line says so, and no command is given
    (the sweep would start the job a second time into the folder the command took). ``note``:
    words for a sweep that may seem to run (``sweep_note``), said in the line; the commands are given,
    for once the sweep has ended where a job runs on another machine (``job_elsewhere``)."""
    hydra = _hydra_record(Path(sweep_dir))
    found = unstarted_jobs(sweep_dir, jobs, _points(hydra))
    if not found or not found[1]:
        return None
    points, missing = found
    if running:
        return f"{len(missing)} of the grid's {len(points)} jobs not started yet ({running})", []
    swept, entry = _swept_keys(points), _entrypoint(hydra)
    words = _config_words(hydra, entry)
    why = f"no job folder; {note}" if note else "no job folder"
    elsewhere = job_elsewhere(jobs) if note else None  # a sweep there may start them itself: a job run twice
    run = f"if the sweep on {elsewhere[1]} has ended, run each" if elsewhere else "run each"
    started = f"{'has' if len(missing) == 1 else 'have'} not started" if elsewhere else "never started"
    head = (f"{len(missing)} of the sweep's {len(points)} grid jobs {started} ({why}); {run} in its "
            f"own folder of the sweep with:")
    commands = []
    for number in missing:
        values = " ".join(o for o in points[number] if o.lstrip("+~").split("=", 1)[0] in swept)
        command = job_command(entry, sweep_dir, number, [*words, *points[number]])
        commands.append((f"job {number} ({values or 'no swept value'})", command))
    return head, commands


def killed_lines(sweep_dir: Path, jobs: list[Job]) -> list[str]:
    """The lines under the table for the jobs killed before they wrote their ``metrics.json``
    (``sweep_table.KILLED_BEFORE_RECORD``): nothing of theirs is kept, so each is rerun as one run
    in its own folder of the sweep (``job_command``: the sweep's config flags, then the job's
    ``.hydra/overrides.yaml``), where summarize finds it; a search's trial (``searched_trial_lines``)
    gets no command. Empty where there is none."""
    from litlab.sweeps.running_sweep import MAYBE_STARTING
    from litlab.sweeps.sweep_table import KILLED_BEFORE_RECORD

    starting = [j.name for j in jobs if j.status == MAYBE_STARTING]
    waiting = [f"{len(starting)} job folder(s) without metrics.json ({', '.join(starting)}): killed, or starting on "
               f"another machine (a job writes its record only after preparing its data), as the sweep may still "
               f"run; no rerun command while it may start them itself. Run summarize again once it has ended."
               ] if starting else []
    killed = [j for j in jobs if j.metrics.get("error") == KILLED_BEFORE_RECORD]
    if not killed:
        return waiting
    sweep = _hydra_record(Path(sweep_dir))
    # an Optuna search writes no multirun.yaml; a search file's settings are in no job's command
    searched = [j for j in killed if not sweep or any(
        o.lstrip("+~").split("=", 1)[0] == "hparams_search" for o in j.lines)]
    trials = searched_trial_lines(Path(sweep_dir), searched) if searched else []
    killed = [j for j in killed if j not in searched]
    if not killed:
        return waiting + trials
    lines = [f"{len(killed)} job(s) killed before they wrote metrics.json (no command runs in their folders); rerun "
             f"each in its own folder of the sweep with:"]
    entry = _entrypoint(sweep)
    config_words = _config_words(sweep, entry)
    for job in killed:
        words = [*config_words, *rerun_overrides(job.lines)]
        lines.append(f"  job {job.name}: {job_command(entry, sweep_dir, job.name, words)}")
    return waiting + trials + lines


def searched_trial_lines(sweep_dir: Path, killed: list[Job]) -> list[str]:
    """The lines for trials of a search (no ``multirun.yaml``: Optuna's) killed before their record:
    no command. A trial's settings came from the search file too (its sweeper's, its defaults'
    overrides, the keys it sets), and a single run without that file, or with it and so a new
    search, would run another job in the trial's folder."""
    lines = [f"{len(killed)} trial(s) of the search killed before they wrote metrics.json (no command runs in their "
             f"folders); no command reruns one as it ran: its settings came from the search file. Rerun the search, or "
             f"a trial's overrides from its .hydra/overrides.yaml with the search's own settings:"]
    for job in killed:
        search = next((o.split("=", 1)[1] for o in job.lines if o.lstrip("+~").split("=", 1)[0] == "hparams_search"),
                      None)
        named = f" (search file hparams_search={search})" if search else ""
        lines.append(f"  job {job.name}: {shlex.quote(str(sweep_dir / job.name / '.hydra' / 'overrides.yaml'))}{named}")
    return lines


def rerun_overrides(lines: list[str]) -> list[str]:
    """A grid job's overrides (``lines``, its ``.hydra/overrides.yaml``) as one run in its folder: its
    own ``hydra.run.dir`` (a resume's) gives way to the folder."""
    return [o for o in lines if o.lstrip("+~").split("=", 1)[0] != "hydra.run.dir"]


def unstarted_lines(found: tuple[str, list[tuple[str, str]]] | None, sweep_dir: Path,
                    limit: int | None = None) -> list[str]:
    """``unstarted_commands``' answer as text lines, at most ``limit`` commands (then where the
    others are listed); empty for None."""
    if found is None:
        return []
    head, commands = found
    lines = [head, *(f"  {label}: {command}" for label, command in commands[:limit])]
    if limit is not None and len(commands) > limit:
        lines.append(f"  and {len(commands) - limit} more: python -m litlab.summarize "
                     f"{shlex.quote(str(sweep_dir))} lists them all")
    return lines


def none_started(sweep_dir: Path, running: str | None = None, note: str | None = None) -> str | None:
    """What to say of a grid sweep in ``sweep_dir`` stopped before its first job made its folder
    (no job has results; its folder cannot take the sweep again): how many jobs it had and the
    sweep's command, which runs them all in a new folder. None where ``sweep_dir`` holds no grid.
    ``running``: words for a sweep still running (``running_sweep``), whose first job is starting:
    to wait, not to run it again. ``note``: words for a sweep whose process cannot be told to
    have ended (``sweep_note``): the command, for once it has."""
    hydra = _hydra_record(Path(sweep_dir))
    points = _points(hydra)
    if not points:
        return None
    if running:
        return wait_for_a_job(sweep_dir, f"is a grid sweep of {len(points)} jobs that has not started its first job "
                                         f"yet", running)
    entry, task = _entrypoint(hydra), (hydra.get("overrides") or {}).get("task") or []
    words = [*_config_words(hydra, entry), *map(str, task)]
    command = " ".join([f"python -m litlab.{entry} -m", *map(shlex.quote, words)])
    if note:
        return (f"DIR: {sweep_dir} is a grid sweep of {len(points)} jobs with no job folder yet: no job has results "
                f"to rank ({note}). Once its process has ended, run the sweep again, into a new folder, with: "
                f"{command}")
    return (f"DIR: {sweep_dir} is a grid sweep of {len(points)} jobs that stopped before its first job started: no "
            f"job has results to rank. Run the sweep again, into a new folder, with: {command}")


def job_command(entry: str, sweep_dir: Path, number: int | str, words: list[str]) -> str:
    """``python -m litlab.<entry> <words> hydra.run.dir=<sweep_dir>/<number>``, shell-quoted: the
    job as one run (``words``: the sweep's config flags, then the job's overrides), in the folder
    the sweep would have given it."""
    from litlab.run_commands import run_dir_override

    return " ".join([f"python -m litlab.{entry}", *map(shlex.quote, words),
                     run_dir_override(Path(sweep_dir) / str(number))])


def _config_words(hydra: dict, entry: str) -> list[str]:
    """The sweep's config flags (``--config-dir``, ``--config-name``) and ``hydra.searchpath``,
    without which a command of its jobs composed litlab's own ``train`` config instead."""
    from omegaconf import OmegaConf

    from litlab.config_flags import config_words

    return config_words(OmegaConf.create(hydra), entry) if hydra else []


def _entrypoint(hydra: dict) -> str:
    """The entrypoint a sweep ran (its record's ``hydra.job.name``): ``train`` unless it says another."""
    job = hydra.get("job")
    name = job.get("name") if isinstance(job, dict) else None
    return name if name in ENTRYPOINTS else "train"


def _swept_keys(points: list[list[str]]) -> set[str]:
    """The keys whose value differs between the grid's jobs."""
    values = [override_values(p) for p in points]
    keys = {k for v in values for k in v}
    return {k for k in keys if len({v.get(k) for v in values}) > 1}
