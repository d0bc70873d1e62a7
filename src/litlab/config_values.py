"""Checks of a composed config's values before any work: every ``${...}`` resolves, the keys a
command cannot run without are there, switches are booleans, paths are ones litlab can use as
written (no empty root, no ``~``), and Hydra settings litlab does not support are refused."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from litlab.errors import LitlabError
from litlab.run_folders import select_or_none
from litlab.slurm_launcher import is_slurm_launcher

# keys every training run reads; `~seed` or `~model` removed them and the run failed in a traceback
REQUIRED = {"train": ("seed", "model", "data", "trainer"), "lr_find": ("seed", "model", "data", "trainer"),
            "eval": (), "predict": ()}
# true/false switches of the entry configs (a string such as `test=no` counted as true)
SWITCHES = {"train": ("test",), "eval": (), "predict": ()}
# interpolations only Hydra's running job can resolve (its output folder, the time)
_RUNTIME_ONLY = "HydraConfig was not set"
# keys that name a file or folder, besides every paths.* key (the command's own ones: predict's input and output)
PATH_KEYS = {"train": ("data.root", "data.path", "ckpt_path"),
             "lr_find": ("data.root", "data.path"),
             "eval": ("data.root", "data.path", "ckpt_path"),
             "predict": ("ckpt_path", "input", "output")}
# the run's and the sweep's folder, checked after paths.* (they are made of paths.log_dir by default)
HYDRA_PATH_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def check_values(cfg: DictConfig, config_name: str, multirun: bool = False) -> None:
    """The checks of this module for ``config_name`` (train, eval or predict); ``multirun``: a sweep
    (``-m``), the only kind of command whose jobs Hydra's launcher starts."""
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
    # jobs that SLURM runs on other machines resolve ${oc.env:...} there (SLURM_TMPDIR, a node's scratch);
    # a single run (no -m) runs here whatever hydra/launcher says
    remote = hydra is not None and multirun and is_slurm_launcher(cfg)  # submitit_slurm, or a site's file on it
    check_resolvable(cfg, environment_elsewhere=remote)
    if hydra is not None and cfg.hydra.job.get("chdir"):
        raise LitlabError(
            "hydra.job.chdir=true is not supported: litlab reads relative paths (data.root, data.path, ckpt_path, "
            "paths.data_dir) from the folder the command starts in and writes every output into the run's folder "
            "itself, so changing into it would look for the data in the wrong place. Leave hydra.job.chdir out."
        )
    check_root_dir(cfg)
    check_no_home_paths(cfg, config_name)


def check_root_dir(cfg: DictConfig) -> None:
    """An empty ``paths.root_dir`` made ``paths.data_dir`` /data and ``paths.log_dir`` /outputs, at
    the file system's root: ``${oc.env:LITLAB_ROOT,.}`` gives '' (not the default) for a variable set
    but empty, as ``export LITLAB_ROOT=$SCRATCH`` does where SCRATCH is not set."""
    root = select_or_none(cfg, "paths.root_dir")
    if root != "":
        return
    if os.environ.get("LITLAB_ROOT") == "" and "LITLAB_ROOT" in str(_raw(cfg, "paths.root_dir")):
        raise LitlabError(
            "LITLAB_ROOT is set but empty, so paths.root_dir (${oc.env:LITLAB_ROOT,.}) is '' and the data and the "
            "outputs would go to /data and /outputs at the file system's root; an empty one is often a variable "
            "that was not set, as in export LITLAB_ROOT=$SCRATCH. Unset it (unset LITLAB_ROOT) to work in the "
            "current folder, or give it a folder (export LITLAB_ROOT=DIR)."
        )
    raise LitlabError(
        "paths.root_dir is empty, so the data and the outputs would go to /data and /outputs at the file system's "
        "root. Give it a folder (paths.root_dir=DIR), or leave it out to work in the current folder."
    )


def check_no_home_paths(cfg: DictConfig, config_name: str) -> None:
    """A path that starts with ``~`` reached litlab as written (quoted, or from zsh after ``=``): a run
    folder ``~/runs`` became a folder named ``~`` in the current one, which a later ``rm -rf ~`` of
    the user would take for the home folder, and a checkpoint ``~/x.ckpt`` was said not to exist."""
    paths = cfg.get("paths")
    keys = [f"paths.{k}" for k in (paths.keys() if isinstance(paths, DictConfig) else ())]
    for key in (*keys, *PATH_KEYS.get(config_name, ()), *HYDRA_PATH_KEYS):
        value = select_or_none(cfg, key)
        if isinstance(value, str) and value.startswith("~"):  # ~, ~/..., ~user/...: a shell's home folder
            full = os.path.expanduser(value)
            how = (f"Write the full path instead, {key}={full}" if full != value else
                   f"Write the full path instead (your home folder is {os.path.expanduser('~')}), or ./{value} for a "
                   f"name that really starts with ~")
            raise LitlabError(
                f"{key}={value} starts with ~, which litlab does not expand: the shell turns ~ into your home folder "
                f"only where it stands unquoted at the start of a word, and litlab takes paths as written, so it "
                f"would make or read a folder named ~ in the current folder. {how}."
            )


def _raw(cfg: DictConfig, key: str):
    """The value of ``key`` as written (an interpolation unresolved), or None where it is missing."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
    child = node._get_node(name) if isinstance(node, DictConfig) and name in node else None
    return None if child is None else child._value()


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


# a plain reference to another key, ``${paths.log_dir}`` (not a resolver call like ``${now:%H}``)
_REFERENCE = re.compile(r"\$\{\s*([\w.\-]+)\s*\}")


def reads_clock(tree: dict, value: object, depth: int = 0) -> bool:
    """Whether the config value ``value`` (as written, from ``tree``, the unresolved config as plain
    containers) reads the clock (``${now:...}``), itself or through the keys it refers to: a
    timestamped folder is a new one at every start and on every node."""
    if not isinstance(value, str):
        return False
    if "${now:" in value.replace(" ", ""):
        return True
    if depth > 20:  # a reference cycle: Hydra refuses it later, with its own message
        return False
    for key in _REFERENCE.findall(value):
        node = tree
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if reads_clock(tree, node, depth + 1):
            return True
    return False
