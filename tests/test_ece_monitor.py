"""val/ece (the expected calibration error, logged by callbacks.eval_report) as what checkpointing,
early stopping and sweeps go by: best at its lowest, like val/loss."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from litlab.build import build_callbacks
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.metric_direction import lower_is_better
from litlab.summarize import rank_sweep
from litlab.training import train


@pytest.mark.parametrize("metric, lower", [("ece", True), ("val/ece", True), ("test/ece", True),
                                           ("val/ece_15_bins", True),
                                           # "ece" inside another word says nothing
                                           ("val/recent_acc", False), ("piece_count", None)])
def test_ece_is_best_at_its_lowest(metric, lower):
    assert lower_is_better(metric) is lower


def _val_ece_per_epoch(run) -> dict[int, float]:
    """{epoch: val/ece} from the run's CSV log (one row per validation)."""
    (log,) = run.rglob("metrics.csv")
    with log.open() as f:
        return {int(row["epoch"]): float(row["val/ece"]) for row in csv.DictReader(f) if row.get("val/ece")}


def test_best_ckpt_by_val_ece_is_the_epoch_with_the_lowest(cfg_factory, tmp_path):
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=4", "test=false",
                       "callbacks.model_checkpoint.monitor=val/ece", "callbacks.model_checkpoint.mode=min"])
    train(cfg)
    eces = _val_ece_per_epoch(tmp_path / "run")
    assert sorted(eces) == [0, 1, 2, 3]
    assert len(set(eces.values())) > 1  # the lowest and the highest are different epochs
    lowest = min(eces, key=eces.get)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)
    assert best["epoch"] == lowest
    # metrics.json gives the best checkpoint's score under the monitored name
    assert metrics["val/ece"] == pytest.approx(eces[lowest], rel=1e-6)


@pytest.mark.parametrize("key", ["callbacks.model_checkpoint", "callbacks.early_stopping"])
def test_val_ece_monitored_for_its_highest_is_refused_as_val_loss_is(key, tmp_path):
    """The configs' mode=max (for val/acc) would keep the worst calibrated epoch."""
    extra = ["callbacks=early_stopping"] if "early" in key else []
    for metric in ("val/loss", "val/ece"):
        with pytest.raises(LitlabError) as e:
            check_overrides([*extra, f"{key}.monitor={metric}", f"hydra.run.dir={tmp_path / 'a'}"])
        assert str(e.value) == (f"{key}.monitor={metric} is best at its lowest, but {key}.mode=max keeps the "
                                f"highest: the worst epoch. Add {key}.mode=min.")
    cfg = check_overrides([*extra, f"{key}.monitor=val/ece", f"{key}.mode=min", f"hydra.run.dir={tmp_path / 'b'}"])
    assert cfg is not None
    assert not (tmp_path / "a").exists()


def test_early_stopping_and_checkpoints_build_with_val_ece(cfg_factory):
    cfg = cfg_factory(["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/ece",
                       "callbacks.early_stopping.mode=min", "callbacks.model_checkpoint.monitor=val/ece",
                       "callbacks.model_checkpoint.mode=min"])
    monitored = {getattr(c, "monitor", None) for c in build_callbacks(cfg)} - {None}
    assert monitored == {"val/ece"}


def test_val_ece_without_the_eval_report_is_refused(cfg_factory):
    cfg = cfg_factory(["~callbacks.eval_report", "callbacks.model_checkpoint.monitor=val/ece",
                       "callbacks.model_checkpoint.mode=min"])
    with pytest.raises(LitlabError, match=r"^callbacks\.model_checkpoint\.monitor=val/ece is logged by "
                                          r"callbacks\.eval_report, which this run leaves out"):
        build_callbacks(cfg)


def test_a_sweep_optimizing_val_ece_ranks_the_lowest_first(tmp_path):
    sweep = tmp_path / "sweep"
    for job, ece in (("0", 0.05), ("1", 0.02), ("2", 0.09)):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "metrics.json").write_text(json.dumps({"task": "train", "status": "completed", "val/acc": 0.9,
                                                              "val/ece": ece, "optimized_metric": "val/ece"}))
    table = rank_sweep(sweep)
    assert table["metric"] == "val/ece" and table["direction"] == "minimize"
    assert [row["job"] for row in table["rows"]] == ["1", "0", "2"]


def test_an_optuna_search_maximizing_val_ece_is_refused(tmp_path):
    with pytest.raises(LitlabError, match=r"^optimized_metric=val/ece is best at its lowest, but "
                                          r"hydra\.sweeper\.direction=maximize searches for its highest\. Add "
                                          r"hydra\.sweeper\.direction=minimize\.$"):
        check_overrides(["hparams_search=digits_optuna", "optimized_metric=val/ece",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    assert not (tmp_path / "s").exists()
