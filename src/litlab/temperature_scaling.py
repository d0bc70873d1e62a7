"""Temperature scaling in ``python -m litlab.eval``: fitting T on the validation split, the
net wrapped so that the scored pass sees ``logits / T``, and the split's figures at T = 1 taken
in that same pass from the logits before the division (``UnscaledFigures``).

The fit runs in a trainer of its own without loggers, so that TensorBoard (with ``logger=...``)
gets only the scored, scaled pass: its scalars and its reliability diagram. On several processes
every rank fits T on the validation logits of all ranks (``gather_validation``), so all score
with the same T.
"""

from __future__ import annotations

import logging

import lightning.pytorch as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from litlab.build import build_trainer
from litlab.callbacks.calibration import CalibrationBins
from litlab.callbacks.interruption import Interruption
from litlab.callbacks.net_logits import NetLogits
from litlab.callbacks.split_logits import SplitLogits
from litlab.distributed.ranks import is_rank_zero
from litlab.errors import LitlabError
from litlab.models.temperature_scaled import TemperatureScaled
from litlab.tuning.temperature_fit import TemperatureFit, fit_temperature

log = logging.getLogger(__name__)


def fit_on_validation(cfg: DictConfig, model: L.LightningModule, dm) -> TemperatureFit:
    """T fitted on the validation logits of ``model``: on several processes every rank fits it on
    those of all ranks (each sample once), so every rank gets the same T."""
    if len(dm.splits.val) == 0:
        raise LitlabError("temperature=auto fits T on the validation split, and the data has no val samples (see "
                          "data.* of the run, or the data.path/data.root given). Use data with a validation split, "
                          "or give temperature=<number>.")
    kept = SplitLogits("validate")
    trainer = build_trainer(cfg, [Interruption(cfg.paths.output_dir, task="eval"), kept], [])
    trainer.validate(model, datamodule=dm, verbose=False)
    # no validation batch ran (trainer.limit_val_batches=0): empty, and fit_temperature's error says so
    logits, targets = kept.result()
    if trainer.world_size > 1:  # a collective: every rank gets here, also one without batches
        logits, targets = gather_validation(trainer.strategy, logits, targets, len(dm.splits.val))
    try:
        fit = fit_temperature(logits, targets)
    except LitlabError as e:
        # every rank fitted the same gathered logits and fails alike: rank 0 says it, every rank exits
        e.same_on_every_rank = trainer.world_size > 1
        raise
    if is_rank_zero():
        log.info("temperature T=%.4f fitted on %d validation samples (their NLL %.4f at T=1, %.4f at T)",
                 fit.temperature, fit.samples, fit.nll_before, fit.nll_after)
    return fit


def gather_validation(strategy, logits: Tensor, targets: Tensor, split_size: int) -> tuple[Tensor, Tensor]:
    """Every rank's validation ``logits`` ``(n_r, C)`` and ``targets`` ``(n_r,)`` on every rank, as
    ``(N, C)`` and ``(N,)`` in the split's order (a cut one's: its fixed random order).

    Rank ``r`` of ``W`` holds the samples ``r, r + W, r + 2W, ...`` of that order (``EvalShard``;
    ranks may hold one fewer than others), so interleaving the ranks' rows puts them back in order:
    with ``trainer.limit_val_batches`` the first samples of the order, those one process reads. A split
    smaller than ``W`` gets Lightning's sampler, which repeats its first samples at the end so
    that every rank has one: cutting at ``split_size`` drops the repeats. all_gather takes one
    shape on every rank, so the rows are padded to the longest rank's first."""
    device = strategy.root_device
    shape = torch.tensor([len(targets), logits.shape[1] if logits.ndim == 2 else 0], device=device)
    shapes = _all_gather(shape)  # (W, 2): each rank's rows and classes
    rows, classes = int(shapes[:, 0].max()), int(shapes[:, 1].max())
    if rows == 0:  # no rank ran a batch (trainer.limit_val_batches=0): fit_temperature's error says so
        return logits, targets
    padded_logits = torch.zeros(rows, classes, dtype=torch.float64, device=device)
    padded_targets = torch.zeros(rows, dtype=torch.long, device=device)
    if len(targets):  # a rank without batches holds (0, 0) logits: nothing to place
        padded_logits[:len(targets)] = logits.to(device)
        padded_targets[:len(targets)] = targets.to(device)
    all_logits = _all_gather(padded_logits).transpose(0, 1).reshape(-1, classes)  # (rows * W, C)
    all_targets = _all_gather(padded_targets).transpose(0, 1).reshape(-1)  # (rows * W,)
    # (rows, W) -> (rows * W,): row i of rank r is a sample where i < that rank's count
    real = (torch.arange(rows, device=device).view(-1, 1) < shapes[:, 0].view(1, -1)).reshape(-1)
    return all_logits[real][:split_size].cpu(), all_targets[real][:split_size].cpu()


