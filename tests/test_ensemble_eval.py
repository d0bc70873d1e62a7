"""litlab.eval of an ensemble: 'ckpt_path=[A,B,C]' or a sweep folder, scored on the average of the
members' probabilities; members that scored other samples refused; checks before torch."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from litlab.ensemble_eval import check_same_samples, evaluate_ensemble
from litlab.ensemble_paths import member_cfg
from litlab.errors import LitlabError
from litlab.eval import check_before_loading
from litlab.evaluation import evaluate, member_probabilities
from litlab.training import train
from litlab.tuning.temperature_setting import eval_record_temperature
from tests.conftest import REPO, make_cfg, refused_before_torch, run_cli
from tests.helpers import write_npz

FOLDS = 3


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three fold models of one npz, laid out as a sweep folder (job folders 0/, 1/, 2/ with .hydra/),
    a fourth job that failed before its first checkpoint, and a model of other data; returns
    (sweep folder, [member checkpoints], the other model's checkpoint)."""
    root = tmp_path_factory.mktemp("ensemble")
    path = write_npz(root / "train.npz", n=120)
    folder = root / "multiruns" / "sweep"
    ckpts = []
    for fold in range(FOLDS):
        job = folder / str(fold)
        cfg = make_cfg(["model=mlp", "data=npz", f"data.path={path}", f"data.folds={FOLDS}", f"data.fold={fold}"],
                       job, root / "data")
        (job / ".hydra").mkdir(parents=True)
        train(cfg)
        ckpts.append(job / "checkpoints" / "best.ckpt")
    (folder / "3" / ".hydra").mkdir(parents=True)  # a failed job: a run folder without a checkpoint
    (folder / "multirun.yaml").write_text("{}\n")
    other = write_npz(root / "other.npz", n=80)
    cfg = make_cfg(["model=mlp", "data=npz", f"data.path={other}"], root / "other", root / "data")
    train(cfg)
    return folder, ckpts, root / "other" / "checkpoints" / "best.ckpt"


def _eval_cfg(cfg_factory, ckpt_path, *given, name="ens"):
    cfg = cfg_factory(list(given), name=name, config_name="eval", fast=False)
    OmegaConf.update(cfg, "ckpt_path", ckpt_path, force_add=True)
    return cfg


def _scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """acc and mean NLL of probabilities (N, C), computed here with numpy."""
    acc = float((probabilities.argmax(axis=1) == labels).mean())
    nll = float(-np.log(probabilities[np.arange(len(labels)), labels]).mean())
    return acc, nll


def test_ensemble_scores_the_average_of_the_members_probabilities(sweep, cfg_factory, capsys):
    folder, ckpts, _ = sweep
    cfg = _eval_cfg(cfg_factory, [str(c) for c in ckpts])
    with torch.no_grad():
        metrics = evaluate_ensemble(cfg, [])
    own, losses = [], []
    for i, ckpt in enumerate(ckpts):
        one = member_cfg(cfg, ckpt)
        with torch.no_grad():
            probabilities, labels, member_metrics, *_ = member_probabilities(one, [])
            alone = evaluate(_eval_cfg(cfg_factory, str(ckpt), name=f"alone{i}"), [])
        # a member's probabilities give the accuracy eval of that checkpoint alone reports
        assert _scores(probabilities.numpy(), labels.numpy())[0] == pytest.approx(alone["test/acc"], abs=1e-6)
        own.append((probabilities.numpy(), labels.numpy(), alone["test/acc"]))
        losses.append((None, None, alone["test/loss"]))
    average = np.mean([p for p, _, _ in own], axis=0)
    acc, nll = _scores(average, own[0][1])
    assert metrics["test/acc"] == pytest.approx(acc, abs=1e-9)
    assert metrics["test/loss"] == pytest.approx(nll, abs=1e-9)
    assert metrics["test/members_mean_acc"] == pytest.approx(np.mean([a for _, _, a in own]), abs=1e-6)
    assert metrics["test/members_mean_loss"] == pytest.approx(np.mean([l for _, _, l in losses]), abs=1e-6)
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    bins = record["calibration_bins"]
    confidence, right = average.max(axis=1), average.argmax(axis=1) == own[0][1]
    which = np.digitize(confidence, np.arange(1, bins) / bins)  # bin k: k/B <= p < (k+1)/B
    gaps = [abs(right[which == k].sum() - confidence[which == k].sum()) for k in range(bins)]
    assert metrics["test/ece"] == pytest.approx(sum(gaps) / len(right), abs=1e-9)
    assert record["ensemble"] is True and record["status"] == "completed"
    assert [m["ckpt_path"] for m in record["members"]] == [str(c) for c in ckpts]
    assert all(len(m["ckpt_sha256"]) == 64 and m["ckpt_bytes"] == c.stat().st_size
               for m, c in zip(record["members"], ckpts))
    assert [m["test/acc"] for m in record["members"]] == pytest.approx([a for _, _, a in own], abs=1e-6)
    assert record["test/acc"] == metrics["test/acc"] and record["samples"] == len(own[0][1])
    out = capsys.readouterr().out
    assert "litlab eval of an ensemble of 3 members" in out and "test/acc" in out and str(ckpts[2]) in out


