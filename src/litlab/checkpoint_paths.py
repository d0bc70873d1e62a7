"""What a checkpoint path must be before it is read: a file that exists, is not an exported model
(nor a compressed one where a training checkpoint is needed) and can be opened. No torch here:
``litlab.eval``, ``litlab.predict`` and ``litlab.train`` check their ``ckpt_path`` with them before
they import torch and Lightning (seconds), and ``checkpoint_files.load_checkpoint`` runs them on
every file it reads. A distillation teacher (``compress.teacher_ckpt``) is checked only there,
once the run has begun (torch imported, data set up): distillation's own check loads it before
training."""

from __future__ import annotations

import json
import pickletools
import zipfile
import zlib
from itertools import islice
from pathlib import Path

from litlab.errors import LitlabError

# how a compressed model's ``format`` begins (``compression/artifacts.py``)
COMPRESSED_FORMAT = "litlab-compressed/"


def check_checkpoint_path(path: str | Path, key: str = "ckpt_path", compressed_ok: bool = True) -> Path:
    """``path`` as a Path, or a LitlabError naming ``key`` when it is a folder, missing, an exported
    model or a file this process cannot open. ``compressed_ok``: whether a compressed model
    (``compressed/<method>.pt``) is also accepted (eval, predict), or only a training checkpoint
    (resuming, a teacher): a compressed model is then refused too (``compressed_method``)."""
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
    if not compressed_ok:
        method = compressed_method(path)
        if method is not None:
            raise compressed_refused(path, key, method)
    return path


def compressed_refused(path: str | Path, key: str, method: str) -> LitlabError:
    """The error for a compressed model (of ``method``; "" where unknown) given where a training
    checkpoint is needed: here before torch, and by ``load_checkpoint`` for one told only once loaded."""
    named = f" ({method})" if method else ""
    return LitlabError(f"{key}={path} is a compressed model{named}, which eval and predict take; here a training "
                       f"checkpoint is needed: the checkpoints/best.ckpt or last.ckpt of the run that wrote it.")


def saved_pickle(archive: zipfile.ZipFile) -> str | None:
    """The member of a ``torch.save`` zip archive that pickles the saved object (``<name>/data.pkl``;
    the tensors' bytes are other members), or None where it has none."""
    return next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)


def compressed_method(path: Path) -> str | None:
    """The method (``prune``, ...) of the compressed-model file ``path``, "" where it is one whose
    method could not be read; None for any other file. Told without torch, which ``train`` imports
    only after its checks (seconds): ``torch.save`` writes a zip archive whose ``<name>/data.pkl``
    pickles the saved dict, and a compressed model's begins with ``format: "litlab-compressed/<n>"``
    (a training checkpoint has no ``format``). Only the pickle's first opcodes are read
    (``pickletools``, which runs nothing); the method is in the first tensor, ``meta`` (version 2)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = saved_pickle(archive)
            if pickled is None:
                return None
            with archive.open(pickled) as file:
                # the dict's first key and value, then the meta tensor's persistent id ('storage', type, key, ...)
                words = [arg for _, arg, _ in islice(pickletools.genops(file), 24) if isinstance(arg, str)]
            if words[:1] != ["format"] or not words[1].startswith(COMPRESSED_FORMAT):
                return None
            return _method_of(archive, pickled.removesuffix("data.pkl"), words)
    except Exception:  # not a zip, not a pickle, ...: not told here; torch.load says what it is
        return None


def _method_of(archive: zipfile.ZipFile, prefix: str, words: list[str]) -> str:
    """The method of a compressed model from its ``meta`` tensor (``compact_storage.encode_json``:
    zlib-compressed JSON, its bytes the archive's ``data/<key>``); "" where it cannot be read
    (version 1 kept the record in the pickle)."""
    try:
        key = words[words.index("storage", words.index("meta")) + 2]
        meta = json.loads(zlib.decompress(archive.read(f"{prefix}data/{key}")))
        return str(meta["compression"]["method"])
    except (ValueError, IndexError, KeyError, TypeError, OSError, zlib.error):
        return ""
