"""The short summary every run prints at its end."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from omegaconf import OmegaConf

from litlab.file_only_logs import FILE_ONLY

log = logging.getLogger(__name__)

SHOWN = ("val/acc", "test/acc", "test/loss", "test/ece", "train_samples_per_s", "flops_per_sample", "wall_time_s")


def format_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> str:
    """The summary's lines; the TensorBoard command is quoted for the shell, so that it runs as pasted
    for a folder with spaces, commas or quotes in its name (a plain path stays as it is)."""
    lines = [f"litlab run {metrics.get('status', 'completed')}: {run_dir}"]
    tested = any(str(k).startswith("test/") for k in metrics)
    for key in SHOWN:
        value = metrics.get(key)
        if value is not None:
            lines.append(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    if metrics.get("partial_data"):  # debug=fdr/limit/overfit, trainer.limit_*: not the whole splits
        settings = " ".join(f"trainer.{k}={v}" for k, v in metrics["partial_data"].items())
        lines.append(f"  on part of the data:   {settings} ({partial_figures(metrics['partial_data'], tested)})")
    if metrics.get("test_split") == "val":  # an image folder without test/
        lines.append("  test split:            the validation split (no test/ folder), which also picked best.ckpt")
    lines += after_training_lines(metrics)
    if metrics.get("best_ckpt"):
        lines.append(f"  best checkpoint        {metrics['best_ckpt']}")
    scored = metrics.get("compress/before/test_acc")
    if test_skipped(run_dir, metrics, tested) and isinstance(scored, (int, float)):
        # compression scored best.ckpt's weights on the test split: not "skipped", and no command needed
        lines.append(f"  test=false: the test split was scored by compression only (best.ckpt's test/acc {scored:.4f}, "
                     f"compress/before/test_acc)")
    elif test_skipped(run_dir, metrics, tested):
        lines.append(f"  test skipped (test=false): python -m litlab.eval "
                     f"ckpt_path={shlex.quote(str(metrics['best_ckpt']))}")
    lines.append(f"  metrics                {run_dir / 'metrics.json'}")
    if has_tensorboard:
        lines.append(f"  open in TensorBoard:   tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}")
    return "\n".join(lines)


def partial_figures(partial: dict, tested: bool = True) -> str:
    """Which figures a run on part of the data (``partial_data``) covers only part of: with the
    training batches alone limited, val/* and test/* (where the run tested) still cover their whole splits."""
    if any(k in partial for k in ("fast_dev_run", "overfit_batches")):
        return "the figures cover those batches only"
    limited = [split for split in ("train", "val", "test") if f"limit_{split}_batches" in partial]
    parts = ["training used those batches only"] if "train" in limited else []
    shown = ("val", "test") if tested else ("val",)
    some = [f"{split}/*" for split in shown if split in limited]
    whole = [f"{split}/*" for split in shown if split not in limited]
    if some:
        parts.append(f"{' and '.join(some)} cover those batches only")
    if whole:
        parts.append(f"{' and '.join(whole)} cover the whole split{'s' if len(whole) > 1 else ''}")
    return "; ".join(parts)


def after_training_lines(metrics: dict) -> list[str]:
    """The compressed model's figures and the exported file, where the run compressed or exported
    (``compress/...``, ``export/...`` of metrics.json): which model the file holds, and why the
    float one where the run also compressed."""
    lines = []
    if metrics.get("compress/method"):
        figures = []
        if isinstance(metrics.get("compress/after/test_acc"), (int, float)):
            figures.append(f"test/acc {metrics['compress/after/test_acc']:.4f}")
        if isinstance(metrics.get("compress/size_ratio"), (int, float)):
            figures.append(f"size x{metrics['compress/size_ratio']:.2f}")
        where = f" ({metrics['compress/artifact']})" if metrics.get("compress/artifact") else ""
        lines.append(f"  {'compressed (' + metrics['compress/method'] + ')':<22} {', '.join(figures)}{where}")
    if metrics.get("export/path"):
        model = metrics.get("export/model")
        if model == "float" and metrics.get("compress/artifact"):
            fmt = metrics.get("export/format")
            held = f"float model: export={fmt} cannot hold the compressed one"
            if metrics.get("compress/method") == "quantize" and fmt != "torchscript":  # int8 kernels
                held += "; export=torchscript holds it"
        else:
            held = f"{model} model" if model else ""
        lines.append(f"  {'export':<22} {metrics['export/path']}{f' ({held})' if held else ''}")
    return lines


def test_skipped(run_dir: Path, metrics: dict, tested: bool) -> bool:
    """Whether a completed run with a best checkpoint did not test (``tested``: it has no ``test/``
    figures) because its config said ``test=false`` (its record ``.hydra/config.yaml``): the summary
    then gives the command that tests it."""
    if metrics.get("status", "completed") != "completed" or not metrics.get("best_ckpt") or tested:
        return False
    record = Path(run_dir) / ".hydra" / "config.yaml"
    try:
        return record.is_file() and OmegaConf.load(record).get("test") is False
    except Exception:  # an unreadable record, an interpolation: no line rather than a wrong one
        return False


def print_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> None:
    """Prints the summary, and writes it to the run's log file too (which then tells the whole run)."""
    text = format_summary(run_dir, metrics, has_tensorboard)
    print("\n" + text, flush=True)
    log.info("%s", text, extra=FILE_ONLY)
