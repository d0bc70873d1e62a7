"""kill -9 at any moment leaves only complete checkpoints, and the run resumes from them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, make_cfg

ARGS = ["model=mlp", "trainer.max_epochs=30", "trainer.num_sanity_val_steps=0", "logger=none"]


def _start(run_dir, *extra):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "litlab.train", *ARGS, f"hydra.run.dir={run_dir}",
                             f"paths.data_dir={run_dir.parent / 'data'}", *extra],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _all_checkpoints_load(run_dir) -> int:
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    for path in ckpts:
        ckpt = torch.load(path, weights_only=True)
        assert "state_dict" in ckpt and "litlab" in ckpt, path
    return len(ckpts)


@pytest.mark.slow
def test_kill_9_during_training_then_resume(tmp_path):
    run = tmp_path / "run"
    rng = random.Random(0)
    for attempt in range(2):
        proc = _start(run, *(["ckpt_path=last"] if attempt else []))
        last = run / "checkpoints" / "last.ckpt"
        first_mtime = last.stat().st_mtime_ns if last.exists() else None
        deadline = time.time() + 120
        # wait for a fresh save of last.ckpt, then kill at a random moment of the following epochs
        while time.time() < deadline and proc.poll() is None and (
                not last.exists() or last.stat().st_mtime_ns == first_mtime):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _all_checkpoints_load(run) >= 1
    # the resume that completes the run is not killed, so it needs no process of its own: it trains
    # here (an interpreter start-up less), with the same overrides, data and one compute thread
    from litlab.training import train

    train(make_cfg([*ARGS, "ckpt_path=last"], run, run.parent / "data", fast=False))
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs"] == 30
    assert _all_checkpoints_load(run) == 2
