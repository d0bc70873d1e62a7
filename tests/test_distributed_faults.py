"""One rank of a two-process CPU DDP run dies or hangs: every rank stops in bounded time, no process
is left behind, and metrics.json says which rank was lost and how to resume.

Real processes: ``python -m litlab.train trainer=ddp_cpu`` started as a user would, the rank to
break found among rank 0's children, and killed (SIGKILL) or frozen (SIGSTOP). The time bounds are
deadlines that a hang would miss, not measurements.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from litlab.distributed import rank_faults
from litlab.errors import LitlabError
from tests.conftest import REPO

# many epochs of a few seconds: the run is still training when it is broken
ARGS = ["data=synthetic", "data.num_train=4000", "data.num_val=200", "data.num_test=200", "model=mlp",
        "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=20", "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false", "logger=csv"]
# seconds, generous on a loaded machine: startup, and exit after a fault
START_S, EXIT_S = 180, 60


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (or is stopped); a zombie has exited and only waits to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes_of(run_dir: Path) -> list[int]:
    """Live processes whose command line names this run's directory: its ranks (by hydra.run.dir)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and str(run_dir) in _cmdline(pid) and _alive(pid)]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _alive(pid)


class DdpRun:
    """A two-rank training run in ``run_dir``, its output in ``run_dir.parent / "output.txt"``."""

    def __init__(self, run_dir: Path, *extra: str):
        self.run_dir = run_dir
        self.output = run_dir.parent / "output.txt"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
        with open(self.output, "w") as out:
            self.rank0 = subprocess.Popen(
                [sys.executable, "-m", "litlab.train", *ARGS, f"hydra.run.dir={run_dir}",
                 f"paths.data_dir={run_dir.parent / 'data'}", *extra],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group, as a terminal gives a command

    def log_tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]

    def wait_until_training(self) -> None:
        """Until the first epoch's last.ckpt is written, i.e. both ranks are in the training loop."""
        last = self.run_dir / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + START_S
        while not last.is_file() and self.rank0.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last.is_file(), self.log_tail()

    def rank1(self) -> int:
        """The pid of rank 1: the child of rank 0 that the launcher started as ``train_rank1``."""
        children = Path(f"/proc/{self.rank0.pid}/task").glob("*/children")
        pids = {int(pid) for f in children for pid in f.read_text().split()}
        (pid,) = [pid for pid in pids if "hydra.job.name=train_rank1" in _cmdline(pid)]
        return pid

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())

    def stop_everything(self) -> None:
        """Cleanup whatever the test left: every process of this run, by pid."""
        for pid in _processes_of(self.run_dir):
            os.kill(pid, signal.SIGKILL)
        self.rank0.wait()


@pytest.fixture
def start_run(tmp_path):
    runs: list[DdpRun] = []

    def start(*extra: str) -> DdpRun:
        runs.append(DdpRun(tmp_path / "run", *extra))
        return runs[-1]

    yield start
    for run in runs:
        run.stop_everything()


def _assert_failed_and_resumable(run: DdpRun, *words: str) -> None:
    m = run.metrics()
    assert m["status"] == "failed", m
    for word in words:
        assert word in m["error"], (word, m["error"])
    assert f"ckpt_path=last hydra.run.dir={run.run_dir}" in m["error"]
    assert "checkpoints/last.ckpt holds the run's last epoch end or validation that a resume continues exactly" in m["error"]
    ckpt = torch.load(run.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] < 19 and ckpt["state_dict"]  # stopped early, and the checkpoint is whole


@pytest.mark.slow
def test_killed_rank_1_stops_rank_0_and_the_run_says_which_rank_was_lost(start_run):
    run = start_run()
    run.wait_until_training()
    rank1 = run.rank1()
    os.kill(rank1, signal.SIGKILL)

    try:
        code = run.rank0.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank 0 still running {EXIT_S}s after rank 1 was killed:\n{run.log_tail()}")
    assert code != 0
    assert _processes_of(run.run_dir) == [], "a process of the run is left running"
    _assert_failed_and_resumable(run, f"rank 1 of this multi-process run (pid {rank1})",
                                 "killed by signal SIGKILL")
    assert "Error: rank 1 of this multi-process run" in run.log_tail()


