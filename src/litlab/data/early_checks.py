"""The checks of a training run's ``data.*`` that need neither torch nor the data itself.

``ImageFolderDataModule`` and ``NpzDataModule`` refuse a missing ``data.root`` / ``data.path``
themselves, but only once torch and Lightning are imported and Hydra has made the run's folder:
``python -m litlab.train data=imagefolder`` took seconds and left a failed run folder behind.
``config_check`` runs ``check_data_given`` on each job's composed config (each swept value) of
train and lr_find first. Only litlab's two modules that read the user's files are checked, by
their ``_target_``: a class built on them may make its folder itself (``DigitsDataModule`` writes
the digits under its ``data.root`` as it prepares them), and a data module of the user's own is
left to itself. A value that cannot be read yet (an environment variable of a SLURM node) is
left to the run, as is everything that needs the files opened (the images, the arrays; an image
folder's train/ is listed: its class folders, none empty), and whether the folder or file exists
(and its listing) for jobs that SLURM runs on other machines (a sweep, ``-m``, with
``hydra/launcher=submitit_slurm`` or a site's launcher file built on it), which may see disks this
one does not; a single run ignores the launcher and is checked here.
A search over the location (``hydra.sweeper.params``: Optuna's ``choice(...)``, a basic
sweeper's ``a,b`` in an experiment file) is not in the composed config: each value it lists is
checked instead, unless the command line sets it too (the jobs then get that value).
``--cfg job`` / ``--info`` print the config and run nothing, and litlab's own messages send
users there to see a node's keys: only the values' forms are checked.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.config_flags import shows_config
from litlab.data.data_settings import check_augment
from litlab.data.image_folder_settings import check_image_folder_settings, check_train_folders
from litlab.errors import LitlabError, check_fraction
from litlab.slurm_launcher import is_slurm_launcher

IMAGE_FOLDER = "litlab.data.image_folder.ImageFolderDataModule"
NPZ = "litlab.data.npz.NpzDataModule"
# each module's location key, what to pass, how it must exist, and what is wrong where it does not
_LOCATIONS = {
    IMAGE_FOLDER: ("root", "DIR, a folder holding train/<class>/ image folders (and optionally val/ and test/)",
                   Path.is_dir, "is not a folder. It must hold train/<class>/ image folders"),
    NPZ: ("path", "FILE.npz with arrays x_train, y_train, x_test, y_test (and optionally x_val, y_val)",
          Path.is_file, "does not exist or is not a file"),
}


def check_data_given(cfg: DictConfig, argv: list[str] = (), multirun: bool = False) -> None:
    """Refuses, as the data module would once the run began, a ``data.root`` (image folder) or
    ``data.path`` (npz) that is not set or names no folder / file, a ``data.on_bad_file`` other
    than skip or fail, and a ``data.val_fraction`` outside [0, 1); for the image folder every value
    its module checks without files (``image_folder_settings``, ``data.augment``) and the layout of
    each ``data.root``'s train/ folder (listed, no image opened). ``argv``: the command line
    (``--cfg``/``--info`` run nothing: the location is not needed); ``multirun``: a sweep, whose
    ``hydra.sweeper.params`` may give the location."""
    try:
        data = cfg.get("data")
        target = data.get("_target_") if isinstance(data, DictConfig) else None
        if not isinstance(target, str) or target not in _LOCATIONS:
            return
        key, wanted, exists, problem = _LOCATIONS[target]
        # the jobs read the data on this machine: a single run is one, whatever hydra/launcher says
        here = not (multirun and is_slurm_launcher(cfg))
        values = []
        if not shows_config(list(argv)):
            values = _locations(cfg, key, multirun, argv)
            for value in values:
                _check_location(value, key, wanted, exists if here else None, problem)
        if target == IMAGE_FOLDER:
            _check_image_folder_values(data)
        elif data.get("val_fraction") is not None:
            check_fraction("data.val_fraction", data.get("val_fraction"))
        if target == IMAGE_FOLDER and here:
            for value in values:  # each there (checked above): its train/ folder's layout, no image opened
                check_train_folders(Path(str(value)))
    except OmegaConfBaseException:  # not readable here (an interpolation): the run reports it
        return


def _check_image_folder_values(data: DictConfig) -> None:
    """The image folder's values that need no file, by the data module's own checks: those of the
    keys given (absent ones take the module's defaults) and ``data.augment``."""
    given = {k: _plain(data.get(k)) for k in ("image_size", "channels", "val_fraction", "on_bad_file", "in_memory",
                                               "memory_limit_mb", "mean", "std") if k in data}
    check_image_folder_settings(**given)
    check_augment(_plain(data.get("augment")))


def _plain(value):
    """A config value as the data module receives it: lists and mappings as plain ones."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _locations(cfg: DictConfig, key: str, multirun: bool, argv=()) -> list:
    """The values of ``data.<key>`` the jobs will have: the composed one, or in a sweep whose
    ``hydra.sweeper.params`` searches it, each value listed there (a basic sweeper's ``a,b``,
    Optuna's ``choice(a, b)``); none where they cannot be listed (a glob, a value still to be
    resolved), which the run checks. A ``data.<key>=X`` on the command line (``argv``) wins over
    the search: the basic sweeper applies it after the params, Optuna drops the searched entry for
    a fixed value; the composed value (X) is then the one the jobs get."""
    searched = (OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}) if multirun else {}
    typed = {a.split("=", 1)[0].lstrip("+") for a in argv if "=" in a and not a.startswith(("-", "~"))}
    for name, space in searched.items():
        if str(name).lstrip("+") != f"data.{key}" or f"data.{key}" in typed:
            continue
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import ChoiceSweep
        from hydra.errors import HydraException

        try:
            override = OverridesParser.create().parse_override(f"data.{key}={space}")
        except HydraException:  # refused with its own words by the sweeper's checks
            return []
        if override.is_sweep_override() and not isinstance(override.value(), ChoiceSweep):
            return []
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        return [v for v in values if "${" not in str(v)]  # an interpolation is resolved by the job
    return [cfg.data.get(key)]


def _check_location(value, key: str, wanted: str, exists, problem: str) -> None:
    """``data.<key>`` (``value``) is set (else: pass ``wanted``) and ``exists`` (else: ``problem``;
    None: not told here), with the words the data module uses when it finds the same."""
    if value is None or value == "":
        raise LitlabError(f"data.{key} is not set. Pass data.{key}={wanted}. Refused before any work (no folder "
                          f"made, no data prepared).")
    if exists is not None and not exists(Path(str(value))):
        raise LitlabError(f"data.{key}={value} {problem}. Refused before any work (no folder made, no data "
                          f"prepared).")
