"""The classification task: any net, cross-entropy, accuracy, optimizer and scheduler from config."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from litlab.errors import LitlabError


class Classifier(L.LightningModule):
    """Trains ``net`` to classify; logs ``{train,val,test}/loss`` and ``{train,val,test}/acc``.

    Args:
        net: the plain ``nn.Module`` (input batch -> logits ``(B, num_classes)``).
        optimizer: partial optimizer, finished here with the parameters (``model.optimizer``).
        scheduler: partial LR scheduler stepped each epoch, or None (``model.scheduler``).
        label_smoothing: cross-entropy label smoothing for training (val/test loss is plain).
        num_classes: outputs of ``net``; found from a dummy forward if not given.
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., object] | None = None, label_smoothing: float = 0.0,
                 num_classes: int | None = None):
        super().__init__()
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise LitlabError(f"model.label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
        if not callable(optimizer):
            raise LitlabError("model.optimizer must be a partial optimizer config (_partial_: true).")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes or getattr(net, "num_classes", None)
        if self.num_classes is None:
            raise LitlabError("Classifier needs num_classes (litlab passes it from the data).")
        # labels are checked when the data loads; skipping per-step input checks keeps the hot path short
        self.train_acc = MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric()  # the epoch mean, synced across ranks once per epoch
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_classes, average="micro")
        # plain dicts saved in every checkpoint (config, data description): see litlab.train
        self.run_record: dict = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_acc.update(logits.detach(), y)
        self.train_loss.update(loss.detach(), weight=len(y))
        # tensors, not floats: Lightning reads them only when it writes (every log_every_n_steps)
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, batch_size=len(y))
        if self._ends_epoch(batch_idx):
            # the metric accumulates every step; Lightning computes and resets it at epoch end however
            # often it is logged, and each self.log costs about as much as a small model's step
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def _ends_epoch(self, batch_idx: int) -> bool:
        """Whether this is the epoch's last training batch (also where max_steps cuts it short)."""
        t = self.trainer
        return (t.is_last_batch or batch_idx + 1 >= t.num_training_batches
                or 0 < t.max_steps <= t.global_step + 1)

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, acc: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        acc.update(logits, y)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=len(y), sync_dist=True)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=stage == "val", batch_size=len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net(x).softmax(dim=-1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["litlab"] = self.run_record

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
