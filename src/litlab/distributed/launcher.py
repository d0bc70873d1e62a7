"""One run directory per run, however its ranks start: Lightning's child processes, torchrun or SLURM.

Lightning starts DDP ranks 1..N-1 by running the command line again. Under Hydra every rank would
then make its own timestamped run directory, and inside a sweep every rank would start the whole
sweep again. ``RunDirLauncher`` starts them instead with this job's own overrides, pinned to this
job's run directory, in RUN mode. ``distributed_job`` puts the process back as it was after a job,
so that the next job of a sweep (same process) starts its own process group. What happens when a
rank dies or hangs is in ``rank_faults``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from litlab.distributed import rank_faults
from litlab.distributed.ranks import is_rank_zero, launched_rank
from litlab.errors import LitlabError

log = logging.getLogger(__name__)

# what a launcher sets in the environment of the process that is rank 0
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# hydra overrides that belong to the sweep, not to one job: children never get them
_SWEEP_ONLY = ("hydra.run", "hydra.sweep", "hydra.mode", "hydra.launcher", "hydra.sweeper", "hydra/launcher",
               "hydra/sweeper", "hydra.output_subdir", "hydra.job.name")
# seconds rank 0 waits for its children to exit after a job before killing them
_CHILD_EXIT_S = 60
# the same after a failed job: a child still inside a collective is released when rank 0 ends the
# process group; one that is stopped or hung never exits on its own
_CHILD_EXIT_AFTER_FAILURE_S = 5
# seconds rank 0 is given to fail on its own once a child rank died, before it is stopped (RUN mode)
_FAIL_ON_ITS_OWN_S = 10

# this job's child ranks by global rank, and whether the job is over (for the watcher thread)
_children: dict[int, subprocess.Popen] = {}
_job_ended = threading.Event()


def entry_kind() -> str:
    """The entrypoint this job runs (train, eval, predict): its module starts the child ranks.
    Not ``hydra.job.config_name``, which is the primary config's name (``--config-name mytrain``
    ran ``python -m litlab.mytrain``)."""
    from litlab.entry import entrypoint

    return entrypoint() or str(HydraConfig.get().job.config_name)


def child_command(local_rank: int) -> list[str]:
    """``python -m litlab.<entry>`` with this job's config flags and overrides, in this job's run directory.

    The job's overrides are Hydra's ``overrides.task``: inside a sweep these are the values of
    this job (``model.optimizer.lr=0.003``), never the sweep's lists, so every rank trains with
    the same hyperparameters. The flags (``--config-dir``, ``--config-name``) are those the job
    was composed with, as Hydra records them, so a rank composes the same config as rank 0.
    """
    from litlab.config_flags import Primary

    hc = HydraConfig.get()
    kind = entry_kind()
    run_dir = str(hc.runtime.output_dir).replace("\\", "\\\\").replace("'", "\\'")
    hydra_overrides = [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(_SWEEP_ONLY)]
    return [sys.executable, "-m", f"litlab.{kind}", *Primary.of_run(hc, kind).flags(), *hc.overrides.task,
            *hydra_overrides,
            f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null", "hydra.mode=RUN",
            f"hydra.job.name={hc.job.name}_rank{local_rank}"]


class RunDirLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher, but the children run this Hydra job, in its run directory.

    Lightning's watcher thread kills everything when a child fails; in a sweep that would kill the
    sweep, so there it is left out: a dead child makes the next collective fail on rank 0 (gloo
    reports the closed connection; a rank that never joins hits the process group's timeout), so
    the job fails and the sweep goes on. Outside sweeps ``rank_faults.stop_all_if_a_child_fails``
    does Lightning's job.
    """

    def launch(self, function, *args: Any, trainer: L.Trainer | None = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._start_children()
            hc = HydraConfig.get()
            if hc.mode == RunMode.RUN:
                watch = (dict(_children), _job_ended, hc.runtime.output_dir, entry_kind(), _FAIL_ON_ITS_OWN_S)
                threading.Thread(target=rank_faults.stop_all_if_a_child_fails, args=watch, name="litlab-rank-watch",
                                 daemon=True).start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _start_children(self) -> None:
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = "0"
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        _job_ended.clear()
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(self.num_processes),
                         rank_faults.RANK0_PID_ENV: str(os.getpid())}
            proc = subprocess.Popen(child_command(local_rank), env=child_env, cwd=os.getcwd())
            self.procs.append(proc)
            _children[env.node_rank() * self.num_processes + local_rank] = proc


def use_run_dir_launcher(trainer: L.Trainer) -> None:
    """Swaps Lightning's script launcher for ``RunDirLauncher`` when the run is under Hydra; under
    torchrun or SLURM the ranks' run folders are compared instead (``compare_run_dirs_after_setup``)."""
    strategy = trainer.strategy
    compare_run_dirs_after_setup(strategy)
    launcher = getattr(strategy, "_launcher", None)
    if type(launcher) is _SubprocessScriptLauncher and HydraConfig.initialized():
        # the strategy reads its launcher from this private field at fit/test time
        strategy._launcher = RunDirLauncher(launcher.cluster_environment, launcher.num_processes,
                                            launcher.num_nodes)


