"""Two torchrun "nodes" on loopback train one model together into one run directory."""

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

from .tiny_run import TINY, metrics_of, run_dirs
from .weight_digest import digest_override, read_digests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_train_one_model(tmp_path):
    port, run_dir, digests = _free_port(), tmp_path / "runs" / "two_nodes", tmp_path / "digests"
    # torchrun leaves a torchelastic_* folder in the temporary directory: keep it in tmp_path
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}",
               "-m", "litlab.train", *TINY, "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1",
               f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'runs'}", digest_override(digests)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]

    ranks = read_digests(digests)
    assert [d["rank"] for d in ranks] == [0, 1]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert [d["samples_per_epoch"] for d in ranks] == [[128], [128]]
    assert run_dirs(tmp_path / "runs") == [run_dir]
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "completed" and metrics["world_size"] == 2 and metrics["num_nodes"] == 2
