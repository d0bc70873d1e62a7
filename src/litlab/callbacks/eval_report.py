"""Validation and test reports in TensorBoard: confusion matrix, per-class table, top-k accuracy,
calibration (ECE and a reliability diagram) and the most confidently misclassified test samples.

Cost: the logits come from a forward hook on ``pl_module.net`` (the forward the task already
runs), the running counts stay on the device (no per-step host syncs), and figures are drawn
only at the end of a reporting epoch.
"""

from __future__ import annotations

import lightning.pytorch as L
import torch
from torch import Tensor, nn

from litlab.callbacks.calibration import DEFAULT_BINS, CalibrationBins
from litlab.callbacks.class_metrics import add_to_confusion, per_class_table
from litlab.callbacks.figures import confusion_figure, misclassified_figure
from litlab.callbacks.log_steps import epoch_step
from litlab.callbacks.net_logits import NetLogits
from litlab.callbacks.reliability_figure import reliability_figure
from litlab.callbacks.tensorboard_writer import add_rgb_image, tensorboard_writer
from litlab.errors import LitlabError


class _Tally:
    """What one val/test epoch accumulates, as device tensors."""

    def __init__(self, keep: int, bins: int, top_k: int):
        self.keep = keep
        self.bins = bins
        self.top_k = top_k
        self.cm: Tensor | None = None  # (C, C) counts, rows true class
        self.calibration: CalibrationBins | None = None  # per confidence bin: count, confidence sum, hits
        # () samples whose class is among the top k; None (not counted) unless 0 < top_k < classes
        self.topk_hits: Tensor | None = None
        self.x: Tensor | None = None  # (K, ...) the most confidently misclassified samples so far
        self.target = self.pred = self.conf = self.score = None  # (K,) each

    def add(self, logits: Tensor, y: Tensor, x: Tensor) -> None:
        num_classes = logits.shape[-1]
        if self.cm is None:
            self.cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=logits.device)
            if 0 < self.top_k < num_classes:  # top_k=0 asks for none; with <= k classes every sample is a hit
                self.topk_hits = torch.zeros((), dtype=torch.long, device=logits.device)
            self.calibration = CalibrationBins.empty(self.bins, logits.device)
        probs = logits.float().softmax(dim=-1)  # (B, C)
        conf, pred = probs.max(dim=-1)  # (B,) each
        add_to_confusion(self.cm, y, pred)
        self.calibration.add(conf, pred == y)
        if self.topk_hits is not None:
            top = logits.topk(self.top_k, dim=-1).indices  # (B, k)
            self.topk_hits += (top == y.view(-1, 1)).any(dim=-1).sum()
        if self.keep > 0:
            self._keep_worst(x.detach(), y, pred, conf)

    def _keep_worst(self, x: Tensor, y: Tensor, pred: Tensor, conf: Tensor) -> None:
        # correct samples score -1 so any mistake outranks them; selection stays on the device
        score = torch.where(pred != y, conf, torch.full_like(conf, -1.0))
        if self.x is not None:
            x, y = torch.cat([self.x, x]), torch.cat([self.target, y])
            pred, conf = torch.cat([self.pred, pred]), torch.cat([self.conf, conf])
            score = torch.cat([self.score, score])
        best = score.topk(min(self.keep, len(score))).indices
        self.x, self.target, self.pred, self.conf, self.score = x[best], y[best], pred[best], conf[best], score[best]


