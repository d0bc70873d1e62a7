"""The compression results a sweep summary plots, by their metrics.json names."""

from __future__ import annotations

from litlab.compression.report import after_key

# what each axis of the accuracy-vs-cost figures reads: the numbers after compression
AXES = {"accuracy": after_key("test_acc"), "size": after_key("size_bytes"), "latency": after_key("latency_ms_batch1"),
        "flops": after_key("flops")}


def compression_keys(metrics_of_jobs: list[dict]) -> dict[str, str]:
    """``{"accuracy": key, "size": key, "latency": key, "flops": key}`` for those of :data:`AXES` that some job
    recorded as a number; a kind no job has is left out."""
    present = {k for m in metrics_of_jobs for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {kind: key for kind, key in AXES.items() if key in present}
