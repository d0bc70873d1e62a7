"""What a range test leaves in its run folder: ``lr_find.csv`` (each step's rate, loss and
smoothed loss), ``lr_find.png`` (the curve on a log axis, the suggestion marked), the record in
``metrics.json`` (``task: lr_find``, which ``litlab.summarize`` leaves out of a ranking of trained
runs), the curve in the config's loggers (TensorBoard: ``lr_find/*`` by step), and the console
lines that end with the training command to run."""

from __future__ import annotations

import csv
import logging
import math
import shlex
from pathlib import Path

from omegaconf import DictConfig

from litlab.atomic_files import atomic_write
from litlab.file_only_logs import FILE_ONLY
from litlab.reporting.run_files import update_metrics

log = logging.getLogger(__name__)

CSV_COLUMNS = ("step", "lr", "loss", "smoothed_loss")
# the config keys of the range test itself, left out of the training command it suggests
_OWN_KEYS = ("lr_find", "model.optimizer.lr")


def write_csv(path: Path, result) -> None:
    """One row per optimizer step; a loss that is not a number is written as ``nan``."""
    def rows(f):
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for k, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            writer.writerow([k, f"{lr:.6e}", f"{loss:.6g}", f"{smoothed:.6g}"])

    atomic_write(path, rows, mode="w")


def draw_curve(path: Path, result, suggestion) -> None:
    """The loss (faint) and smoothed loss against the rate on a log axis, the suggested rate and
    the lowest smoothed loss marked. matplotlib's Figure alone, no pyplot: no global backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    if suggestion.lr is not None:
        ax.axvline(suggestion.lr, color="tab:red", linestyle="--", linewidth=1)
        ax.plot([suggestion.lr], [result.smoothed[suggestion.step]], "o", color="tab:red",
                label=f"suggested {suggestion.lr:.1e} (steepest descent)")
    if suggestion.min_loss_lr is not None:
        ax.plot([suggestion.min_loss_lr], [result.smoothed[suggestion.min_loss_step]], "s", color="tab:green",
                label=f"lowest smoothed loss at {suggestion.min_loss_lr:.1e}")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:  # the diverged tail would squash the curve: the top is 1.5x the first smoothed loss
        low = min(v for v in [*finite, *result.losses] if math.isfinite(v))
        top = max(finite[0] * 1.5, min(finite) * 1.1)
        ax.set_ylim(low - 0.05 * abs(top - low), top)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def log_curve(cfg: DictConfig, result) -> None:
    """Each step's ``lr_find/loss``, ``lr_find/smoothed_loss`` and ``lr_find/lr`` in the config's
    loggers (``logger=tensorboard`` by default; ``logger=none`` writes nothing)."""
    from litlab.build import build_loggers

    for logger in build_loggers(cfg):
        for k, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            logger.log_metrics({"lr_find/loss": loss, "lr_find/smoothed_loss": smoothed, "lr_find/lr": lr}, step=k)
        logger.finalize("success")


def hydra_node(cfg: DictConfig):
    """The run's ``hydra`` node: the config's own where it was composed with it (in-process,
    ``compose(..., return_hydra_config=True)``), else the live ``HydraConfig`` of a Hydra run
    (which takes it out of the config); None outside both."""
    node = cfg.get("hydra")
    if node is not None:
        return node
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def training_command(lr: float | None, hydra_cfg=None) -> str:
    """``python -m litlab.train model.optimizer.lr=<lr>`` with the config flags and
    ``hydra.searchpath`` (``config_flags.config_words``, as a resume command's) and overrides of
    the run of ``hydra_cfg`` (``hydra_node``), those of the range test itself left out. Without
    the search path it composed litlab's own config folders, which lack the user's files
    (``model=mymlp is not a choice``)."""
    from litlab.config_flags import config_words
    from litlab.run_commands import sets_key

    words, overrides = [], []
    if hydra_cfg is not None:
        # --config-name names this command's own config (an lr_find one, with its lr_find node): train
        # composes its own from the same folders
        words = [w for w in config_words(hydra_cfg, "lr_find") if not w.startswith("--config-name=")]
        overrides = [str(o) for o in hydra_cfg.overrides.task or [] if not sets_key(str(o), *_OWN_KEYS)]
    if lr is not None:
        words.append(f"model.optimizer.lr={lr:.1e}")
    return " ".join(["python -m litlab.train", *map(shlex.quote, [*words, *overrides])])


def summary_lines(run_dir: Path, facts: dict, suggestion, has_tensorboard: bool, hydra_cfg=None) -> list[str]:
    """The lines printed at the end: the outcome, the figures, the files, what of the config the
    test left out and how it ran a multi-process trainer, and the suggestion with the command that
    trains with it (or why there is none). ``hydra_cfg``: the run's (``training_command``)."""
    stop, stopped = facts.get("stop_reason"), ""
    if stop:  # a divergence at the last step stopped nothing: every step ran
        stopped = f" (stopped: {stop})" if facts.get("stopped_early") else f" (the last one diverged: {stop})"
    lines = [f"litlab lr_find completed: {run_dir}",
             f"  steps                  {facts['steps_run']} of {facts['settings']['num_steps']}{stopped}",
             f"  wall_time_s            {facts['wall_time_s']:.1f}"]
    if suggestion.min_loss_lr_div10 is not None:
        lines.append(f"  lowest smoothed loss   at lr {suggestion.min_loss_lr:.1e} (fastai's rule: a tenth of it, "
                     f"{suggestion.min_loss_lr_div10:.1e})")
    lines += [f"  curve                  {run_dir / 'lr_find.csv'}, {run_dir / 'lr_find.png'}",
              f"  metrics                {run_dir / 'metrics.json'}"]
    if has_tensorboard:
        lines.append(f"  open in TensorBoard:   tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}")
    if facts.get("not_used"):
        lines.append(f"  not used               {', '.join(facts['not_used'])} (the range test only trains, at "
                     f"rates of its own)")
    if facts.get("one_process"):
        lines.append(f"  one process            {facts['one_process']}")
    if suggestion.lr is None:
        lines.append(f"no learning rate suggested: {suggestion.reason}. Look at {run_dir / 'lr_find.png'}.")
    else:
        lines.append(f"suggested learning rate: {suggestion.lr:.1e} (steepest descent); train with: "
                     f"{training_command(suggestion.lr, hydra_cfg)}")
    return lines


def write_results(cfg: DictConfig, run_dir: Path, result, suggestion, facts: dict) -> dict:
    """Writes every file of the range test and prints its summary; returns the record."""
    write_csv(run_dir / "lr_find.csv", result)
    draw_curve(run_dir / "lr_find.png", result, suggestion)
    log_curve(cfg, result)
    record = update_metrics(run_dir, **facts)
    text = "\n".join(summary_lines(run_dir, facts, suggestion, (run_dir / "tensorboard").is_dir(), hydra_node(cfg)))
    if suggestion.lr is None:
        log.warning("lr_find: no learning rate suggested: %s", suggestion.reason)
    print("\n" + text, flush=True)
    log.info("%s", text, extra=FILE_ONLY)
    return record
