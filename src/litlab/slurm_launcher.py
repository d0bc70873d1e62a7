"""Whether a composed config's jobs go to SLURM, told from the launcher Hydra will build.

The choice's name (``hydra/launcher=submitit_slurm``) missed a site's own launcher file built on
it (``conf/hydra/launcher/cluster.yaml`` with ``defaults: [submitit_slurm]``), whose jobs SLURM
runs all the same: the checks then read node-only paths and variables on the login node. The
composed ``hydra.launcher._target_`` names the class whatever the file is called. Torch-free:
the command-line checks (``config_check``, ``config_values``, ``data.early_checks``) use it.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def is_slurm_launcher(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s ``hydra.launcher`` is submitit's SLURM launcher (or a class of that name)."""
    target = OmegaConf.select(cfg, "hydra.launcher._target_", default=None, throw_on_resolution_failure=False)
    return isinstance(target, str) and target.endswith("SlurmLauncher")
