"""Low-rank factorization: each large Linear (optionally conv) layer becomes two thin ones by SVD."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from litlab.compression.base import Compressor, Context
from litlab.compression.finetune import FineTune, train_loop
from litlab.errors import LitlabError, check_positive_int

log = logging.getLogger(__name__)

CONVS = (nn.Conv1d, nn.Conv2d)


def candidates(net: nn.Module, conv: bool, skip_last: bool, example: Tensor | None = None) -> dict[str, nn.Module]:
    """The layers to factorize by name: Linear (and conv) layers, the classifier head aside if asked.

    The head is the last of them that the forward pass of ``example`` calls (without an example,
    the last one registered): a net that defines its head first would otherwise lose a hidden
    layer instead and have its head factorized."""
    kinds = (nn.Linear, *CONVS) if conv else (nn.Linear,)
    found = {name: m for name, m in net.named_modules() if type(m) in kinds and getattr(m, "groups", 1) == 1}
    if skip_last and found:
        found.pop(_called_last(net, found, example) or list(found)[-1])
    return found


@torch.no_grad()
def _called_last(net: nn.Module, layers: dict[str, nn.Module], example: Tensor | None) -> str | None:
    """The name of the layer of ``layers`` that ``net(example)`` calls last (None without an example)."""
    if example is None:
        return None
    order: list[str] = []
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: order.append(name))
               for name, m in layers.items()]
    was_training = net.training
    try:
        net.eval()(example)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return order[-1] if order else None


def matrix_dims(layer: nn.Module) -> tuple[int, int]:
    """(rows, cols) of the layer's weight as a matrix: (out, in * kernel) for convs."""
    w = layer.weight
    return w.shape[0], w[0].numel()


def rank_for(layer: nn.Module, rank: int | None, energy: float | None) -> int:
    """The fixed ``rank``, or the smallest rank keeping ``energy`` of the squared singular values."""
    if rank is not None:
        return rank
    s = torch.linalg.svdvals(layer.weight.detach().reshape(layer.weight.shape[0], -1))
    kept = (s ** 2).cumsum(0) / (s ** 2).sum()
    return int((kept < energy).sum()) + 1


def factor_pair(layer: nn.Module, r: int) -> nn.Sequential:
    """Two layers whose product has rank ``r``: (in -> r, no bias) then (r -> out, the bias)."""
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, r, bias=False)
        second = nn.Linear(r, layer.out_features, bias=layer.bias is not None)
    else:
        conv = type(layer)
        first = conv(layer.in_channels, r, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                     dilation=layer.dilation, groups=1, bias=False)
        second = conv(r, layer.out_channels, 1, bias=layer.bias is not None)
    return nn.Sequential(first, second)


@torch.no_grad()
def factorize(layer: nn.Module, r: int) -> nn.Sequential:
    """``W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T)``: the best rank-``r`` approximation, split evenly."""
    pair = factor_pair(layer, r)
    w = layer.weight.reshape(layer.weight.shape[0], -1)  # (out, in * kernel)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:r].sqrt()
    pair[0].weight.copy_((root.view(-1, 1) * vh[:r]).reshape(pair[0].weight.shape))  # (r, in * kernel)
    pair[1].weight.copy_((u[:, :r] * root.view(1, -1)).reshape(pair[1].weight.shape))  # (out, r)
    if layer.bias is not None:
        pair[1].bias.copy_(layer.bias)
        pair[1].bias.requires_grad_(layer.bias.requires_grad)
    for part in pair:  # a frozen layer stays frozen through the fine-tuning
        part.weight.requires_grad_(layer.weight.requires_grad)
    return pair


def _example(net: nn.Module, dm) -> Tensor | None:
    """One zero sample of the data, on the net's device, to find the head by calling order."""
    if dm is None:
        return None
    param = next(net.parameters(), None)
    return torch.zeros(1, *dm.input_shape, device=param.device if param is not None else "cpu")


def replace(net: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, child, module)


