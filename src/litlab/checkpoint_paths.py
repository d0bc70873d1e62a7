"""What a checkpoint path must be before it is read: a file that exists, is not an exported model
and can be opened. No torch here: ``litlab.eval`` and ``litlab.predict`` run these checks before
they import torch and Lightning (seconds), and ``checkpoint_files.load_checkpoint`` runs them too."""

from __future__ import annotations

from pathlib import Path

from litlab.errors import LitlabError


def check_checkpoint_path(path: str | Path, key: str = "ckpt_path", compressed_ok: bool = True) -> Path:
    """``path`` as a Path, or a LitlabError naming ``key`` when it is a folder, missing, an exported
    model or a file this process cannot open. ``compressed_ok``: whether a compressed model
    (``compressed/<method>.pt``) is also accepted (eval, predict), or only a training checkpoint
    (resuming, a teacher)."""
    path = Path(path)
    wanted = "a litlab run's checkpoint (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt)"
    if compressed_ok:
        wanted += " or compressed model (outputs/runs/<run>/compressed/<method>.pt)"
    if path.is_dir():
        found = sorted(str(p) for folder in (path, path / "checkpoints") if folder.is_dir()
                       for p in folder.glob("*.ckpt"))
        hint = f"; it holds {', '.join(found)}" if found else ""
        raise LitlabError(f"{key}={path} is a folder, not a file{hint}. Give the path of {wanted}.")
    if not path.is_file():
        raise LitlabError(f"{key}={path} does not exist. Give the path of {wanted}.")
    if path.suffix.lower() == ".onnx" or path.name.endswith(".torchscript.pt"):
        raise LitlabError(f"{key}={path} is an exported model (export/), which runs on its own in onnxruntime or "
                          f"torch.jit.load. litlab reads its checkpoints (checkpoints/*.ckpt) and compressed "
                          f"models (compressed/*.pt).")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:  # a file of another user, or on a mount this process cannot read
        raise LitlabError(f"{key}={path} cannot be opened for reading ({e.strerror or e}). Give the path of {wanted} "
                          f"that this process can read.") from None
    return path