def test_a_sweep_folder_takes_every_job_checkpoint_and_skips_a_failed_job(sweep, cfg_factory, caplog):
    folder, ckpts, _ = sweep
    cfg = _eval_cfg(cfg_factory, str(folder))
    with caplog.at_level(logging.WARNING), torch.no_grad():
        metrics = evaluate_ensemble(cfg, [])
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert [m["ckpt_path"] for m in record["members"]] == [str(c) for c in ckpts]  # job-number order
    assert f"skipping job {folder / '3'}" in caplog.text
    listed = evaluate_ensemble(_eval_cfg(cfg_factory, [str(c.parent.parent) for c in ckpts], name="listed"), [])
    assert listed["test/acc"] == metrics["test/acc"] and listed["test/loss"] == metrics["test/loss"]  # run folders


def test_temperature_auto_calibrates_each_member_on_its_own_validation_split(sweep, cfg_factory):
    """Each member's T is fitted on its own held-out fold; the average is of softmax(logits / T_i),
    computed here from the members' T = 1 probabilities (log p = logits + a constant per sample)."""
    folder, ckpts, _ = sweep
    cfg = _eval_cfg(cfg_factory, [str(c) for c in ckpts], "temperature=auto")
    with torch.no_grad():
        metrics = evaluate_ensemble(cfg, [])
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    # each member's full temperature record, as eval of that checkpoint alone records it
    assert all(m["temperature"]["ckpt_sha256"] == m["ckpt_sha256"] and m["temperature"]["fitted_on"]
               for m in record["members"])
    temperatures = [m["temperature"]["value"] for m in record["members"]]
    assert len(set(temperatures)) == FOLDS  # each its own fit
    scaled = []
    for ckpt, t in zip(ckpts, temperatures):
        with torch.no_grad():
            one = member_cfg(_eval_cfg(cfg_factory, [], name="t1"), ckpt)
            probabilities, labels, *_ = member_probabilities(one, [])
        scaled.append(torch.softmax(probabilities.log() / t, dim=-1).numpy())
    acc, nll = _scores(np.mean(scaled, axis=0), labels.numpy())
    assert metrics["test/acc"] == pytest.approx(acc, abs=1e-9)
    assert metrics["test/loss"] == pytest.approx(nll, abs=1e-6)


