"""The short summary every run prints at its end."""

from __future__ import annotations

from pathlib import Path

SHOWN = ("val/acc", "test/acc", "test/loss", "train_samples_per_s", "wall_time_s")


def format_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> str:
    lines = [f"litlab run {metrics.get('status', 'completed')}: {run_dir}"]
    for key in SHOWN:
        value = metrics.get(key)
        if value is not None:
            lines.append(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    if metrics.get("partial_data"):  # debug=fdr/limit/overfit, trainer.limit_*: not the whole splits
        settings = " ".join(f"trainer.{k}={v}" for k, v in metrics["partial_data"].items())
        lines.append(f"  on part of the data:   {settings} (the figures cover those batches only)")
    if metrics.get("best_ckpt"):
        lines.append(f"  best checkpoint        {metrics['best_ckpt']}")
    lines.append(f"  metrics                {run_dir / 'metrics.json'}")
    if has_tensorboard:
        lines.append(f"  open in TensorBoard:   tensorboard --logdir {run_dir / 'tensorboard'}")
    return "\n".join(lines)


def print_summary(run_dir: Path, metrics: dict, has_tensorboard: bool) -> None:
    print("\n" + format_summary(run_dir, metrics, has_tensorboard), flush=True)
