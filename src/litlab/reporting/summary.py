"""The short summary every run prints at its end."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from litlab.file_only_logs import FILE_ONLY

log = logging.getLogger(__name__)

SHOWN = ("val/acc", "test/acc", "test/loss", "test/ece", "train_samples_per_s", "flops_per_sample", "wall_time_s")


def format_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> str:
    """The summary's lines; the TensorBoard command is quoted for the shell, so that it runs as pasted
    for a folder with spaces, commas or quotes in its name (a plain path stays as it is)."""
    lines = [f"litlab run {metrics.get('status', 'completed')}: {run_dir}"]
    for key in SHOWN:
        value = metrics.get(key)
        if value is not None:
            lines.append(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    if metrics.get("partial_data"):  # debug=fdr/limit/overfit, trainer.limit_*: not the whole splits
        settings = " ".join(f"trainer.{k}={v}" for k, v in metrics["partial_data"].items())
        lines.append(f"  on part of the data:   {settings} (the figures cover those batches only)")
    if metrics.get("test_split") == "val":  # an image folder without test/
        lines.append("  test split:            the validation split (no test/ folder), which also picked best.ckpt")
    if metrics.get("best_ckpt"):
        lines.append(f"  best checkpoint        {metrics['best_ckpt']}")
    lines.append(f"  metrics                {run_dir / 'metrics.json'}")
    if has_tensorboard:
        lines.append(f"  open in TensorBoard:   tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}")
    return "\n".join(lines)


def print_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> None:
    """Prints the summary, and writes it to the run's log file too (which then tells the whole run)."""
    text = format_summary(run_dir, metrics, has_tensorboard)
    print("\n" + text, flush=True)
    log.info("%s", text, extra=FILE_ONLY)
