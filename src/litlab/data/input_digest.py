"""A fingerprint of the samples a split serves (``inputs_sha256``), by which an ensemble's members
are checked to have scored the same inputs in the same order (``ensemble_eval.check_same_samples``)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def inputs_sha256(dataset) -> str | None:
    """The sha256 of a split's raw inputs in the loader's order, before any normalization (which
    differs between members: each normalizes with its own training statistics): the bytes of a
    ``TensorSplit``'s ``x``, or the paths of a ``FileSplit``'s files. None for another dataset."""
    digest = hashlib.sha256()
    if isinstance(getattr(dataset, "x", None), Tensor):
        x = dataset.x.detach().cpu().contiguous()  # (N, ...) as read from the file
        digest.update(f"{x.dtype} {tuple(x.shape)}".encode())
        digest.update(x.view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(getattr(dataset, "files", None), list):
        digest.update("\n".join(str(f) for f in dataset.files).encode())
    else:
        return None
    return digest.hexdigest()