def _reap_children(wait_s: float) -> None:
    for rank, proc in _children.items():
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            log.warning("rank %d (pid %d) did not exit %gs after its job; killing it", rank, proc.pid, wait_s)
            proc.kill()
            proc.wait()
    _children.clear()


@contextmanager
def distributed_job(trainer_cfg: Any = None) -> Iterator[None]:
    """Around one job: quiet file logs on ranks > 0; afterwards end the process group, wait for
    the child ranks and restore the launch environment, so the next job of a sweep starts clean.

    An error that came from a lost or hung rank is raised again as a ``LostRankError`` that names
    the rank and says how to resume; one of ranks that never joined (the process group's setup
    timed out) as one that says how many were expected (from ``trainer_cfg``) and why they may
    be missing, on every rank.
    """
    saved = {k: os.environ.get(k) for k in LAUNCH_ENV}
    if not is_rank_zero():
        _drop_file_logs()
        rank_faults.exit_when_rank_zero_is_gone(launched_rank())
    failed = True
    try:
        yield
        failed = False
    except Exception as e:
        lost = _explain(e, trainer_cfg)
        if lost is not None:
            raise lost from e
        raise
    finally:
        _job_ended.set()
        if dist.is_available() and dist.is_initialized():
            # also unblocks children still waiting in a collective after rank 0 failed
            dist.destroy_process_group()
        _reap_children(_CHILD_EXIT_AFTER_FAILURE_S if failed else _CHILD_EXIT_S)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _explain(error: Exception, trainer_cfg: Any = None) -> rank_faults.LostRankError | None:
    if not (dist.is_available() and dist.is_initialized()) and rank_faults.is_rendezvous_timeout(error):
        return rank_faults.LostRankError(rank_faults.ranks_never_joined_message(error, trainer_cfg))
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if not is_rank_zero() or not (_children or (dist.is_available() and dist.is_initialized())):
        return None  # a child rank (rank 0 reports the run), or not a multi-process job
    return rank_faults.explain(error, _children, hc.runtime.output_dir, entry_kind())


def _drop_file_logs() -> None:
    """Ranks > 0 share rank 0's run directory: only rank 0 writes its log file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


def configured_run_dir() -> str | None:
    """This process's ``hydra.run.dir`` as its config resolved it (None outside a Hydra run job)."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return None if hc.mode == RunMode.MULTIRUN else str(hc.run.dir)


def check_same_run_dirs(run_dirs: list[str | None]) -> None:
    """Every rank (by index) must have been given one run folder; otherwise a paragraph naming them."""
    if len(set(run_dirs)) <= 1:
        return
    ranks_of: dict[str | None, list[str]] = {}
    for rank, run_dir in enumerate(run_dirs):
        ranks_of.setdefault(run_dir, []).append(str(rank))
    which = "; ".join(f"rank{'s' if len(r) > 1 else ''} {', '.join(r)} got {d}" for d, r in ranks_of.items())
    raise LitlabError(
        f"hydra.run.dir differs between the ranks of this run ({which}), but every rank must write into "
        f"one run folder, so every rank was stopped before training. A path that each node works out for "
        f"itself (${{now:...}} in it, or the shell's $(date)) can resolve differently on different nodes. "
        f"Pass one literal folder to every rank, e.g. hydra.run.dir=outputs/runs/<name> (docs/scaling.md).")


def check_ranks_share_run_dir() -> None:
    """Once the process group exists: every rank compares its ``hydra.run.dir`` with the others'
    and all fail together, so no rank is left waiting for one that stopped."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    run_dirs: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(run_dirs, configured_run_dir())
    check_same_run_dirs(run_dirs)


def compare_run_dirs_after_setup(strategy) -> None:
    """Under torchrun or SLURM every rank composes its own config, so the ranks' run folders are
    compared right after the strategy sets up the process group (and the device, which nccl's
    all-gather needs), before training writes a log or checkpoint. Lightning's own child ranks are given
    rank 0's folder, and every rank of a run has the same kind of cluster environment, so either
    all ranks compare or none does."""
    if not isinstance(getattr(strategy, "cluster_environment", None), (TorchElasticEnvironment, SLURMEnvironment)):
        return
    setup_environment = strategy.setup_environment

    def setup_then_compare() -> None:
        setup_environment()
        check_ranks_share_run_dir()

    strategy.setup_environment = setup_then_compare


def scale_facts(trainer: L.Trainer, batch_size: int) -> dict:
    """metrics.json fields that say how the run was spread: ranks, and the batch per optimizer step."""
    world = trainer.world_size
    # an epoch of fewer batches than accumulate_grad_batches steps once, at its end, on all of them
    micro = trainer.accumulate_grad_batches
    per_epoch = trainer.num_training_batches
    if isinstance(per_epoch, int) and per_epoch > 0:
        micro = min(micro, per_epoch)
    return {"world_size": world, "num_nodes": trainer.num_nodes, "devices_per_node": trainer.num_devices,
            "batch_size_per_device": batch_size, "effective_batch_size": batch_size * world * micro}
