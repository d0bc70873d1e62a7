"""The class weights a task's training loss applies (``model.class_weights``), held apart from the
task: resolved from the training split when fit starts, kept in checkpoints, taken back by a resume.

The weights are computed and checked by ``litlab.class_weights`` (no torch there); this holds them
as the tensor ``F.cross_entropy`` takes. A plain object, not a module buffer: DDP would broadcast a
buffer before every forward, and the net's ``state_dict`` stays as it is without weights.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from litlab import class_weights as weighting

log = logging.getLogger(__name__)

# the checkpoint key of the weights the training loss applied (None: unweighted)
CHECKPOINT_KEY = "class_weights"


class LossWeights:
    """``model.class_weights`` of a task with ``num_classes`` outputs: ``setting`` as given (None,
    ``balanced`` or a list, checked here), ``weights`` the list applied (None: plain cross-entropy,
    and for ``balanced`` until ``resolve`` has counted the training labels)."""

    def __init__(self, setting: list[float] | str | None, num_classes: int):
        self.setting = weighting.check_setting(setting, num_classes)
        self.num_classes = num_classes
        self.weights: list[float] | None = None
        self._tensor: Tensor | None = None
        if self.setting != weighting.BALANCED:
            self.use(self.setting)

    def use(self, weights: list[float] | None) -> None:
        """Applies these weights per class from now on (None: unweighted)."""
        self.weights = None if weights is None else [float(w) for w in weights]
        self._tensor = None if weights is None else torch.tensor(self.weights, dtype=torch.float32)

    def tensor(self, logits: Tensor) -> Tensor | None:
        """The weights ``(num_classes,)`` for ``F.cross_entropy(logits, ...)``, or None: on the
        logits' device and, outside autocast (which computes the loss in float32 itself), in their
        dtype (``*-true`` precisions), as torch takes no other. Moved once, then kept there."""
        weight = self._tensor
        if weight is None or (weight.device == logits.device and weight.dtype == logits.dtype):
            return weight
        dtype = weight.dtype if torch.is_autocast_enabled(logits.device.type) else logits.dtype
        self._tensor = weight = weight.to(device=logits.device, dtype=dtype)
        return weight

    def resolve(self, dm) -> None:
        """``balanced``: the weights of the training split's labels, counted from the data module's
        whole split (on every DDP rank the same, not a rank's shard); other settings are set already."""
        if self.setting != weighting.BALANCED:
            return
        self.use(weighting.resolve_on_data(weighting.BALANCED, dm, self.num_classes))

    def log_applied(self) -> None:
        """Says in the log which weights the training loss applies (where it applies any)."""
        if self.weights is not None:
            given = "=balanced" if self.setting == weighting.BALANCED else ""
            log.info("class weights of the training loss (%s%s): %s", weighting.KEY, given,
                     weighting.describe(self.weights))

    def save(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.weights

    def restore(self, checkpoint: dict, speaks: bool = True) -> None:
        """A checkpoint's weights go on being applied: a resumed run keeps one objective, whatever
        this command's setting gives now (a warning where it differs, from the rank that ``speaks``).
        A checkpoint from before the key keeps this command's."""
        if CHECKPOINT_KEY not in checkpoint:
            return
        saved = checkpoint[CHECKPOINT_KEY]
        if saved != self.weights and speaks:
            log.warning("%s: this command gives %s, the checkpoint trained with %s; the resume keeps the "
                        "checkpoint's (train a new run for other weights)", weighting.KEY,
                        weighting.describe(self.weights) if self.weights else "none",
                        weighting.describe(saved) if saved else "none")
        self.use(saved)