@pytest.mark.slow
def test_killed_rank_0_leaves_no_rank_1_running(start_run):
    run = start_run()
    run.wait_until_training()
    rank1 = run.rank1()
    run.rank0.kill()
    run.rank0.wait()

    assert _wait_gone(rank1, EXIT_S), f"rank 1 (pid {rank1}) still running {EXIT_S}s after rank 0 was killed"
    assert _processes_of(run.run_dir) == []
    assert torch.load(run.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_frozen_rank_1_fails_the_run_after_the_collective_timeout(start_run):
    timeout_s = 20
    run = start_run(f"trainer.strategy.timeout.seconds={timeout_s}")
    run.wait_until_training()
    rank1 = run.rank1()
    os.kill(rank1, signal.SIGSTOP)  # alive, connections open, never answers: only a timeout ends the wait

    try:
        code = run.rank0.wait(timeout=timeout_s + EXIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank 0 still waiting {timeout_s + EXIT_S}s after rank 1 froze:\n{run.log_tail()}")
    assert code != 0
    assert not _alive(rank1), "the frozen rank 1 was left behind"
    assert _processes_of(run.run_dir) == []
    _assert_failed_and_resumable(run, "stopped answering", "trainer.strategy.timeout")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_rank_after_the_same_batch(start_run, sig):
    """SIGTERM to rank 0 (``kill``), or Ctrl-C, which a terminal sends to every process of the group."""
    run = start_run()
    run.wait_until_training()
    if sig == signal.SIGINT:
        os.killpg(run.rank0.pid, signal.SIGINT)
    else:
        run.rank0.send_signal(sig)

    try:
        code = run.rank0.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank 0 still running {EXIT_S}s after {sig.name}:\n{run.log_tail()}")
    assert code == 128 + sig, run.log_tail()
    assert _processes_of(run.run_dir) == []
    m = run.metrics()
    assert m["status"] == "interrupted" and sig.name in m["error"], m
    assert "ckpt_path=last" in m["resume"]
    assert "Error" not in run.log_tail()  # no rank was left alone in a collective


# the same decisions without a training run: rank 0 not inside a collective, and which errors are explained


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_watcher_stops_every_rank_when_rank_0_does_not_fail_on_its_own(tmp_path, monkeypatch):
    dead, busy = _child("import sys; sys.exit(3)"), _child("import time; time.sleep(120)")
    signals = []
    monkeypatch.setattr(rank_faults.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    monkeypatch.setattr(rank_faults.os, "_exit", lambda status: signals.append(("exit", status)))
    try:
        rank_faults.stop_all_if_a_child_fails({1: dead, 2: busy}, threading.Event(), tmp_path, "train", grace_s=0.2)
    finally:
        monkeypatch.undo()
        busy.kill()
        busy.wait()
    # the living rank is killed (SIGKILL) and rank 0 exits with status 1 (it killed itself: status
    # 137, read as an out-of-memory kill); the record names the lost rank
    assert signals == [(busy.pid, signal.SIGKILL), ("exit", 1)]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "failed"
    assert f"rank 1 of this multi-process run (pid {dead.pid}) exited with code 3" in m["error"]
    assert "No checkpoint of this run can be resumed" in m["error"]


def test_watcher_leaves_a_rank_0_that_failed_on_its_own(tmp_path, monkeypatch):
    dead = _child("import sys; sys.exit(1)")
    dead.wait()
    ended = threading.Event()
    threading.Timer(0.3, ended.set).start()  # rank 0's job ends: it noticed the lost rank itself
    signals = []
    monkeypatch.setattr(rank_faults.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    monkeypatch.setattr(rank_faults.os, "_exit", lambda status: signals.append(("exit", status)))
    rank_faults.stop_all_if_a_child_fails({1: dead}, ended, tmp_path, "train", grace_s=30)
    assert signals == [] and not (tmp_path / "metrics.json").exists()


def test_only_errors_of_lost_or_hung_ranks_are_explained(tmp_path):
    busy = _child("import time; time.sleep(120)")
    try:
        children = {1: busy}
        nan = LitlabError("the training loss became NaN or infinite at training step 3")
        assert rank_faults.explain(nan, children, tmp_path, "train", wait_s=0) is None
        assert rank_faults.explain(ValueError("a bug"), children, tmp_path, "train", wait_s=0) is None
        gloo = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 20000ms for recv operation")
        hung = rank_faults.explain(gloo, children, tmp_path, "train")
        assert isinstance(hung, rank_faults.LostRankError) and hung.exit_code == 1
        assert "stopped answering" in str(hung) and "(Timed out waiting 20000ms" in str(hung)
    finally:
        busy.kill()
        busy.wait()
    # once the child is seen gone, the error names it, whatever gloo said
    lost = rank_faults.explain(RuntimeError("Connection reset by peer"), children, tmp_path, "train")
    assert f"rank 1 of this multi-process run (pid {busy.pid}) was killed by signal SIGKILL" in str(lost)


def test_ranks_that_never_joined_get_one_paragraph_also_in_metrics(tmp_path, monkeypatch, capsys):
    """Under SLURM without srun, rank 0 waited for the others and died after 2 minutes with torch's
    "DistStoreError: Timed out after 121 seconds waiting for clients. 1/2 clients joined." traceback."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from torch.distributed import DistStoreError

    from litlab.entry import run_entrypoint

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra job: this is no sweep
    cfg = OmegaConf.create({"task_name": "train", "paths": {"output_dir": str(tmp_path)},
                            "trainer": {"num_nodes": 2, "devices": 1}})

    def work(cfg):  # Lightning's DDP setup, where the store gives up waiting for rank 1
        raise DistStoreError("Timed out after 121 seconds waiting for clients. 1/2 clients joined.")

    with pytest.raises(SystemExit) as exit_:
        run_entrypoint(work, cfg)
    assert exit_.value.code == 1
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "failed"
    assert m["error"].startswith(
        "trainer.num_nodes=2 x trainer.devices=1 = 2 processes were expected to start this run together, but the "
        "others never joined within trainer.strategy.timeout (Timed out after 121 seconds waiting for clients. "
        "1/2 clients joined.).")
    for cause in ("under SLURM the command must be started with srun, one task per device",
                  "started on every node with the same --nnodes, --master-addr and --master-port",
                  "another node failed before training began", "checkpoints/last.ckpt on every node"):
        assert cause in m["error"]
    assert "\n" not in m["error"]
    err = capsys.readouterr().err
    assert f"Error: {m['error']}" in err and "Traceback" not in err


def test_only_store_timeouts_are_taken_for_ranks_that_never_joined():
    from torch.distributed import DistNetworkError, DistStoreError

    assert rank_faults.is_rendezvous_timeout(DistNetworkError(
        "The client socket has timed out after 120000ms while trying to connect to (127.0.0.1, 29500)."))
    wrapped = RuntimeError("setup failed")
    wrapped.__cause__ = DistStoreError("Timed out after 121 seconds waiting for clients. 1/2 clients joined.")
    assert rank_faults.is_rendezvous_timeout(wrapped)
    # a port in use, or a collective's timeout once the ranks had met (``explain`` above), are other faults
    assert not rank_faults.is_rendezvous_timeout(DistNetworkError(
        "The server socket has failed to listen on any local network address. port: 29500, name: EADDRINUSE"))
    assert not rank_faults.is_rendezvous_timeout(RuntimeError("Timed out waiting 20000ms for recv operation"))
    # an exception chain that loops back on itself (a user error raised while another was handled)
    # spun forever: every bad-input run hung at 100 % CPU instead of printing its one paragraph
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert not rank_faults.is_rendezvous_timeout(first)