def test_members_of_other_data_are_refused_naming_both(sweep, cfg_factory):
    folder, ckpts, other = sweep
    cfg = _eval_cfg(cfg_factory, [str(ckpts[0]), str(other)])
    with pytest.raises(LitlabError, match=rf"members {ckpts[0]} and {other} did not score the same samples in the "
                                          rf"same order: they scored different data \(data_path .*train.npz against "
                                          rf".*other.npz\)"):
        evaluate_ensemble(cfg, [])
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_each_member_is_checked_once_and_the_bins_are_those_it_was_loaded_with(sweep, cfg_factory, monkeypatch):
    """The ensemble checks every member before it scores any (``check_ensemble_before_loading``);
    scoring a member does not check it again, and the ensemble's ECE bins are those
    ``load_for_scoring`` chose for its first member (here 7, as if its run had them)."""
    folder, ckpts, _ = sweep
    checked = []

    def counted(cfg):
        checked.append(str(cfg.ckpt_path))
        return check_before_loading(cfg)

    monkeypatch.setattr("litlab.ensemble_eval.check_before_loading", counted)
    monkeypatch.setattr("litlab.evaluation.check_before_loading", counted)
    monkeypatch.setattr("litlab.evaluation.calibration_bins", lambda cfg, run_cfg: 7)
    cfg = _eval_cfg(cfg_factory, [str(c) for c in ckpts[:2]], name="once")
    with torch.no_grad():
        evaluate_ensemble(cfg, [])
    assert checked == [str(c) for c in ckpts[:2]]
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["calibration_bins"] == 7
    # called alone, a member is checked as eval checks one checkpoint
    with pytest.raises(LitlabError, match=r"split must be one of test, val, got 'train'"):
        member_probabilities(member_cfg(_eval_cfg(cfg_factory, [], "split=train", name="alone"), ckpts[0]), [])
    assert checked[2:] == [str(ckpts[0])]


@pytest.mark.parametrize("change,match", [
    (dict(labels=torch.tensor([0, 2, 1])), r"their labels differ from sample 1 on"),
    (dict(labels=torch.tensor([0, 1])), r"they scored 3 and 2 samples"),
    (dict(classes=4), r"they predict 3 and 4 classes"),
    (dict(scored={"test_split": "val", "data": "D"}), r"test_split test against val"),
])
def test_members_that_scored_other_samples_are_refused(change, match):
    first = {"path": "a.ckpt", "labels": torch.tensor([0, 1, 2]), "classes": 3,
             "scored": {"test_split": "test", "data": "D"}}
    with pytest.raises(LitlabError, match=r"members a\.ckpt and b\.ckpt .*" + match):
        check_same_samples(first, {**first, "path": "b.ckpt", **change})


def test_checks_before_loading(sweep, cfg_factory, tmp_path):
    folder, ckpts, _ = sweep
    # split=val: each fold model has its own validation split
    with pytest.raises(LitlabError, match=r"split=val: .* each member has a different validation split .* split=test"):
        check_before_loading(_eval_cfg(cfg_factory, [str(c) for c in ckpts], "split=val"))
    with pytest.raises(LitlabError, match=r"ckpt_path=\[\] lists no checkpoint"):
        check_before_loading(_eval_cfg(cfg_factory, []))
    empty = tmp_path / "failed_sweep"
    (empty / "0" / ".hydra").mkdir(parents=True)
    with pytest.raises(LitlabError, match=r"is a sweep folder, but none of its 1 job folders has a "
                                          r"checkpoints/best.ckpt"):
        check_before_loading(_eval_cfg(cfg_factory, str(empty)))
    with pytest.raises(LitlabError, match=r"ckpt_path=.*missing.ckpt does not exist"):
        check_before_loading(_eval_cfg(cfg_factory, [str(ckpts[0]), str(tmp_path / "missing.ckpt")]))
    with pytest.raises(LitlabError, match=r"lists .* a folder without a checkpoints/best.ckpt"):
        check_before_loading(_eval_cfg(cfg_factory, [str(ckpts[0]), str(tmp_path)]))
    with pytest.raises(LitlabError, match=r"lists .*best.ckpt twice"):
        check_before_loading(_eval_cfg(cfg_factory, [str(ckpts[0]), str(ckpts[0].parent.parent)]))
    with pytest.raises(LitlabError, match=r"An ensemble .* is evaluated in one process, and trainer.devices=2"):
        check_before_loading(_eval_cfg(cfg_factory, [str(c) for c in ckpts], "trainer=ddp_cpu"))
    with pytest.raises(LitlabError, match=r"trainer.devices=auto, .* may ask for several processes \(auto\) .* "
                                          r"Give trainer.devices=1"):
        check_before_loading(_eval_cfg(cfg_factory, [str(c) for c in ckpts], "trainer.devices=auto"))


