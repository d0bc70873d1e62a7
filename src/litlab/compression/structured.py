"""Channel and neuron pruning that removes them for real: a narrower net of the same class.

Supported nets: ``litlab.models.mlp.MLP`` (hidden neurons) and ``litlab.models.cnn.CNN`` (conv
channels, ranked by batch-norm scale, and the hidden head neurons). The pruned net is built
from the run's ``model.net`` config with smaller widths, so it saves and loads like any net.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from litlab.compression.artifacts import build_net
from litlab.compression.base import Compressor, Context
from litlab.compression.finetune import FineTune, train_loop
from litlab.errors import LitlabError, check_fraction
from litlab.models.cnn import CNN
from litlab.models.mlp import MLP


def keep_count(width: int, amount: float) -> int:
    return max(1, math.ceil(width * (1 - amount)))


def top(scores: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` largest scores, in their original order."""
    return scores.topk(count).indices.sort().values


def neuron_scores(w_in: Tensor, w_out: Tensor) -> Tensor:
    """Importance of hidden neurons: norm of their incoming row times norm of their outgoing column."""
    return w_in.norm(dim=1) * w_out.norm(dim=0)


def copy_linear(dst: nn.Linear, src: nn.Linear, rows: Tensor | None, cols: Tensor | None) -> None:
    w = src.weight.detach()
    w = w[rows] if rows is not None else w
    dst.weight.data.copy_(w[:, cols] if cols is not None else w)
    if src.bias is not None:
        dst.bias.data.copy_(src.bias.detach()[rows] if rows is not None else src.bias.detach())


def shrink_mlp(net: MLP, amount: float, net_cfg: dict, shape, classes: int) -> tuple[nn.Module, dict]:
    linears = [m for m in net.layers if isinstance(m, nn.Linear)]
    keeps = [top(neuron_scores(a.weight.detach(), b.weight.detach()), keep_count(a.out_features, amount))
             for a, b in zip(linears[:-1], linears[1:])]
    new_cfg = {**net_cfg, "hidden_sizes": [len(k) for k in keeps]}
    small = build_net(new_cfg, shape, classes)
    new_linears = [m for m in small.layers if isinstance(m, nn.Linear)]
    rows = [*keeps, None]
    cols = [None, *keeps]
    for dst, src, r, c in zip(new_linears, linears, rows, cols):
        copy_linear(dst, src, r, c)
    return small, new_cfg


def _copy_block(dst: nn.Sequential, src: nn.Sequential, out_keep: Tensor, in_keep: Tensor | None) -> None:
    conv, bn = src[0], src[1]
    w = conv.weight.detach()[out_keep]  # (C_out', C_in, k...)
    dst[0].weight.data.copy_(w[:, in_keep] if in_keep is not None else w)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst[1], name).data.copy_(getattr(bn, name).detach()[out_keep])


def shrink_cnn(net: CNN, amount: float, net_cfg: dict, shape, classes: int) -> tuple[nn.Module, dict]:
    blocks = [m for m in net.features if isinstance(m, nn.Sequential)]
    keeps = [top(b[1].weight.detach().abs(), keep_count(b[1].num_features, amount)) for b in blocks]
    head = [m for m in net.head if isinstance(m, nn.Linear)]
    hidden_keep = None
    if len(head) == 2:
        hidden_keep = top(neuron_scores(head[0].weight.detach(), head[1].weight.detach()),
                          keep_count(head[0].out_features, amount))
    new_cfg = {**net_cfg, "channels": [len(k) for k in keeps],
               "hidden_size": len(hidden_keep) if hidden_keep is not None else 0}
    small = build_net(new_cfg, shape, classes)
    small_blocks = [m for m in small.features if isinstance(m, nn.Sequential)]
    for i, (dst, src) in enumerate(zip(small_blocks, blocks)):
        _copy_block(dst, src, keeps[i], keeps[i - 1] if i else None)
    small_head = [m for m in small.head if isinstance(m, nn.Linear)]
    if hidden_keep is not None:
        copy_linear(small_head[0], head[0], hidden_keep, keeps[-1])
        copy_linear(small_head[1], head[1], None, hidden_keep)
    else:
        copy_linear(small_head[0], head[0], None, keeps[-1])
    return small, new_cfg


SHRINKERS = {MLP: shrink_mlp, CNN: shrink_cnn}


class StructuredPrune(Compressor):
    """Removes ``amount`` of the channels/neurons of every hidden layer, then fine-tunes.

    Args:
        amount: share of channels or neurons removed per layer (``compress.amount``), in (0, 1).
        finetune: fine-tuning settings.
    """

    name = "prune_structured"

    def __init__(self, amount: float = 0.5, finetune: FineTune | None = None, **kwargs):
        super().__init__(finetune=finetune or FineTune(), **kwargs)
        self.amount = check_fraction("compress.amount", amount, allow_zero=False)
        self._net_cfg: dict | None = None

    def settings(self) -> dict:
        return {"amount": self.amount, **vars(self.finetune)}

    def check(self, net: nn.Module, dm) -> None:
        if type(net) not in SHRINKERS:
            raise LitlabError(
                f"compress=prune_structured removes channels of litlab.models.mlp.MLP and litlab.models.cnn.CNN "
                f"only (model=mlp or model=cnn); this model.net is {type(net).__module__}.{type(net).__name__}. "
                f"Use compress=prune (unstructured) for other nets.")
        if isinstance(net, MLP) and sum(isinstance(m, nn.Linear) for m in net.layers) < 2:
            raise LitlabError("compress=prune_structured needs hidden layers; model.net.hidden_sizes is empty.")

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        with torch.no_grad():
            small, self._net_cfg = SHRINKERS[type(net)](net, self.amount, copy.deepcopy(ctx.net_cfg),
                                                        ctx.input_shape, ctx.num_classes)
        return train_loop(small, dm, self.finetune, ctx.seed)

    def recipe(self, compressed: nn.Module, ctx: Context) -> dict:
        return {"net": self._net_cfg}
