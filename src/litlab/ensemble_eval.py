"""``python -m litlab.eval 'ckpt_path=[A,B,C]'`` (or ``ckpt_path=<sweep folder>``): the ensemble's
figures, scored on the average of its members' class probabilities.

Each member is scored as eval scores one checkpoint (``evaluation.member_probabilities``): its own
data normalization and preprocessing, its own precision and, with ``temperature=auto``, a T fitted
on its own validation split (for fold models, the fold it held out). Their softmax probabilities
``(N, C)`` are averaged per sample, and the average is scored: ``<split>/acc`` (argmax against the
label), ``<split>/loss`` (the NLL of the averaged probabilities) and ``<split>/ece``. The members must
be different checkpoints (their sha256) and have scored the same samples in the same order (the same
raw inputs: ``inputs_sha256``); one that did not is refused, naming both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from litlab.callbacks.calibration import CalibrationBins
from litlab.checkpoint_record import stored_run_config
from litlab.ensemble_paths import (check_different_checkpoints, check_ensemble_before_loading, check_one_process,
                                   member_cfg)
from litlab.errors import LitlabError
from litlab.eval import check_before_loading
from litlab.evaluation import member_probabilities
from litlab.reporting.run_files import update_metrics
from litlab.training import partial_data
from litlab.tuning.temperature_setting import checkpoint_fingerprint

log = logging.getLogger(__name__)

# what the members' scored_data must share (``samples``, the count, is compared with the labels)
SAME_DATA = ("test_split", "data", "data_path", "data_root")
# the run's data.* keys that choose which samples form its splits, named when the inputs differ
SPLIT_KEYS = ("split_seed", "val_fraction", "test_fraction", "folds", "fold")


def ensemble_figures(probabilities: Tensor, labels: Tensor, bins: int) -> dict[str, float]:
    """``acc``, ``loss`` (mean NLL) and ``ece`` of averaged probabilities ``(N, C)`` against ``labels`` ``(N,)``."""
    confidence, predicted = probabilities.max(dim=-1)  # (N,) each
    calibration = CalibrationBins.empty(bins, "cpu")
    calibration.add(confidence, predicted == labels)
    # a probability of 0 (every member sure of another class, in float64): the NLL of the smallest positive one
    picked = probabilities.gather(1, labels.view(-1, 1)).squeeze(1).clamp_min(torch.finfo(torch.float64).tiny)
    return {"acc": float((predicted == labels).double().mean()), "loss": float(-picked.log().mean()),
            "ece": float(calibration.ece())}


def check_same_samples(first: dict, other: dict) -> None:
    """Members ``first`` and ``other`` (``path``, ``scored``, ``labels``, ``classes``, ``inputs`` and
    ``split_keys``) scored the same samples in the same order: the same data and split, count, labels,
    number of classes and raw inputs (their sha256, where both have one)."""
    a, b = first["path"], other["path"]
    why = None
    differs = [k for k in SAME_DATA if first["scored"].get(k) != other["scored"].get(k)]
    if differs:
        shown = "; ".join(f"{k} {first['scored'].get(k)} against {other['scored'].get(k)}" for k in differs)
        why = f"they scored different data ({shown})"
    elif first["classes"] != other["classes"]:
        why = f"they predict {first['classes']} and {other['classes']} classes"
    elif len(first["labels"]) != len(other["labels"]):
        why = f"they scored {len(first['labels'])} and {len(other['labels'])} samples"
    elif not torch.equal(first["labels"], other["labels"]):
        at = int((first["labels"] != other["labels"]).nonzero()[0])
        why = (f"their labels differ from sample {at} on (the same number of samples, {len(first['labels'])}, "
               f"in another order or of other data)")
    elif None not in (first.get("inputs"), other.get("inputs")) and first["inputs"] != other["inputs"]:
        keys = first.get("split_keys") or {}, other.get("split_keys") or {}
        runs = "; ".join(f"data.{k}={keys[0].get(k)} against data.{k}={keys[1].get(k)}" for k in SPLIT_KEYS
                         if keys[0].get(k) != keys[1].get(k))
        why = (f"the same labels, but other inputs (the sha256 of the {first['scored'].get('test_split')} split's "
               f"inputs before normalization: {first['inputs'][:16]}... against {other['inputs'][:16]}...; "
               + (f"their runs had {runs}" if runs else "their runs split the data alike, so the data.* overrides or "
                  "files differ") + ")")
    if why is not None:
        raise LitlabError(f"The ensemble's members {a} and {b} did not score the same samples in the same order: "
                          f"{why}, so their probabilities cannot be averaged per sample. Combine models of one data "
                          f"set and split (e.g. the fold models of one data.folds sweep), with the same data.* "
                          f"overrides for all.")


def score_member(cfg: DictConfig, path: Path, overrides: list[str], split: str | None = None) -> dict:
    """One member's probabilities, labels, record (path, size and sha256, its own figures and its
    temperature's record, as eval of that checkpoint alone records it) and ECE bins. ``split``: where
    the member was checked already (``check_ensemble_before_loading``), the split that returned."""
    member = member_probabilities(member_cfg(cfg, path), overrides, split)
    record = {"ckpt_path": str(path), **checkpoint_fingerprint(path), "precision": member.precision, **member.metrics}
    if member.temperature is not None:
        record["temperature"] = member.temperature
    data = (stored_run_config(path) or {}).get("data")
    split_keys = {k: data.get(k) for k in SPLIT_KEYS} if isinstance(data, dict) else {}
    return {"path": str(path), "probabilities": member.probabilities, "labels": member.labels,
            "scored": member.scored, "classes": member.probabilities.shape[1], "record": record,
            "inputs": member.inputs, "split_keys": split_keys, "bins": member.bins}


def evaluate_ensemble(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Scores every member of ``cfg.ckpt_path`` and the average of their probabilities; records the
    ensemble's and each member's figures in metrics.json and prints them; returns the ensemble's."""
    check_one_process(cfg)  # also on the command line; here for a call from Python or a launcher's rank
    split, members = check_ensemble_before_loading(cfg, check_before_loading, tell=True)
    log.info("ensemble of %d member%s: %s", len(members), "s" if len(members) != 1 else "",
             ", ".join(map(str, members)))
    check_different_checkpoints(members)
    scored = []
    for path in members:
        member = score_member(cfg, path, overrides or [], split)  # checked above: not again
        if scored:
            check_same_samples(scored[0], member)
        scored.append(member)
    labels = scored[0]["labels"]
    average = torch.stack([m["probabilities"] for m in scored]).mean(dim=0)  # (M, N, C) -> (N, C)
    bins = scored[0]["bins"]  # the first member's: +callbacks.eval_report.calibration_bins=N, else its run's
    metrics = {f"{split}/{k}": v for k, v in ensemble_figures(average, labels, bins).items()}
    records = [m["record"] for m in scored]
    for key in ("acc", "loss"):  # the mean member's figures, beside the ensemble's
        metrics[f"{split}/members_mean_{key}"] = sum(r[f"{split}/{key}"] for r in records) / len(records)
    run_dir = Path(cfg.paths.output_dir)
    given = cfg.ckpt_path if isinstance(cfg.ckpt_path, str) else [str(v) for v in cfg.ckpt_path]
    # samples: those scored (trainer.limit_test_batches scores part of the split; partial_data says so)
    what = {**scored[0]["scored"], "samples": len(labels)}
    update_metrics(run_dir, status="completed", task="eval", ckpt_path=given, ensemble=True, members=records,
                   calibration_bins=bins, **what, **partial_data(cfg.trainer), **metrics)
    print_ensemble(records, metrics, what, run_dir, split)
    return metrics


def print_ensemble(records: list[dict], metrics: dict, scored: dict, run_dir: Path, split: str) -> None:
    """The ensemble's figures, as eval prints one checkpoint's, then each member's accuracy."""
    width = max([12, *map(len, metrics)])
    members = f"{len(records)} member{'s' if len(records) != 1 else ''}"
    print(f"\nlitlab eval of an ensemble of {members} (their probabilities averaged):")
    for k, v in metrics.items():
        print(f"  {k:<{width}} {v:.6f}")
    location = scored.get("data_path") or scored.get("data_root")
    print(f"  {'split':<{width}} {scored['test_split']}")
    print(f"  {'data':<{width}} {scored['data']}" + (f" at {location}" if location else ""))
    print(f"  {'samples':<{width}} {scored['samples']}")
    for i, r in enumerate(records):
        extra = f" (T={r['temperature']['value']:.4f})" if "temperature" in r else ""
        print(f"  member {i}: {split}/acc {r[f'{split}/acc']:.6f}  {split}/loss {r[f'{split}/loss']:.6f}{extra}  "
              f"{r['ckpt_path']}")
    print(f"  {'metrics':<{width}} {run_dir / 'metrics.json'}")
