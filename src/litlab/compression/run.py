"""Compression after training: measure the trained net, compress it, measure again, save, report.

``litlab.training.train`` calls ``check_compression`` right after building the model (so a method that
cannot apply fails before training) and ``compress_after_training`` after testing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from litlab.build import instantiate
from litlab.compression import artifacts, finetune, report
from litlab.compression.base import Compressor, Context, Uncompressed
from litlab.compression.export import build_exporter
from litlab.compression.measure import add_latencies, figures
from litlab.errors import LitlabError
from litlab.file_only_logs import FILE_ONLY
from litlab.models.speed_switches import apply_speed_switches, runs_channels_last

log = logging.getLogger(__name__)


def build_compressor(cfg: DictConfig) -> Compressor | None:
    """The method of ``cfg.compress``, or None when the run does not compress."""
    node = cfg.get("compress")
    if not node or "_target_" not in node:
        return None
    method = instantiate(node, "compress")
    if not isinstance(method, Compressor):
        raise LitlabError(f"compress._target_ must build a litlab.compression.base.Compressor, got "
                          f"{type(method).__name__}.")
    return method


def check_compression(cfg: DictConfig, net: nn.Module, dm) -> None:
    """Fails with a LitlabError naming the key when ``cfg.compress`` cannot apply to ``net`` and ``dm``,
    or ``cfg.export`` has a bad setting."""
    method = build_compressor(cfg)
    if method is not None:
        method.check(net, dm)
        if method.finetune is not None:  # its own class weights against the data, before training
            finetune.check_class_weights(method.finetune, cfg, dm)
    build_exporter(cfg)  # export settings too: a bad one would otherwise fail after training


def context(cfg: DictConfig, run_dir: Path, dm) -> Context:
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    return Context(run_dir=Path(run_dir), seed=int(cfg.seed), net_cfg=net_cfg, input_shape=tuple(dm.input_shape),
                   num_classes=dm.num_classes)


def compress_after_training(cfg: DictConfig, model, trained: nn.Module, dm, run_dir: Path, loggers: list) -> dict:
    """Compresses ``trained`` (``artifacts.trained_net``: the best checkpoint's weights, float32 on
    the CPU) of ``model``'s run; writes ``compressed/`` and ``compression.json`` in ``run_dir``.

    A method that breaks on this net (a user's own net: a dynamically quantized transformer layer,
    a .view() in a statically quantized one) fails in one paragraph naming ``compress=``, the
    traceback in the run's log file, and leaves no half-written ``compressed/``.

    Returns:
        ``compress/...`` fields for metrics.json.
    """
    out = Path(run_dir) / "compressed"
    try:
        return _compress(cfg, model, trained, dm, run_dir, loggers)
    except (LitlabError, KeyboardInterrupt, OSError, MemoryError, torch.cuda.OutOfMemoryError):
        shutil.rmtree(out, ignore_errors=True)  # no half-written compressed/ here either
        raise  # a user error, a signal, or the machine (disk, memory), not the method on this net
    except Exception as e:
        log.error("compression failed", exc_info=True, extra=FILE_ONLY)
        shutil.rmtree(out, ignore_errors=True)
        name = OmegaConf.select(cfg, "compress._target_", default="?").rsplit(".", 1)[-1]
        reason = str(e).splitlines()[0][:300] if str(e) else repr(e)
        raise LitlabError(
            f"{_chosen()} ({name}) failed on the trained {type(trained).__name__}: {type(e).__name__}: "
            f"{reason}. Training and test results are in metrics.json and the checkpoints are kept; this method "
            f"does not fit this net, so try another compress method (the traceback is in the run's log).") from None


def _chosen() -> str:
    """``compress=<choice>`` as typed (``prune``, ``quantize``, ...), or ``compress`` outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return f"compress={HydraConfig.get().runtime.choices.get('compress')}"
    except ValueError:  # called directly (tests, the benchmark)
        return "compress"


def _compress(cfg: DictConfig, model, trained: nn.Module, dm, run_dir: Path, loggers: list) -> dict:
    method = build_compressor(cfg)
    assert method is not None
    if method.finetune is not None:  # the training's weights (a resume's: the checkpoint's), or its own
        finetune.use_class_weights(method.finetune, cfg,
                                   getattr(model, "class_weights", method.finetune.class_weights))
    ctx = context(cfg, run_dir, dm)
    out = Path(run_dir) / "compressed"
    record = model.run_record
    before_net, before_cfg = method.reference(trained, dm, ctx)
    before_path = out / "dense.pt"
    stored_net, stored_record = method.stored_reference(before_net, record)
    before_state = artifacts.save(before_path, stored_net, stored_record, Uncompressed(), {}, before_cfg)
    before = figures(before_net, dm, before_path, before_state)

    log.info("compressing with %s", method.name)
    after_net = method.apply(artifacts.copy_net(before_net), dm, ctx).eval()
    if runs_channels_last(before_net) and not method.cpu_only:
        # a rebuilt float net (fewer channels, a student, low-rank factors; int8 nets are the
        # cpu_only ones) runs in the memory order the trained net ran in, so that the latencies
        # compare like with like
        apply_speed_switches(after_net, channels_last="auto")
    after_path = out / f"{method.name}.pt"
    after_state = artifacts.save(after_path, after_net, record, method, method.recipe(after_net, ctx), ctx.net_cfg)
    after = figures(after_net, dm, after_path, after_state)
    add_latencies({"before": before, "after": after}, {"before": before_net, "after": after_net}, dm, method.measure)

    result = {
        "method": method.name,
        "settings": method.settings(),
        "before": before,
        "after": after,
        "change": report.ratios(before, after),
        "artifacts": {"before": str(before_path), "after": str(after_path)},
        "measure": vars(method.measure),
        "extra": ctx.extra,
    }
    trainer = getattr(model, "_trainer", None)
    return report.write(run_dir, result, loggers, step=trainer.global_step if trainer is not None else 0)