def test_split_val_of_members_that_held_out_other_samples_is_refused(sweep, cfg_factory, tmp_path):
    """Two fold-0 models of an npz whose x_train is sorted by class, one with data.split_seed=1: the
    same (folds, fold) and the same labels in order, but other validation samples."""
    folder, ckpts, _ = sweep
    x, y = (np.load(folder.parent.parent / "train.npz")[k] for k in ("x_train", "y_train"))
    order = np.argsort(y, kind="stable")
    path = write_npz(tmp_path / "sorted.npz", x_train=x[order], y_train=y[order], x_val=None, y_val=None)
    members = []
    for seed in (0, 1):  # the fold model's checkpoint, its run record now of that file and split seed
        ckpt = torch.load(ckpts[0], map_location="cpu", weights_only=False)
        ckpt["litlab"]["config"]["data"].update(path=str(path), split_seed=seed)
        members.append(tmp_path / f"seed{seed}.ckpt")
        torch.save(ckpt, members[-1])
    cfg = _eval_cfg(cfg_factory, [str(m) for m in members], "split=val")
    with torch.no_grad(), pytest.raises(LitlabError, match=rf"members {members[0]} and {members[1]} did not score "
                                                           rf"the same samples .* the same labels, but other inputs "
                                                           rf".*data.split_seed=0 against data.split_seed=1"):
        evaluate_ensemble(cfg, [])
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_the_same_checkpoint_under_two_paths_is_refused(sweep, cfg_factory, tmp_path):
    folder, ckpts, _ = sweep
    copy = shutil.copy(ckpts[0], tmp_path / "copy.ckpt")
    cfg = _eval_cfg(cfg_factory, [str(ckpts[0]), str(ckpts[1]), str(copy)])
    with pytest.raises(LitlabError, match=rf"members {ckpts[0]} and {copy} are the same checkpoint"):
        evaluate_ensemble(cfg, [])
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_part_of_the_split_is_recorded_and_a_folder_of_one_member_is_no_temperature(sweep, cfg_factory, capsys):
    folder, ckpts, _ = sweep
    cfg = _eval_cfg(cfg_factory, [str(ckpts[0])], "+trainer.limit_test_batches=2")
    with torch.no_grad():
        evaluate_ensemble(cfg, ["data.batch_size=8"])
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["samples"] == 16 and record["partial_data"] == {"limit_test_batches": 2}
    assert "litlab eval of an ensemble of 1 member (their" in capsys.readouterr().out
    with pytest.raises(LitlabError, match=r"the record of an ensemble eval of 1 member\(s\) .* records no temperature "
                                          rf"for the checkpoint ckpt_path={ckpts[0]} \(matched by sha256"):
        eval_record_temperature(Path(cfg.paths.output_dir), ckpts[0])


@pytest.mark.slow
def test_the_command_line_evaluates_a_sweep_folder_and_refuses_ddp_before_torch(sweep, tmp_path):
    folder, ckpts, _ = sweep
    stderr = refused_before_torch("litlab.eval", [f"ckpt_path={folder}", "trainer=ddp_cpu"], tmp_path)
    assert "is evaluated in one process" in stderr
    done = run_cli("litlab.eval", f"ckpt_path={folder}", f"hydra.run.dir={tmp_path / 'ev'}", cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(record["members"]) == FOLDS and "test/acc" in record
    assert f"skipping job {folder / '3'}" in done.stderr + (tmp_path / "ev" / "eval.log").read_text()
