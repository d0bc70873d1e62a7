"""The checks of a training run's ``data.*`` that need neither torch nor the data itself.

``ImageFolderDataModule`` and ``NpzDataModule`` refuse a missing ``data.root`` / ``data.path``
themselves, but only once torch and Lightning are imported and Hydra has made the run's folder:
``python -m litlab.train data=imagefolder`` took seconds and left a failed run folder behind.
``config_check`` runs ``check_data_given`` on each job's composed config (each swept value) of
train and lr_find first. Only litlab's two modules that read the user's files are checked, by
their ``_target_``: a class built on them may make its folder itself (``DigitsDataModule`` writes
the digits under its ``data.root`` as it prepares them), and a data module of the user's own is
left to itself. A value that cannot be read yet (an environment variable of a SLURM node) is
left to the run, as is everything that needs the files read (the class folders, the arrays), and
whether the folder or file exists for jobs that SLURM runs on other machines
(``hydra/launcher=submitit_slurm``), which may see disks this one does not.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.errors import LitlabError, check_choice, check_fraction

IMAGE_FOLDER = "litlab.data.image_folder.ImageFolderDataModule"
NPZ = "litlab.data.npz.NpzDataModule"


def check_data_given(cfg: DictConfig) -> None:
    """Refuses, as the data module would once the run began, a ``data.root`` (image folder) or
    ``data.path`` (npz) that is not set or names no folder / file, a ``data.on_bad_file`` other
    than skip or fail, and a ``data.val_fraction`` outside [0, 1)."""
    try:
        data = cfg.get("data")
        target = data.get("_target_") if isinstance(data, DictConfig) else None
        if not isinstance(target, str):
            return
        choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
        here = choices.get("hydra/launcher") != "submitit_slurm"  # the jobs read the data on this machine
        if target == IMAGE_FOLDER:
            _check_location(data, "root", "DIR, a folder holding train/<class>/ image folders (and optionally val/ "
                                          "and test/)", Path.is_dir if here else None,
                            "is not a folder. It must hold train/<class>/ image folders")
            if data.get("on_bad_file") is not None:
                check_choice("data.on_bad_file", data.get("on_bad_file"), ("skip", "fail"))
        elif target == NPZ:
            _check_location(data, "path", "FILE.npz with arrays x_train, y_train, x_test, y_test (and optionally "
                                          "x_val, y_val)", Path.is_file if here else None,
                            "does not exist or is not a file")
        else:
            return
        if data.get("val_fraction") is not None:
            check_fraction("data.val_fraction", data.get("val_fraction"))
    except OmegaConfBaseException:  # not readable here (an interpolation): the run reports it
        return


def _check_location(data: DictConfig, key: str, wanted: str, exists, problem: str) -> None:
    """``data.<key>`` is set (else: pass ``wanted``) and ``exists`` (else: ``problem``; None: not
    told here), with the words the data module uses when it finds the same."""
    value = data.get(key)
    if value is None or value == "":
        raise LitlabError(f"data.{key} is not set. Pass data.{key}={wanted}. Refused before any work (no folder "
                          f"made, no data prepared).")
    if exists is not None and not exists(Path(str(value))):
        raise LitlabError(f"data.{key}={value} {problem}. Refused before any work (no folder made, no data "
                          f"prepared).")
