"""Temperature scaling in ``python -m litlab.eval``: fitting T on the validation split, the
split's figures at T = 1, and the net wrapped so that the scored pass sees ``logits / T``.

Each pass runs in a trainer of its own without loggers, so that TensorBoard (with ``logger=...``)
gets only the scored, scaled pass: its scalars and its reliability diagram.
"""

from __future__ import annotations

import logging

import lightning.pytorch as L
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from litlab.build import build_trainer
from litlab.callbacks.eval_report import EvalReport
from litlab.callbacks.interruption import Interruption
from litlab.errors import LitlabError
from litlab.models.temperature_scaled import TemperatureScaled
from litlab.tuning.temperature_fit import TemperatureFit, fit_temperature

log = logging.getLogger(__name__)


class ValidationLogits(L.Callback):
    """Keeps the logits of ``pl_module.net`` ``(N, C)`` and the targets ``(N,)`` of every validation
    batch, on the CPU in float64 (a validation split is small next to what it costs to compute)."""

    def __init__(self):
        self.logits: list[Tensor] = []
        self.targets: list[Tensor] = []
        self._last: Tensor | None = None
        self._hook = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._hook = pl_module.net.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args, output) -> None:
        self._last = output

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch[0], batch[1]
        logits, self._last = self._last, None
        if logits is None or logits.shape[0] != len(y):  # the task did not call its net on this batch
            with torch.no_grad():
                logits = pl_module(x)
        self.logits.append(logits.detach().double().cpu())
        self.targets.append(y.detach().long().cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._remove()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove()

    def _remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def fit_on_validation(cfg: DictConfig, model: L.LightningModule, dm) -> TemperatureFit:
    """T fitted on the validation logits of ``model`` (one process: the fit needs all of them)."""
    if len(dm.splits.val) == 0:
        raise LitlabError("temperature=auto fits T on the validation split, and the data has no val samples (see "
                          "data.* of the run, or the data.path/data.root given). Use data with a validation split, "
                          "or give temperature=<number>.")
    logits = ValidationLogits()
    trainer = build_trainer(cfg, [Interruption(cfg.paths.output_dir, task="eval"), logits], [])
    if trainer.world_size > 1:  # trainer.devices=-1 or auto on several GPUs: not seen before torch
        raise LitlabError(f"temperature=auto fits T on every validation logit in one process, and this evaluation "
                          f"runs in {trainer.world_size}. Fit on one device (trainer.devices=1), then give the T it "
                          f"reports to the multi-device evaluation (temperature=<number>).")
    trainer.validate(model, datamodule=dm, verbose=False)
    if logits.logits:
        fit = fit_temperature(torch.cat(logits.logits), torch.cat(logits.targets))
    else:  # no validation batch ran (trainer.limit_val_batches=0): fit_temperature's error says so
        fit = fit_temperature(torch.empty(0, 0, dtype=torch.float64), torch.empty(0, dtype=torch.long))
    log.info("temperature T=%.4f fitted on %d validation samples (their NLL %.4f at T=1, %.4f at T)",
             fit.temperature, fit.samples, fit.nll_before, fit.nll_after)
    return fit


def figures_at_t1(cfg: DictConfig, model: L.LightningModule, dm, bins: int) -> dict[str, float]:
    """The test pass's loss, accuracy and ECE of the unscaled net (``test/*``), with no logger."""
    report = EvalReport(misclassified=0, top_k=0, calibration_bins=bins)
    trainer = build_trainer(cfg, [Interruption(cfg.paths.output_dir, task="eval"), report], [])
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    return {k: float(v) for k, v in results.items()}


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
