"""``model.init_from``: the checkpoint a new run takes its first weights from, checked before torch is
imported. No torch here: ``litlab.train`` and ``litlab.lr_find`` run these checks with the command
line's (``config_check``, ``tuning/lr_settings``), and ``init_weights`` again as the run begins, when it
reads the file; eval and predict refuse the key (``check_not_given``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.checkpoint_paths import check_checkpoint_path
from litlab.errors import LitlabError
from litlab.tasks.frozen_layers import freezes_nothing

KEY = "model.init_from"


def init_from_value(cfg: DictConfig) -> str | None:
    """``model.init_from`` as given (a path), or None where it is unset or the model has no such key.
    Anything else than a path (a number, a list) is refused."""
    value = OmegaConf.select(cfg, KEY, default=None, throw_on_resolution_failure=False)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise LitlabError(f"{KEY} must be the path of a litlab run's checkpoint (outputs/runs/<run>/checkpoints/"
                          f"best.ckpt) or of the run's folder, got {value!r}. Leave it null to start from freshly "
                          f"initialized weights.")
    return value


def folder_checkpoints(folder: Path) -> tuple[Path, Path]:
    """The files a run's folder given as ``model.init_from`` means, in order: its
    ``checkpoints/best.ckpt``, or ``best.ckpt`` where the folder given is ``checkpoints/`` itself."""
    return folder / "checkpoints" / "best.ckpt", folder / "best.ckpt"


def folder_checkpoint(folder: Path) -> Path | None:
    """The first of ``folder_checkpoints(folder)`` that is a file, or None."""
    return next((c for c in folder_checkpoints(folder) if c.is_file()), None)


def init_checkpoint_path(value: str | Path) -> Path:
    """The training checkpoint ``model.init_from`` names: a ``.ckpt`` file, or a run's folder
    (``outputs/runs/<run>``, or its ``checkpoints/``), which means its ``checkpoints/best.ckpt``,
    the weights its test, eval and predict used. A missing file, a folder without best.ckpt, an
    exported (``.onnx``, ``.torchscript.pt``) or compressed model are refused, naming the key."""
    path = Path(value)
    if path.is_dir():
        best = folder_checkpoint(path)
        if best is not None:
            return check_checkpoint_path(best, KEY, compressed_ok=False)
        found = sorted(str(p) for folder in (path, path / "checkpoints") if folder.is_dir()
                       for p in folder.glob("*.ckpt"))
        holds = f"; it holds {', '.join(found)}, any of which {KEY} takes by its path" if found else ""
        raise LitlabError(f"{KEY}={path} is a folder without a checkpoints/best.ckpt{holds}. Give a litlab run's "
                          f"folder (outputs/runs/<run>, whose checkpoints/best.ckpt is read) or the path of one of "
                          f"its checkpoints (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt).")
    return check_checkpoint_path(path, KEY, compressed_ok=False)


def check_init_from(cfg: DictConfig) -> None:
    """The command line's check of ``model.init_from`` (each swept value too), before torch and before
    Hydra makes the run's folder. With ``ckpt_path`` the file is not read here: a resume of a run
    started from it does not read it again (it may be gone), and any other pairing is refused as
    the run begins, where the checkpoint tells which it is (``init_weights.open_init_from``)."""
    value = init_from_value(cfg)
    resuming = OmegaConf.select(cfg, "ckpt_path", default=None, throw_on_resolution_failure=False) is not None
    if value is not None and not resuming:
        init_checkpoint_path(value)


def check_not_given(cfg: DictConfig, command: str) -> None:
    """eval and predict take the weights of ``ckpt_path`` as trained: a ``model.init_from`` or a
    ``model.freeze`` that freezes something on their command line (``model.*`` keys change the stored
    run) was accepted and did nothing, or (freezing every parameter) was refused as "nothing would
    train", though they train nothing. Refused before torch, naming the key. ``model.freeze`` is let
    through where training would freeze nothing with it (``frozen_layers.freezes_nothing``: null,
    ``[]``); any other value is refused here, a blank string too, which training refuses as well."""
    value = OmegaConf.select(cfg, KEY, default=None, throw_on_resolution_failure=False)
    if value is not None:
        raise LitlabError(f"{KEY}={value}: {command} reads the weights of ckpt_path; {KEY} is read only when a run "
                          f"trains (python -m litlab.train {KEY}=PATH starts a new run from another run's weights). "
                          f"Remove {KEY} from the command.")
    freeze = OmegaConf.select(cfg, "model.freeze", default=None, throw_on_resolution_failure=False)
    if not freezes_nothing(freeze):  # model.freeze=[] / null: what eval does anyway
        shown = OmegaConf.to_container(freeze) if OmegaConf.is_config(freeze) else freeze
        shown = repr(shown) if isinstance(shown, str) else shown  # model.freeze='' rather than model.freeze=
        raise LitlabError(f"model.freeze={shown}: {command} reads the weights of ckpt_path as they were trained "
                          f"and trains nothing, so there is nothing to freeze; model.freeze is read only when a run "
                          f"trains (python -m litlab.train model.freeze=[features] trains the rest of the net). "
                          f"Remove model.freeze from the command.")
