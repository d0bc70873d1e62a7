"""Which rank this process is, without importing torch: the command-line checks run before it."""

from __future__ import annotations

import os
import sys

from litlab.errors import LitlabError


def launched_rank() -> int:
    """This process's global rank as its launcher announced it in the environment (0 when none did)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "LOCAL_RANK" in env:  # Lightning's own children: one node's processes
        return int(env.get("NODE_RANK", 0)) * int(env.get("LOCAL_WORLD_SIZE", 1)) + int(env["LOCAL_RANK"])
    if int(env.get("SLURM_NTASKS", 1)) > 1:
        return int(env.get("SLURM_PROCID", 0))
    return 0


def is_rank_zero() -> bool:
    """True in the one process that writes files (also before the process group exists)."""
    dist = sys.modules.get("torch.distributed")  # a process group needs torch.distributed imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return launched_rank() == 0


def started_by_launcher() -> bool:
    """Whether torchrun or SLURM started this process as one of several, each of which composes its
    own config (Lightning's own child ranks are told rank 0's run directory instead)."""
    env = os.environ
    if "LOCAL_WORLD_SIZE" in env and "TORCHELASTIC_RUN_ID" not in env:
        return False  # one of litlab's RunDirLauncher children
    return launched_rank() != 0 or int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", 1))) > 1


def check_run_dir_given(argv: list[str], kind: str = "train") -> None:
    """Every rank that torchrun or SLURM starts needs one fixed run directory: ``hydra.run.dir=`` on
    its command line, or a folder without a timestamp set in the run's own configs (a primary
    config of the user's with ``--config-dir/--config-name``, an experiment file).

    Checked before Hydra starts, on every rank: with the default timestamped folder each rank would
    make (and leave behind) its own folder before any later check could refuse the run. The ranks
    compare the folders they resolved once the process group exists (``launcher``), so a folder
    that depends on something else that differs between ranks is still caught there.
    """
    if not started_by_launcher():
        return
    if any(a.lstrip("+").startswith("hydra.run.dir=") for a in argv):
        return
    from litlab.config_values import reads_clock

    configured = _configured_run_dir(argv, kind)
    if configured is not None and not reads_clock(*configured):
        return
    raise LitlabError(
        "hydra.run.dir: this process is one rank of a multi-process run started by torchrun or SLURM, "
        "and every rank must write into the same run directory. Pass the same literal "
        "hydra.run.dir=outputs/runs/<name> to every rank, or set a folder without ${now:...} as hydra.run.dir in "
        "your own config (see docs/scaling.md).")


def _configured_run_dir(argv: list[str], kind: str) -> tuple[dict, str] | None:
    """The run's config (unresolved, with its ``hydra`` node) and its ``hydra.run.dir`` as written,
    composed from the command line's configs and overrides; None when it sets none."""
    from omegaconf import OmegaConf

    from litlab.config_check import compose_checked, overrides_of
    from litlab.config_flags import primary_of

    cfg = compose_checked(overrides_of(argv), kind, return_hydra_config=True, primary=primary_of(argv, kind))
    tree = OmegaConf.to_container(cfg, resolve=False)
    run_dir = tree.get("hydra", {}).get("run", {}).get("dir")
    return (tree, run_dir) if isinstance(run_dir, str) and run_dir else None