def no_layer_hint(net: nn.Module, conv: bool, skip_last: bool) -> str:
    """The settings that would give ``net`` a layer to factorize, and only those: the hint suggested
    compress.conv=true when it was set, and for nets (RNNs) without convolutions."""
    tries = []
    if not conv and candidates(net, True, skip_last):
        tries.append("compress.conv=true")
    if skip_last and candidates(net, conv, False):
        tries.append("compress.skip_last=false (factorizes the classifier head)")
    if not tries and not conv and skip_last and candidates(net, True, False):
        tries.append("compress.conv=true with compress.skip_last=false")
    if tries:
        return f"Try {' or '.join(tries)}."
    return ("It has no Linear or ungrouped Conv1d/Conv2d layer at all (recurrent and other layers are not "
            "factorized); use another method, e.g. compress=prune or compress=quantize.")


class LowRank(Compressor):
    """SVD factorization of Linear (and with ``conv``, Conv1d/2d) layers, then fine-tuning.

    Args:
        rank: fixed rank of every factorized layer (``compress.rank``), or null to use ``energy``.
        energy: share of squared singular values to keep per layer (``compress.energy``), in (0, 1].
        conv: factorize convolutions too (k x k conv to r channels, then a 1x1 conv).
        skip_last: leave the classifier head (the last layer) whole.
        finetune: fine-tuning settings.
    """

    name = "lowrank"

    def __init__(self, rank: int | None = None, energy: float | None = 0.9, conv: bool = False,
                 skip_last: bool = True, finetune: FineTune | None = None, **kwargs):
        super().__init__(finetune=finetune or FineTune(), **kwargs)
        if rank is None and energy is None:
            raise LitlabError("compress.rank or compress.energy must be set (e.g. compress.rank=16 or "
                              "compress.energy=0.9).")
        self.rank = check_positive_int("compress.rank", rank) if rank is not None else None
        if energy is not None and (isinstance(energy, bool) or not isinstance(energy, (int, float))
                                   or not 0 < energy <= 1):
            raise LitlabError(f"compress.energy must be a number in (0, 1], got {energy!r}.")
        self.energy = energy
        self.conv = bool(conv)
        self.skip_last = bool(skip_last)
        self._ranks: dict[str, int] = {}

    def settings(self) -> dict:
        return {"rank": self.rank, "energy": self.energy, "conv": self.conv, "skip_last": self.skip_last,
                "ranks": self._ranks, **vars(self.finetune)}

    def check(self, net: nn.Module, dm) -> None:
        layers = candidates(net, self.conv, self.skip_last, _example(net, dm))
        if not layers:
            looked_for = "Linear" + (", Conv1d/Conv2d" if self.conv else "")
            head = "; the head left whole: compress.skip_last=true" if self.skip_last else ""
            raise LitlabError(f"compress=lowrank found no layer to factorize in {type(net).__name__} "
                              f"(looked for {looked_for}{head}). {no_layer_hint(net, self.conv, self.skip_last)}")
        if self.rank is not None:
            for name, layer in layers.items():
                limit = min(matrix_dims(layer))
                if self.rank >= limit:
                    raise LitlabError(f"compress.rank={self.rank} is not below the rank limit {limit} of layer "
                                      f"{name} {tuple(layer.weight.shape)}; factorizing it would not shrink it. "
                                      f"Use compress.rank < {limit} or compress.energy.")

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        wide = []
        for name, layer in candidates(net, self.conv, self.skip_last, _example(net, dm)).items():
            rows, cols = matrix_dims(layer)
            r = rank_for(layer, self.rank, self.energy)
            if r * (rows + cols) >= rows * cols:
                wide.append(f"{name} (rank {r} of {rows}x{cols})")
                continue  # a factorization this wide would be larger than the layer
            self._ranks[name] = r
            replace(net, name, factorize(layer, r))
        if not self._ranks:
            log.warning("compress=lowrank factorized no layer: at %s each one's factors would be larger than the "
                        "layer (%s); the 'after' model is the trained one, only fine-tuned. Lower compress.energy "
                        "or give a smaller compress.rank.", f"compress.energy={self.energy}" if self.rank is None
                        else f"compress.rank={self.rank}", ", ".join(wide))
        return train_loop(net, dm, self.finetune, ctx.seed)

    def recipe(self, compressed: nn.Module, ctx: Context) -> dict:
        return {"ranks": dict(self._ranks)}

    @classmethod
    def rebuild(cls, net: nn.Module, recipe: dict, example: Tensor) -> nn.Module:
        for name, r in recipe["ranks"].items():
            replace(net, name, factor_pair(net.get_submodule(name), r))
        return net
