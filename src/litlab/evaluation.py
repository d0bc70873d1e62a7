"""Re-evaluating a checkpoint (``evaluate(cfg)``), which ``python -m litlab.eval`` runs.

Data and model are rebuilt from the run record stored in the checkpoint; ``data.KEY=VALUE``
overrides change how the stored data is loaded (e.g. ``data.root`` after moving the files).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.build import build_data, build_loggers, build_model, build_task, build_trainer
from litlab.callbacks.interruption import Interruption
from litlab.checkpoint_files import check_fits, load_checkpoint
from litlab.compression.artifacts import is_artifact, load_net
from litlab.errors import LitlabError, check_choice
from litlab.eval import is_run_override
from litlab.reporting.run_files import update_metrics
from litlab.seeding import seed_everything
from litlab.trainer_checks import check_trainer_config

log = logging.getLogger(__name__)

_ABSENT = object()


def stored_config(ckpt: dict, overrides: list[str], ckpt_path: str = "the checkpoint") -> DictConfig:
    """The training run's config from the checkpoint, with ``data.*``/``model.*`` overrides applied.

    ``data.KEY=VALUE`` changes a key the run had (a misspelt key is an error naming it);
    ``+data.KEY=VALUE`` adds one."""
    cfg = OmegaConf.create(ckpt["litlab"]["config"])
    mine = [o for o in overrides if is_run_override(o)]
    for o in mine:
        key = o.split("=", 1)[0]
        name = key.lstrip("+")
        adding = key.startswith("+") and not key.startswith("++")
        if not adding and OmegaConf.select(cfg, name, default=_ABSENT) is _ABSENT:
            raise LitlabError(
                f"{name} is not a key of the run stored in {ckpt_path}, so {o.lstrip('+')} changes nothing. "
                f"Check the spelling against the run's .hydra/config.yaml, or add the key with +{name}=..."
            )
    if mine:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in mine]))
    if any(o.split("=", 1)[0].lstrip("+") == "data.root" for o in mine) and not Path(str(cfg.data.root)).is_dir():
        # a digits checkpoint would write a fresh digits set there and score that, exit 0, as if it
        # were the folder meant (a misspelt one)
        raise LitlabError(f"data.root={cfg.data.root} is not a folder. Give the folder of the images to evaluate, "
                          f"holding test/<class>/ (or val/<class>/ with split=val).")
    return cfg


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Loads ``cfg.ckpt_path``, rebuilds its data and model, and tests it; returns the metrics."""
    if not cfg.get("ckpt_path"):
        raise LitlabError("ckpt_path is required: python -m litlab.eval ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt")
    split = check_choice("split", cfg.get("split", "test"), ("test", "val"))
    ckpt = load_checkpoint(cfg.ckpt_path)
    run_cfg = stored_config(ckpt, overrides or [], str(cfg.ckpt_path))
    artifact = is_artifact(ckpt)  # a compressed model written by litlab.compression
    if artifact and ckpt["compression"].get("cpu_only"):
        cfg = OmegaConf.merge(cfg, {"trainer": {"accelerator": "cpu", "devices": 1}})
    check_trainer_config(cfg.trainer)  # devices, precision, strategy: before any data is prepared
    seed_everything(cfg.seed)
    record = ckpt["litlab"].get("data") or {}
    dm = build_data(run_cfg, trained=record)
    dm.adopt_trained(record, f"ckpt_path={cfg.ckpt_path}")
    if artifact:
        model = build_task(run_cfg.model, load_net(ckpt, Path(cfg.ckpt_path)), dm.num_classes)
    else:
        model = build_model(run_cfg.model, dm.input_shape, dm.num_classes)
        check_fits(model, ckpt["state_dict"], cfg.ckpt_path)
        model.load_state_dict(ckpt["state_dict"])
    # Ctrl-C or SIGTERM stops the evaluation at a batch end, recorded "interrupted" (exit 130/143)
    trainer = build_trainer(cfg, [Interruption(cfg.paths.output_dir, task="eval")], build_loggers(cfg))
    dm.test_split = split
    if len(getattr(dm.splits, split)) == 0:
        raise LitlabError(f"split={split}: the data has no {split} samples to evaluate (see data.* of the run, or the "
                          f"data.path/data.root given). Use split=test, or data with a {split} split.")
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    metrics = {k.replace("test/", f"{split}/"): float(v) for k, v in results.items()}
    run_dir = Path(cfg.paths.output_dir)
    update_metrics(run_dir, status="completed", task="eval", ckpt_path=str(cfg.ckpt_path), **metrics)
    print(f"\nlitlab eval of {cfg.ckpt_path}:")
    for k, v in metrics.items():
        print(f"  {k:<12} {v:.6f}")
    print(f"  metrics      {run_dir / 'metrics.json'}")
    return metrics