def _all_gather(tensor: Tensor) -> Tensor:
    """``tensor`` of every rank, stacked ``(W, ...)``. torch.distributed's own: the strategy's
    all_gather goes through a function torch deprecates, with a warning on every rank."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


class UnscaledFigures(NetLogits):
    """The scored pass's loss and ECE at T = 1 (``figures``: ``ece``, ``loss``), from the logits of
    the net inside ``TemperatureScaled`` before the division, so the split is read once for both.

    Summed as the task sums its loss (each batch's mean x its size) and the evaluation report its
    calibration bins (``CalibrationBins``, the same ECE), then reduced over the ranks once at the
    epoch's end, as theirs are: the figures of a test pass without temperature."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins
        self.figures: dict[str, float] = {}
        self._loss: Tensor | None = None  # () float64: summed cross-entropy at T = 1
        self._calibration: CalibrationBins | None = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        scaled = pl_module.net
        if not isinstance(scaled, TemperatureScaled):
            raise TypeError("UnscaledFigures needs pl_module.net wrapped by scale_net")
        self._loss = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        self._calibration = CalibrationBins.empty(self.bins, pl_module.device)
        self._watch(scaled.net)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch[0], batch[1]
        # (B, C) in float32, as autocast computes the task's loss and the report's softmax
        logits = self._logits(pl_module.net.net, x, y).float()
        self._loss.add_(F.cross_entropy(logits, y), alpha=len(y))
        confidence, predicted = logits.softmax(dim=-1).max(dim=-1)  # (B,) each
        self._calibration.add(confidence, predicted == y)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._remove()
        # every rank runs the reductions (collectives)
        loss = trainer.strategy.reduce(self._loss, reduce_op="sum")
        calibration = CalibrationBins(trainer.strategy.reduce(self._calibration.sums, reduce_op="sum"))
        samples = calibration.count.sum().clamp_min(1)
        self.figures = {"ece": float(calibration.ece().float()), "loss": float((loss / samples).float())}


def scale_net(model: L.LightningModule, temperature: float) -> None:
    """``model.net`` divided by ``temperature`` from now on (the task's loss and accuracy, and the
    evaluation report's forward hook on ``pl_module.net``, see the scaled logits)."""
    model.net = TemperatureScaled(model.net, temperature)


def temperature_record(temperature: float, fit: TemperatureFit | None, ckpt_path: str, fingerprint: dict) -> dict:
    """``metrics.json``'s ``temperature``: the value, how it came (``fitted_on: val`` with the val
    NLL before and after, or ``given``), the absolute checkpoint path and its ``fingerprint``
    (``ckpt_bytes``, ``ckpt_sha256`` of ``temperature_setting.checkpoint_fingerprint``, taken before
    it was loaded), which predict's ``temperature=<eval folder>`` compares with the checkpoint it
    classifies with."""
    from pathlib import Path

    record: dict = {"value": temperature}
    if fit is None:
        record["given"] = True
    else:
        record.update(fitted_on="val", val_samples=fit.samples, val_nll_at_t1=fit.nll_before,
                      val_nll=fit.nll_after)
    record["ckpt_path"] = str(Path(ckpt_path).absolute())
    record.update(fingerprint)
    return record
