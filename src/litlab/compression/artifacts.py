"""The compressed-model file: weights (sparse or int8 where that is smaller) plus what rebuilds the net.

On disk, a plain dict that ``torch.load(weights_only=True)`` reads (``compact_storage.py``)::

    format       "litlab-compressed/2"
    meta         uint8 tensor: zlib-compressed JSON of the fields below, tensors replaced by where
                 they lie in ``blobs``
    blobs        {dtype name: 1-D tensor}: every tensor of that dtype, concatenated

``read`` turns it back into (and version 1 files already are)::

    litlab       the training run's record (config, data description), like a checkpoint's
    compression  {"target": method class, "method": name, "net": net config, "recipe": {...}}
    state_dict   dense entries of the net's state dict
    sparse       mostly-zero entries, packed (sparse_storage.py)

The "before" (dense) and the compressed file use this same layout, so their sizes compare fairly.
No optimizer state is stored. ``python -m litlab.eval ckpt_path=FILE`` evaluates such a file.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from litlab.checkpoint_files import load_checkpoint
from litlab.compression import compact_storage, quant_backend, sparse_storage
from litlab.errors import LitlabError

FORMAT = "litlab-compressed/2"
# version 1 pickled the record and every tensor as they were; it is still read
_FORMATS = ("litlab-compressed/1", FORMAT)
_RNN_KEY = "__int8_rnn__."


def is_artifact(ckpt: dict) -> bool:
    """Whether a loaded file is a compressed-model file rather than a training checkpoint."""
    return isinstance(ckpt, dict) and ckpt.get("format") in _FORMATS


def read(stored: dict) -> dict:
    """A loaded artifact with its record, settings and tensors unpacked (the layout above)."""
    if stored.get("format") != FORMAT:
        return stored
    meta = compact_storage.decode_json(stored["meta"])
    reader = compact_storage.Reader(stored["blobs"])
    return {"format": FORMAT, "litlab": meta["litlab"], "compression": meta["compression"],
            "state_dict": {k: reader.value(s) for k, s in meta["state_dict"].items()},
            "sparse": {k: reader.value(s) for k, s in meta["sparse"].items()}}


def build_net(net_cfg: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A fresh float net from a ``model.net``-style partial config."""
    make = hydra.utils.instantiate(OmegaConf.create(net_cfg))
    return make(input_shape=tuple(input_shape), num_classes=num_classes)


def storable_state(net: nn.Module) -> dict:
    """``net.state_dict()`` with int8 LSTM/GRU weights unpacked into plain tensors."""
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if quant_backend.is_dynamic_rnn(module):
            prefix = f"{name}." if name else ""
            for key in [k for k in state if k.startswith(f"{prefix}_all_weight_values.")]:
                del state[key]
            for key, t in quant_backend.rnn_tensors(module).items():
                state[f"{_RNN_KEY}{prefix}{key}"] = t
    return state


def save(path: Path, net: nn.Module, record: dict, method, recipe: dict, net_cfg: dict) -> dict:
    """Writes the artifact of ``net``; returns the state dict that was stored (for counting)."""
    state = storable_state(net)
    dense = {k: v for k, v in state.items() if not (isinstance(v, torch.Tensor) and sparse_storage.worth_packing(v))}
    sparse = {k: sparse_storage.pack(v) for k, v in state.items() if k not in dense}
    writer = compact_storage.Writer()
    meta = {
        "litlab": record,
        "compression": {"target": f"{type(method).__module__}.{type(method).__qualname__}", "method": method.name,
                        "net": recipe.get("net", net_cfg), "recipe": recipe, "cpu_only": method.cpu_only},
        "state_dict": {k: writer.spec(v) for k, v in dense.items()},
        "sparse": {k: writer.spec(v) for k, v in sparse.items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "meta": compact_storage.encode_json(meta), "blobs": writer.blobs()}, path)
    return state


def _method_class(target: str, path: Path):
    if not target.startswith("litlab.compression."):
        raise LitlabError(f"ckpt_path={path} names a compression method outside litlab ({target}); "
                          f"only files written by litlab compression can be loaded.")
    return hydra.utils.get_class(target)


def load_net(artifact: dict, path: Path) -> nn.Module:
    """The compressed net of a loaded artifact, weights in place, in eval mode."""
    info = artifact["compression"]
    data = artifact["litlab"]["data"]
    net = build_net(info["net"], tuple(data["input_shape"]), data["num_classes"])
    example = torch.zeros(1, *data["input_shape"])
    net = _method_class(info["target"], path).rebuild(net.eval(), info["recipe"], example)
    state = dict(artifact["state_dict"])
    state.update({k: sparse_storage.unpack(v) for k, v in artifact.get("sparse", {}).items()})
    rnn = {k[len(_RNN_KEY):]: state.pop(k) for k in [k for k in state if k.startswith(_RNN_KEY)]}
    for name, module in net.named_modules():
        if quant_backend.is_dynamic_rnn(module):
            prefix = f"{name}." if name else ""
            quant_backend.set_rnn_tensors(module, {k[len(prefix):]: v for k, v in rnn.items() if k.startswith(prefix)})
    # the int8 LSTM/GRU now hold their weights; their packed entries are loaded back as they are
    state.update({k: v for k, v in net.state_dict().items() if "._all_weight_values." in k or
                  k.startswith("_all_weight_values.")})
    state = OrderedDict(state)
    # module versions tell int8 layers how their entries are laid out; they are those of the rebuilt net
    state._metadata = net.state_dict()._metadata  # type: ignore[attr-defined]
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LitlabError(f"ckpt_path={path} does not fit the net it describes (missing {missing[:2]}, "
                          f"unexpected {unexpected[:2]}). The file may come from another litlab version.")
    return net.eval()


def copy_net(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net)


def trained_net(model, metrics: dict) -> nn.Module:
    """A float32 CPU copy of the trained net with the best checkpoint's weights (those test/acc
    measured). Compression works in float32 whatever ``trainer.precision`` trained in (64,
    bf16-true): the data's preprocessing gives float32 batches, and int8 kernels take float32."""
    # every parameter trainable: compression's fine-tuning recovers the whole net (model.freeze is training's)
    net = copy_net(model.net).cpu().float().requires_grad_(True)
    best = metrics.get("best_ckpt")
    if best:
        state = load_checkpoint(best, key="best_ckpt")["state_dict"]
        net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    return net.eval()
