"""compression.json, the TensorBoard table and scalars, and the ``compress/...`` metrics.json keys."""

from __future__ import annotations

import logging
from pathlib import Path

from litlab.reporting.run_files import write_json

log = logging.getLogger(__name__)

# ``flops``: one sample's forward FLOPs, None where not counted (int8 layers, an LSTM on CPU)
ROWS = ("test_acc", "test_loss", "params", "nonzero_params", "flops", "size_bytes", "latency_ms_batch1",
        "latency_ms_test_batch")


def after_key(row: str) -> str:
    """The metrics.json key of a figure of the compressed model (one of :data:`ROWS`)."""
    return f"compress/after/{row}"


def ratios(before: dict, after: dict) -> dict:
    """after/before size, parameter and FLOP ratios, before/after latency (speed-up); None where a
    figure is 0 or not counted."""
    def div(a, b):
        return a / b if a is not None and b else None

    return {
        "size_ratio": div(after["size_bytes"], before["size_bytes"]),
        "nonzero_ratio": div(after["nonzero_params"], before["nonzero_params"]),
        "flops_ratio": div(after.get("flops"), before.get("flops")),
        "acc_change": after["test_acc"] - before["test_acc"],
        "speedup_batch1": div(before["latency_ms_batch1"], after["latency_ms_batch1"]),
        "speedup_test_batch": div(before["latency_ms_test_batch"], after["latency_ms_test_batch"]),
    }


def table(report: dict) -> str:
    """A Markdown table of the before/after figures (TensorBoard's text tab renders it)."""
    before, after = report["before"], report["after"]
    lines = [f"**{report['method']}**", "", "| | before | after |", "| --- | --- | --- |"]
    for key in ROWS:
        lines.append(f"| {key} | {_cell(before.get(key))} | {_cell(after.get(key))} |")
    for key, value in report["change"].items():
        if value is not None:
            lines.append(f"| {key} | | {value:.4f} |")
    for key, value in report.get("extra", {}).items():  # e.g. the distilled student next to the one alone
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lines.append(f"| {key} | | {value:.4f} |")
    for side in ("before", "after"):  # a paragraph of its own: a line right under a table is a row
        if report[side].get("flops_not_counted"):
            lines += ["", f"FLOPs {side} not counted: {report[side]['flops_not_counted']}."]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "not counted"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_fields(report: dict) -> dict:
    """Flat ``compress/...`` keys for metrics.json; a figure not counted (FLOPs) is left out, as
    ``flops_per_sample`` is, and why is in compression.json."""
    fields = {"compress/method": report["method"], "compress/artifact": report["artifacts"]["after"]}
    for side in ("before", "after"):
        fields.update({f"compress/{side}/{k}": v for k, v in report[side].items()
                       if v is not None and k != "flops_not_counted"})
    fields.update({f"compress/{k}": v for k, v in report["change"].items()})
    fields.update({f"compress/{k}": v for k, v in report.get("extra", {}).items() if isinstance(v, (int, float))})
    return fields


def write(run_dir: Path, report: dict, loggers: list, step: int = 0) -> dict:
    """Writes compression.json and logs to TensorBoard at optimizer step ``step`` (the trained
    run's last, where its test results are, so that a resume drops them together); returns the
    metrics.json fields."""
    write_json(Path(run_dir) / "compression.json", report)
    text = table(report)
    log.info("compression report (%s):\n%s", Path(run_dir) / "compression.json", text)
    fields = metrics_fields(report)
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            writer.add_text("compression", text, step)
            for key, value in fields.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(key, value, step)
            writer.flush()
    return fields
