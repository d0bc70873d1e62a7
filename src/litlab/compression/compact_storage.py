"""Few-entry storage of a state dict: one flat tensor per dtype plus a compressed JSON index.

``torch.save`` writes every tensor as its own zip entry (a header, a central-directory record and
padding to 64 bytes, ~150 bytes each), pickles every key, and keeps the per-channel scales and
zero-points of int8 weights as float64/int64. On the small default nets that overhead is a large
share of the file. Here all tensors of one dtype are concatenated into one 1-D tensor (``blobs``)
and everything else (names, shapes, offsets, quantization parameters, the run record) goes into
one zlib-compressed JSON document stored as a uint8 tensor, so the file still loads with
``torch.load(weights_only=True)``.

Nothing is rounded: per-channel scales are stored as float32 only when that is exact (they come
from float32 observers), zero-points are left out only when they are all zero.
"""

from __future__ import annotations

import json
import zlib

import torch
from torch import Tensor

_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int16,
    torch.int32, torch.int64, torch.bool)}
# quantized dtype -> dtype of its integer representation
_QDTYPES = {torch.qint8: torch.int8, torch.quint8: torch.uint8, torch.qint32: torch.int32}


class Writer:
    """Collects tensors into per-dtype blobs; ``spec`` returns the JSON-able description of a value."""

    def __init__(self) -> None:
        self._parts: dict[str, list[Tensor]] = {}
        self._sizes: dict[str, int] = {}

    def _tensor(self, t: Tensor) -> dict:
        name = str(t.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise TypeError(f"cannot store a {t.dtype} tensor")
        flat = t.detach().cpu().contiguous().reshape(-1)
        offset = self._sizes.get(name, 0)
        self._parts.setdefault(name, []).append(flat)
        self._sizes[name] = offset + flat.numel()
        return {"blob": name, "at": offset, "shape": list(t.shape)}

    def _quantized(self, t: Tensor) -> dict:
        spec = {"qdtype": str(t.dtype).removeprefix("torch."), "values": self._tensor(t.int_repr())}
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return {**spec, "q": "per_tensor", "scale": float(t.q_scale()), "zero_point": int(t.q_zero_point())}
        scales = t.q_per_channel_scales()  # float64 in PyTorch
        narrow = scales.float()
        zero_points = t.q_per_channel_zero_points()  # int64 in PyTorch
        return {**spec, "q": "per_channel", "axis": int(t.q_per_channel_axis()),
                "scales": self._tensor(narrow if torch.equal(narrow.double(), scales) else scales),
                "zero_points": None if not zero_points.any() else self._tensor(zero_points.int())}

    def spec(self, value):
        """The JSON description of a state-dict value (tensor, int8 tensor, tuple, dict, dtype, plain)."""
        if isinstance(value, Tensor):
            return self._quantized(value) if value.is_quantized else self._tensor(value)
        if isinstance(value, (tuple, list)):
            return {"tuple" if isinstance(value, tuple) else "list": [self.spec(v) for v in value]}
        if isinstance(value, dict):
            return {"dict": {str(k): self.spec(v) for k, v in value.items()}}
        if isinstance(value, torch.dtype):
            return {"torch_dtype": str(value).removeprefix("torch.")}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"plain": value}
        raise TypeError(f"cannot store a {type(value).__name__}")

    def blobs(self) -> dict[str, Tensor]:
        return {name: torch.cat(parts) for name, parts in self._parts.items()}


class Reader:
    """Inverse of ``Writer``: rebuilds values from their specs and the loaded blobs."""

    def __init__(self, blobs: dict[str, Tensor]) -> None:
        self._blobs = blobs

    def _tensor(self, spec: dict) -> Tensor:
        numel = 1
        for s in spec["shape"]:
            numel *= s
        at = spec["at"]
        return self._blobs[spec["blob"]][at: at + numel].clone().view(spec["shape"])

    def _quantized(self, spec: dict) -> Tensor:
        values = self._tensor(spec["values"])
        if spec["q"] == "per_tensor":
            return torch._make_per_tensor_quantized_tensor(values, spec["scale"], spec["zero_point"])
        scales = self._tensor(spec["scales"]).double()
        zp = spec["zero_points"]
        zero_points = torch.zeros(len(scales), dtype=torch.int64) if zp is None else self._tensor(zp).long()
        return torch._make_per_channel_quantized_tensor(values, scales, zero_points, spec["axis"])

    def value(self, spec: dict):
        if "blob" in spec:
            return self._tensor(spec)
        if "q" in spec:
            return self._quantized(spec)
        if "tuple" in spec:
            return tuple(self.value(s) for s in spec["tuple"])
        if "list" in spec:
            return [self.value(s) for s in spec["list"]]
        if "dict" in spec:
            return {k: self.value(s) for k, s in spec["dict"].items()}
        if "torch_dtype" in spec:
            return getattr(torch, spec["torch_dtype"])
        return spec["plain"]


def encode_json(doc: dict) -> Tensor:
    """A JSON-able dict as zlib-compressed UTF-8 bytes in a uint8 tensor."""
    raw = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), level=9)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def decode_json(t: Tensor) -> dict:
    return json.loads(zlib.decompress(t.numpy().tobytes()).decode())
