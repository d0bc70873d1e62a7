"""Checks of a composed config's values before any work: every ``${...}`` resolves, the keys a
command cannot run without are there, switches are booleans, and Hydra settings litlab does not
support are refused."""

from __future__ import annotations

from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from litlab.errors import LitlabError

# keys every training run reads; `~seed` or `~model` removed them and the run failed in a traceback
REQUIRED = {"train": ("seed", "model", "data", "trainer"), "eval": (), "predict": ()}
# true/false switches of the entry configs (a string such as `test=no` counted as true)
SWITCHES = {"train": ("test",), "eval": (), "predict": ()}
# interpolations only Hydra's running job can resolve (its output folder, the time)
_RUNTIME_ONLY = "HydraConfig was not set"


def check_values(cfg: DictConfig, config_name: str) -> None:
    """The checks of this module for ``config_name`` (train, eval or predict)."""
    for key in REQUIRED.get(config_name, ()):
        if key not in cfg:
            raise LitlabError(f"{key} is required by python -m litlab.{config_name} and is missing from the config "
                              f"(an override ~{key} removes it). Leave it in and give it a value instead, e.g. "
                              f"{key}={'42' if key == 'seed' else '<choice>'}.")
    for key in SWITCHES.get(config_name, ()):
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise LitlabError(f"{key} must be true or false, got {value!r}.")
    hydra = cfg.get("hydra")
    # jobs that SLURM runs on other machines resolve ${oc.env:...} there (SLURM_TMPDIR, a node's scratch)
    remote = hydra is not None and OmegaConf.select(cfg, "hydra.runtime.choices", default={}).get(
        "hydra/launcher") == "submitit_slurm"
    check_resolvable(cfg, environment_elsewhere=remote)
    if hydra is not None and cfg.hydra.job.get("chdir"):
        raise LitlabError(
            "hydra.job.chdir=true is not supported: litlab reads relative paths (data.root, data.path, ckpt_path, "
            "paths.data_dir) from the folder the command starts in and writes every output into the run's folder "
            "itself, so changing into it would look for the data in the wrong place. Leave hydra.job.chdir out."
        )


def check_resolvable(cfg: DictConfig, environment_elsewhere: bool = False) -> None:
    """Every value outside ``hydra`` resolves: a ``${key}`` that names no key, or ``${oc.env:NAME}``
    of an unset variable, failed in a traceback after the data was prepared. With
    ``environment_elsewhere`` (jobs on other machines) an unset variable is left to the job."""
    for path, node, key in _leaves(cfg):
        if path.startswith("hydra."):
            continue
        try:
            node[key]
        except MissingMandatoryValue:
            raise LitlabError(f"{path} has no value (??? in its config file) and the run needs one: give it on the "
                              f"command line, {path}=..., or in your config file.") from None
        except OmegaConfBaseException as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if _RUNTIME_ONLY in reason or (environment_elsewhere and "Environment variable" in reason):
                continue
            raw = node._get_node(key)._value()  # the interpolation as written
            raise LitlabError(
                f"{path}={raw} cannot be resolved: {reason.rstrip('.')}. A ${{...}} must name a key of the config "
                f"(python -m litlab.train --cfg job lists them) or a set environment variable; "
                f"${{oc.env:NAME,default}} gives a default for an unset one."
            ) from None


def _leaves(node, prefix: str = "") -> Iterator[tuple[str, DictConfig | ListConfig, object]]:
    """(dotted path, parent, key) of every value, interpolated containers counted as values."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        path = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation() and not child._is_none() \
                and not child._is_missing():
            yield from _leaves(child, path + ".")
        else:
            yield path, node, key
