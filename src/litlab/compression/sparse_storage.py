"""Compact storage of mostly-zero tensors: a bit per element saying "nonzero" plus the nonzero values.

At 90% zeros a float32 weight takes 1/8 + 0.1 * 4 = 0.525 bytes per element instead of 4
(13%), which is what makes a pruned artifact really smaller on disk.
"""

from __future__ import annotations

import torch
from torch import Tensor

# below this share of zeros, the mask costs more than it saves
MIN_ZERO_FRACTION = 0.3
MIN_NUMEL = 256
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def worth_packing(t: Tensor) -> bool:
    return t.is_floating_point() and t.numel() >= MIN_NUMEL and float((t == 0).float().mean()) >= MIN_ZERO_FRACTION


def pack(t: Tensor) -> dict:
    """``{"shape", "mask", "values"}``: the mask as packed bits (uint8), the nonzeros in order."""
    flat = t.detach().reshape(-1)
    nonzero = flat != 0
    padded = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.uint8)
    padded[: flat.numel()] = nonzero.to(torch.uint8)
    mask = (padded.view(-1, 8) * _BITS).sum(dim=1).to(torch.uint8)  # (ceil(N/8),)
    return {"shape": list(t.shape), "mask": mask, "values": flat[nonzero].clone()}


def unpack(packed: dict) -> Tensor:
    """Inverse of ``pack``: the dense tensor."""
    shape = packed["shape"]
    values = packed["values"]
    numel = 1
    for s in shape:
        numel *= s
    bits = (packed["mask"].view(-1, 1) & _BITS.view(1, 8)) != 0  # (ceil(N/8), 8)
    nonzero = bits.reshape(-1)[:numel]
    flat = torch.zeros(numel, dtype=values.dtype)
    flat[nonzero] = values
    return flat.view(shape)
