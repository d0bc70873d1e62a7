"""The class probabilities of every test sample, kept for an ensemble (``litlab.ensemble_eval``),
and a fingerprint of the inputs they were scored on (``inputs_sha256``)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from litlab.callbacks.net_logits import NetLogits


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


class TestProbabilities(NetLogits):
    """Keeps ``softmax(logits)`` ``(N, C)`` and the labels ``(N,)`` of every test batch, in the order
    the test loader serves them, on the CPU in float64. The logits are those of ``pl_module.net``
    in the run's precision (divided by T where eval wrapped the net for ``temperature=``)."""

    __test__ = False  # not a pytest test class, though its name begins with Test

    def __init__(self):
        super().__init__()
        self._probabilities: list[Tensor] = []
        self._labels: list[Tensor] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._probabilities, self._labels = [], []
        self._watch(pl_module.net)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch[0], batch[1]
        logits = self._logits(pl_module.net, x, y, outputs)  # (B, C)
        self._probabilities.append(logits.double().softmax(dim=-1).cpu())
        self._labels.append(y.detach().long().cpu())

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._remove()

    def result(self) -> tuple[Tensor, Tensor]:
        """(probabilities ``(N, C)`` float64, labels ``(N,)`` long); empty where no batch ran."""
        if not self._labels:
            return torch.empty(0, 0, dtype=torch.float64), torch.empty(0, dtype=torch.long)
        return torch.cat(self._probabilities), torch.cat(self._labels)
