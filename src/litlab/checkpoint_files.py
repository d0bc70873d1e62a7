"""Reading litlab checkpoints safely (``weights_only``) and checking they fit the model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from litlab.checkpoint_paths import check_checkpoint_path, compressed_refused
from litlab.errors import LitlabError


def load_checkpoint(path: str | Path, key: str = "ckpt_path", compressed_ok: bool = True) -> dict:
    """Loads a checkpoint with ``weights_only=True`` (no arbitrary code runs from the file).

    Raises a LitlabError naming ``key`` when the file is missing, corrupt or not litlab's.
    ``compressed_ok``: whether a compressed model (``compressed/<method>.pt``) is also accepted
    (eval, predict), or only a training checkpoint (resuming, a teacher).
    """
    path = check_checkpoint_path(path, key, compressed_ok)  # before torch: see checkpoint_paths
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, wrong format, unsafe pickle
        reason = _unreadable_because(str(e))
        best = path.with_name("best.ckpt")
        other = (f" The run's {best.name} beside it may be intact: {key}={best} reads that one (a resume from it "
                 f"trains the epochs after it again)." if path.name == "last.ckpt" and best.is_file() else "")
        raise LitlabError(f"{key}={path} could not be read as a checkpoint ({type(e).__name__}: {reason}). The "
                          f"file may be truncated or corrupt, or not a checkpoint; litlab loads only tensors and "
                          f"plain values from it (weights_only), so no code in a file runs.{other}") from None
    if isinstance(ckpt, dict) and str(ckpt.get("format", "")).startswith("litlab-compressed/"):
        from litlab.compression.artifacts import read  # compressed-model files store their record packed

        ckpt = read(ckpt)
    if not compressed_ok and isinstance(ckpt, dict) and "compression" in ckpt and "litlab" in ckpt:
        # one check_checkpoint_path could not tell without torch (a file torch.save wrote otherwise)
        raise compressed_refused(path, key, ckpt["compression"].get("method"))
    if not isinstance(ckpt, dict) or "litlab" not in ckpt or "state_dict" not in ckpt:
        raise LitlabError(f"{key}={path} is not a litlab checkpoint (it lacks the 'litlab' run record). "
                          f"Use a checkpoint from a litlab run's checkpoints/ folder.")
    return ckpt


def _unreadable_because(message: str) -> str:
    """The reason in torch's error for a file it could not load. Its weights-only refusals begin by
    suggesting ``weights_only=False``, advice for trusted files only, which is left out."""
    if "Unsupported global" in message:  # a pickled object of a class other than tensors and plain values
        name = message.split("Unsupported global:", 1)[1].split()[1] if "Unsupported global:" in message else ""
        return f"it holds objects other than tensors and plain values{f' ({name})' if name else ''}"
    if "WeightsUnpickler error:" in message:
        return message.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0][:200]
    first = message.splitlines()[0] if message else ""
    return first if len(first) <= 200 else first[:200].rsplit(" ", 1)[0] + " ..."


def check_fits(model: nn.Module, state_dict: dict, path: str | Path, key: str = "ckpt_path") -> None:
    """The checkpoint's weights must match the model's names and shapes exactly."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} weight(s) such as {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown weight(s) such as {unexpected[0]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of other shape, e.g. {k}: {tuple(state_dict[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model")
        raise LitlabError(f"{key}={path} belongs to a different model: {'; '.join(parts)}. Use the same "
                          f"model=... and model.net.* settings as the run that wrote it.")
