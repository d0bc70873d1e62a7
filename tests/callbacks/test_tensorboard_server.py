"""The real ``tensorboard`` server shows what a finished run wrote (read through its HTTP API)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

TENSORBOARD = Path(sys.executable).parent / "tensorboard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        body = r.read()
    return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def wait_for_tags(port: int, plugin: str, tag: str, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    """The server loads event files in the background: poll until ``tag`` shows up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            tags = get(port, f"/data/plugin/{plugin}/tags")
            if any(tag in run_tags for run_tags in tags.values()):
                return tags
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"tensorboard did not show {plugin} tag {tag} within {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(not TENSORBOARD.is_file(), reason="the tensorboard command is not installed")
def test_tensorboard_server_serves_scalars_images_and_text(tensorboard_run):
    run_dir, _, _ = tensorboard_run
    port = free_port()
    proc = subprocess.Popen([str(TENSORBOARD), "--logdir", str(run_dir / "tensorboard"), "--host", "127.0.0.1",
                             "--port", str(port), "--load_fast=false", "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        scalars = wait_for_tags(port, "scalars", "test/acc_top5", proc)
        run = next(iter(scalars))
        assert {"val/acc", "grad/norm", "lr-AdamW", "perf/train_samples_per_s", "val/acc_top5"} <= set(scalars[run])
        images = wait_for_tags(port, "images", "test/misclassified", proc)
        assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(images[run])
        # torch's SummaryWriter.add_text files text under TAG/text_summary
        text = wait_for_tags(port, "text", "test/per_class/text_summary", proc)
        assert "val/per_class/text_summary" in text[run]
        wait_for_tags(port, "histograms", "weights/net.head.3.weight", proc)

        q = urllib.parse.urlencode({"run": run, "tag": "val/acc"})
        points = get(port, f"/data/plugin/scalars/scalars?{q}")
        assert len(points) == 2 and all(0 <= p[2] <= 1 for p in points)  # [wall_time, step, value]
        q = urllib.parse.urlencode({"run": run, "tag": "test/confusion_matrix", "sample": 0})
        entries = get(port, f"/data/plugin/images/images?{q}")
        png = get(port, f"/data/plugin/images/individualImage?{entries[-1]['query']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        q = urllib.parse.urlencode({"run": run, "tag": "test/per_class/text_summary"})
        table = get(port, f"/data/plugin/text/text?{q}")
        assert "precision" in table[-1]["text"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