class EvalReport(NetLogits):
    """Logs ``{val,test}/acc_top<k>`` and ``{val,test}/ece`` (expected calibration error of the
    top-1 confidence, see ``calibration.py``) every epoch and, on reporting epochs, writes to
    TensorBoard:

    - ``{val,test}/confusion_matrix``: an image (validation every ``every_n_epochs`` epochs and
      the run's last one, also when training stops before ``max_epochs``; test always);
    - ``{val,test}/per_class``: precision, recall, F1 and support per class, as a text table;
    - ``{val,test}/reliability``: the reliability diagram (accuracy per confidence bin against the
      diagonal, with the bins' sample counts), at the same epochs as the confusion matrix;
    - ``test/misclassified``: the ``misclassified`` most confidently wrong test samples with true
      and predicted class and confidence (images as images, sequences as line plots).

    Top-1 accuracy is the task's own ``val/acc`` and ``test/acc``.

    Args:
        every_n_epochs: validation figures and tables every N epochs (``callbacks.eval_report.every_n_epochs``).
        misclassified: how many misclassified test samples the grid shows; 0 for none.
        top_k: also log top-k accuracy when there are more than ``top_k`` classes; 0 for none.
        calibration_bins: equal-width confidence bins over [0, 1] of the ECE and the reliability diagram.
    """

    def __init__(self, every_n_epochs: int = 5, misclassified: int = 16, top_k: int = 5,
                 calibration_bins: int = DEFAULT_BINS):
        for key, value, low in (("every_n_epochs", every_n_epochs, 1), ("misclassified", misclassified, 0),
                                ("top_k", top_k, 0), ("calibration_bins", calibration_bins, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LitlabError(f"callbacks.eval_report.{key} must be an integer >= {low}, got {value!r}.")
        super().__init__()
        self.every_n_epochs = every_n_epochs
        self.misclassified = misclassified
        self.top_k = top_k
        self.calibration_bins = calibration_bins
        self._tally: _Tally | None = None
        # the latest validation's summed confusion matrix and calibration bins, step and epoch while not drawn yet
        self._undrawn: tuple[Tensor, CalibrationBins, int, int] | None = None

    # --- collecting ------------------------------------------------------------------------
    def _start(self, pl_module: L.LightningModule, keep: int) -> None:
        self._tally = _Tally(keep, self.calibration_bins, self.top_k)
        net = getattr(pl_module, "net", None)
        if isinstance(net, nn.Module):
            self._watch(net)

    def _collect(self, pl_module: L.LightningModule, outputs, batch) -> None:
        if self._tally is None:
            return
        x, y = batch[0], batch[1]
        # the step's outputs where they are logits, else those of its call of pl_module.net, else pl_module(x)
        self._tally.add(self._logits(pl_module, x, y, outputs), y, x)

    def _stop(self) -> _Tally | None:
        self._remove()
        tally, self._tally = self._tally, None
        return tally

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._start(pl_module, keep=0)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        tally = self._stop()
        if tally is not None:
            epoch = trainer.current_epoch + 1
            last = (trainer.max_epochs or 0) > 0 and epoch >= trainer.max_epochs
            self._report(trainer, pl_module, tally, "val", draw=last or epoch % self.every_n_epochs == 0)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(pl_module, keep=self.misclassified)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        tally = self._stop()
        if tally is not None:
            self._report(trainer, pl_module, tally, "test", draw=True)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    # --- reporting -------------------------------------------------------------------------
    def _report(self, trainer, pl_module, tally: _Tally, stage: str, draw: bool) -> None:
        if tally.cm is None:
            return
        # every rank runs the reductions (collectives); only rank 0 draws
        cm = trainer.strategy.reduce(tally.cm, reduce_op="sum")
        if tally.topk_hits is not None:  # every rank alike: the same top_k and number of classes
            hits = trainer.strategy.reduce(tally.topk_hits, reduce_op="sum")
            pl_module.log(f"{stage}/acc_top{self.top_k}", hits.float() / cm.sum().clamp_min(1).float(),
                          on_step=False, on_epoch=True, sync_dist=True)
        # the bins' sums of all ranks, as the confusion matrix's; the ECE is then every sample's
        calibration = CalibrationBins(trainer.strategy.reduce(tally.calibration.sums, reduce_op="sum"))
        pl_module.log(f"{stage}/ece", calibration.ece().float(), on_step=False, on_epoch=True, sync_dist=True)
        if draw and tally.x is not None and trainer.world_size > 1:
            _gather_worst(trainer, tally)  # a collective: every rank decides `draw` alike
        # a validation's figures at its scalars' step (the epoch's last training step)
        step = epoch_step(trainer) if stage == "val" else trainer.global_step
        if stage == "val":  # kept until drawn: the last validation may come before max_epochs
            self._undrawn = None if draw else (cm, calibration, step, trainer.current_epoch)
        if draw:
            self._draw(trainer, cm, calibration, tally, stage, step, trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        # the run's last validation, when training ended before max_epochs (early stopping, a
        # max_steps limit) or without validation at its last epochs (check_val_every_n_epoch)
        if self._undrawn is not None:
            cm, calibration, step, epoch = self._undrawn
            self._undrawn = None
            self._draw(trainer, cm, calibration, None, "val", step, epoch)

    def _draw(self, trainer, cm: Tensor, calibration: CalibrationBins, tally: _Tally | None, stage: str, step: int,
              epoch: int) -> None:
        """The confusion matrix, per-class table, reliability diagram and (test) misclassified
        samples; rank 0 only (no collectives)."""
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        names = _class_names(trainer, cm.shape[0])
        name = "validation" if stage == "val" else "test"
        epoch_note = f", epoch {epoch + 1}" if stage == "val" else ""
        matrix = confusion_figure(cm, names, f"{name} confusion matrix{epoch_note}")
        add_rgb_image(writer, f"{stage}/confusion_matrix", matrix, step)
        writer.add_text(f"{stage}/per_class", per_class_table(cm, names), step)
        reliability = reliability_figure(calibration, f"{name} reliability diagram{epoch_note}")
        add_rgb_image(writer, f"{stage}/reliability", reliability, step)
        if tally is not None and tally.x is not None:
            wrong = (tally.score >= 0).cpu()
            x = _data_scale(trainer, tally.x[wrong.to(tally.x.device)])
            kind = "image" if x.ndim == 4 else "sequence"
            grid = misclassified_figure(x, tally.target.cpu()[wrong], tally.pred.cpu()[wrong], tally.conf.cpu()[wrong],
                                        names, kind, f"most confidently misclassified {name} samples")
            add_rgb_image(writer, f"{stage}/misclassified", grid, step)
        writer.flush()


def _gather_worst(trainer, tally: _Tally) -> None:
    """Replaces each rank's most confidently misclassified samples by those of all ranks together
    (each rank saw only its share of the data)."""
    keep = tally.keep

    def padded(t: Tensor, fill: float) -> Tensor:  # all_gather needs the same shape on every rank
        missing = keep - len(t)
        return torch.cat([t, t.new_full((missing, *t.shape[1:]), fill)]) if missing > 0 else t

    parts = (padded(tally.x, 0), padded(tally.target, 0), padded(tally.pred, 0), padded(tally.conf, 0),
             padded(tally.score, float("-inf")))
    x, target, pred, conf, score = (trainer.strategy.all_gather(p).flatten(0, 1) for p in parts)
    best = score.topk(min(keep, len(score))).indices
    tally.x, tally.target, tally.pred, tally.conf, tally.score = x[best], target[best], pred[best], conf[best], score[best]


def _class_names(trainer, num_classes: int) -> list[str]:
    names = getattr(trainer.datamodule, "class_names", None)
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def _data_scale(trainer, x: Tensor) -> Tensor:
    """Undoes the normalization of model inputs so samples look like the data (images in [0, 1])."""
    pre = getattr(trainer.datamodule, "preprocess", None)
    if pre is None:
        return x.cpu()
    # images (N, C, H, W): stats as (1, C, 1, 1); sequences (N, L, F): as (1, 1, F)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, 1, -1)
    mean = torch.as_tensor(pre.mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.as_tensor(pre.std, dtype=x.dtype, device=x.device).view(shape)
    return (x * std + mean).cpu()
