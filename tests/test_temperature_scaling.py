"""Temperature scaling: the fit against a grid search, ``litlab.eval temperature=...`` (T fitted on
the validation split or given, figures at T = 1 beside the scaled ones, accuracy unchanged) and
``litlab.predict temperature=...`` (probabilities softmax(logits / T)), and the refusals."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from litlab.callbacks.calibration import CalibrationBins
from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.prediction.checkpoint_model import load_predictor
from litlab.prediction.run import predict
from litlab.training import train
from tests.conftest import refused_before_torch


def grid_minimum(logits: torch.Tensor, targets: torch.Tensor, low: float, high: float, n: int = 4001) -> float:
    """The T of the lowest NLL on a fine grid of log T (brute force, no search)."""
    grid = torch.linspace(math.log(low), math.log(high), n, dtype=torch.float64).exp()  # (n,)
    nll = torch.stack([F.cross_entropy(logits.double() / t, targets) for t in grid])  # (n,)
    return float(grid[nll.argmin()])


def synthetic(n: int, classes: int, sharpness: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(base); logits = base * sharpness (sharpness > 1: overconfident)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, classes, generator=g, dtype=torch.float64) * 2
    targets = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    return base * sharpness, targets


@pytest.mark.parametrize("sharpness,classes,seed", [(1.0, 10, 0), (4.0, 3, 1), (0.3, 5, 2)])
def test_the_fit_is_the_grid_search_minimum(sharpness, classes, seed):
    from litlab.tuning.temperature_fit import fit_temperature, mean_nll

    logits, targets = synthetic(2000, classes, sharpness, seed)
    fit = fit_temperature(logits, targets)
    best = grid_minimum(logits, targets, fit.temperature / 2, fit.temperature * 2)
    assert fit.temperature == pytest.approx(best, rel=1e-3)
    # the data were made with T = sharpness: the fit finds about that, and lowers the NLL
    assert fit.temperature == pytest.approx(sharpness, rel=0.15)
    assert fit.nll_after <= fit.nll_before and fit.nll_after == pytest.approx(mean_nll(logits, targets, best), abs=1e-9)
    # deterministic: the same logits give the same T
    assert fit_temperature(logits, targets).temperature == fit.temperature


def test_the_fit_refuses_data_without_a_minimum():
    """Every validation sample right: the NLL falls as T goes to 0, so no T is 'fitted'."""
    from litlab.tuning.temperature_fit import fit_temperature

    targets = torch.arange(30) % 3
    logits = F.one_hot(targets, 3).double() * 3
    with pytest.raises(LitlabError, match=r"temperature=auto: the NLL of the validation split \(30 samples\) keeps "
                                          r"falling up to T = 0\.01.*every sample is predicted right"):
        fit_temperature(logits, targets)


# --- eval --------------------------------------------------------------------------------------


def overlapping_classes(path: Path) -> Path:
    """An npz of 3 classes that overlap (a small offset per class in noise), so that a trained
    model gets some validation samples wrong: 400 training, 100 validation and 100 test samples."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 400), ("val", 100), ("test", 100)):
        y = rng.integers(0, 3, n)
        arrays[f"x_{split}"] = (rng.normal(size=(n, 1, 6, 6)) + 0.15 * y[:, None, None, None]).astype(np.float32)
        arrays[f"y_{split}"] = y
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(best.ckpt of a 2-epoch MLP on a small npz, the same with its last layer x5 (overconfident), npz)."""
    from tests.conftest import make_cfg

    root = tmp_path_factory.mktemp("tscale")
    path = overlapping_classes(root / "arrays.npz")
    train(make_cfg(["model=mlp", "data=npz", f"data.path={path}"], root / "run", root / "data"))
    best = Path(json.loads((root / "run" / "metrics.json").read_text())["best_ckpt"])
    ckpt = torch.load(best, weights_only=False)
    last = max((k for k, v in ckpt["state_dict"].items() if k.endswith(".weight") and v.ndim == 2),
               key=lambda k: int(k.split(".")[-2]))
    for name in (last, last.replace(".weight", ".bias")):
        ckpt["state_dict"][name] = ckpt["state_dict"][name] * 5  # logits x5
    sharp = root / "sharp.ckpt"
    torch.save(ckpt, sharp)
    return best, sharp, path


def _eval(cfg_factory, tmp_path, ckpt, name, *given):
    cfg = cfg_factory([f"ckpt_path={ckpt}", *given], name=name, config_name="eval", fast=False)
    with torch.no_grad():
        metrics = evaluate(cfg, [])
    return metrics, json.loads((tmp_path / name / "metrics.json").read_text())


def split_arrays(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as f:
        return torch.from_numpy(f[f"x_{split}"]), torch.from_numpy(f[f"y_{split}"]).long()




def ece_of(ckpt: Path, path: Path, temperature: float, bins: int = 15, split: str = "test") -> float:
    """The ECE of softmax(logits / T) on the npz's split, computed outside eval."""
    x, y = split_arrays(path, split)
    probs = (load_predictor(str(ckpt), torch.device("cpu")).logits(x).double() / temperature).softmax(-1)
    calibration = CalibrationBins.empty(bins, "cpu")
    conf, pred = probs.max(-1)
    calibration.add(conf, pred == y)
    return float(calibration.ece())


def test_auto_on_an_overconfident_model_fits_t_above_1_and_lowers_ece_and_nll(checkpoints, cfg_factory, tmp_path,
                                                                             capsys):
    best, sharp, path = checkpoints
    plain, _ = _eval(cfg_factory, tmp_path, sharp, "plain")
    metrics, record = _eval(cfg_factory, tmp_path, sharp, "auto", "temperature=auto")
    t = record["temperature"]
    assert t["fitted_on"] == "val" and t["val_samples"] == 100 and t["ckpt_path"] == str(sharp)
    assert t["value"] > 1 and t["val_nll"] < t["val_nll_at_t1"]
    assert metrics["test/ece"] < metrics["test/ece_at_t1"] and metrics["test/loss"] < metrics["test/loss_at_t1"]
    # accuracy unchanged; the T = 1 figures are those of an evaluation without temperature
    assert metrics["test/acc"] == plain["test/acc"]
    assert metrics["test/loss_at_t1"] == pytest.approx(plain["test/loss"], abs=1e-6)
    assert metrics["test/ece_at_t1"] == pytest.approx(plain["test/ece"], abs=1e-6)
    assert record["test/ece"] == metrics["test/ece"] and record["test/loss_at_t1"] == metrics["test/loss_at_t1"]
    # the val NLL at T = 1 is the validation split's loss, as split=val scores it
    val, _ = _eval(cfg_factory, tmp_path, sharp, "val", "split=val")
    assert t["val_nll_at_t1"] == pytest.approx(val["val/loss"], abs=1e-5)
    # the evaluation report's hook saw the scaled logits: its ECE is that of softmax(logits / T)
    assert metrics["test/ece"] == pytest.approx(ece_of(sharp, path, t["value"]), abs=1e-5)
    # logits x5 exactly: the fit on the unscaled checkpoint finds T / 5
    _, unscaled = _eval(cfg_factory, tmp_path, best, "auto_best", "temperature=auto")
    assert unscaled["temperature"]["value"] == pytest.approx(t["value"] / 5, rel=1e-5)
    out = capsys.readouterr().out
    width = len("test/loss_at_t1")  # the longest key: the values' column starts after it, on every row
    assert f"  {'temperature':<{width}} {t['value']:.6f} (fitted on val: NLL {t['val_nll_at_t1']:.6f} at T=1 -> " in out
    table = out.split("\nlitlab eval of ")[2].splitlines()[1:]  # the rows of the auto eval of sharp.ckpt
    assert {row[2:2 + width].strip() for row in table} >= {"test/loss_at_t1", "test/ece", "temperature", "metrics"}
    assert {len(row) - len(row[2 + width:].lstrip()) for row in table} == {3 + width}, table


def test_a_given_temperature_is_used_as_it_is(checkpoints, cfg_factory, tmp_path):
    best, _, path = checkpoints
    plain, _ = _eval(cfg_factory, tmp_path, best, "plain")
    metrics, record = _eval(cfg_factory, tmp_path, best, "given", "temperature=2.5")
    assert record["temperature"] == {"value": 2.5, "given": True, "ckpt_path": str(best), "ckpt_bytes": best.stat().st_size,
                                     "ckpt_sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    assert metrics["test/acc"] == plain["test/acc"] and metrics["test/ece_at_t1"] == pytest.approx(plain["test/ece"])
    assert metrics["test/ece"] == pytest.approx(ece_of(best, path, 2.5), abs=1e-5)
    x, y = split_arrays(path, "test")
    logits = load_predictor(str(best), torch.device("cpu")).logits(x).double()
    assert metrics["test/loss"] == pytest.approx(float(F.cross_entropy(logits / 2.5, y)), abs=1e-5)
    assert "temperature" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_tensorboard_gets_the_scaled_pass_only(checkpoints, cfg_factory, tmp_path):
    """The fit runs without loggers and the T = 1 figures are not logged: one test/ece (the scaled
    one) and one reliability diagram in TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, sharp, _ = checkpoints
    metrics, _ = _eval(cfg_factory, tmp_path, sharp, "tb", "temperature=auto", "logger=tensorboard")
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("test/ece")] == [pytest.approx(metrics["test/ece"])]
    assert metrics["test/ece"] < metrics["test/ece_at_t1"]
    assert len(events.Images("test/reliability")) == 1 and "val/ece" not in events.Tags()["scalars"]


def test_calibration_bins_given_to_eval_are_used(checkpoints, cfg_factory, tmp_path):
    """+callbacks.eval_report.calibration_bins=4 was accepted and test/ece kept the run's 15 bins."""
    best, _, path = checkpoints
    metrics, record = _eval(cfg_factory, tmp_path, best, "bins4", "+callbacks.eval_report.calibration_bins=4")
    assert metrics["test/ece"] == pytest.approx(ece_of(best, path, 1.0, bins=4), abs=1e-6)
    assert ece_of(best, path, 1.0, bins=4) != pytest.approx(ece_of(best, path, 1.0, bins=15), abs=1e-6)
    assert record["calibration_bins"] == 4


@pytest.mark.parametrize("given,message", [
    (["temperature=auto", "split=val"], "temperature=auto fits T on the validation split, so with split=val"),
    (["temperature=0"], "temperature must be a positive finite number (the logits are divided by it), got 0."),
    (["temperature=-1.5"], "temperature must be a positive finite number (the logits are divided by it), got -1.5."),
    (["temperature=true"], "temperature=true is a yes/no value, not a temperature."),
    (["temperature=warm"], "temperature must be a positive number or auto, got 'warm'."),
    (["+callbacks.eval_report.top_k=3"], "callbacks.eval_report.top_k: eval runs none of the training callbacks"),
    (["+callbacks.eval_report.calibration_bins=0"], "callbacks.eval_report.calibration_bins must be a positive"),
])
def test_eval_refusals_exit_2_before_any_work(checkpoints, tmp_path, given, message):
    best, _, _ = checkpoints
    out = tmp_path / "ev"
    stderr = refused_before_torch("litlab.eval", [f"ckpt_path={best}", *given, f"hydra.run.dir={out}"], tmp_path)
    assert message in " ".join(stderr.split()) and "Traceback" not in stderr
    assert nothing_in(out)


def test_auto_is_refused_where_the_test_split_is_the_validation_split(cfg_factory, tmp_path):
    """An image folder without test/ scores its validation split as test/*: fitting T there too
    scored the calibration on the samples it was fitted to (as split=val, which is refused)."""
    from tests.conftest import make_cfg
    from tests.helpers import write_image_folder

    root = write_image_folder(tmp_path / "imgs", splits=("train", "val"), per_class=4)
    train(make_cfg(["model=mlp", "data=imagefolder", f"data.root={root}", "trainer.max_epochs=1"], tmp_path / "run",
                   tmp_path / "data"))
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())["best_ckpt"]
    with pytest.raises(LitlabError, match=rf"temperature=auto fits T on the validation split, and data.root={root} has "
                                          r"no test/ folder, so its test split is the validation split"):
        _eval(cfg_factory, tmp_path, best, "ev", "temperature=auto")
    assert not (tmp_path / "ev" / "metrics.json").exists()
    # a given T is scored as it is, on the split the folder has
    metrics, record = _eval(cfg_factory, tmp_path, best, "ev_given", "temperature=2.0")
    assert record["temperature"]["given"] and record["test_split"] == "val" and "test/ece_at_t1" in metrics


def test_auto_without_validation_batches_says_so(checkpoints, cfg_factory, tmp_path):
    """trainer.limit_val_batches=0 runs no validation batch: a ValueError from torch.cat before."""
    best, _, _ = checkpoints
    with pytest.raises(LitlabError, match=r"temperature=auto: the validation split gave no logits to fit T on \(no "
                                          r"batch of it ran: an empty split, or trainer.limit_val_batches=0\)"):
        _eval(cfg_factory, tmp_path, best, "ev", "temperature=auto", "+trainer.limit_val_batches=0")
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_the_t1_figures_come_from_the_scored_pass(checkpoints, cfg_factory, tmp_path, monkeypatch):
    """The split was read twice (a pass at T = 1, then the scaled one); the T = 1 figures now come
    from the scored pass's logits before the division, and are those of an eval without temperature."""
    import lightning.pytorch as L

    best, _, _ = checkpoints
    plain, _ = _eval(cfg_factory, tmp_path, best, "plain")
    passes = []
    test = L.Trainer.test
    monkeypatch.setattr(L.Trainer, "test", lambda self, *a, **k: passes.append(1) or test(self, *a, **k))
    metrics, record = _eval(cfg_factory, tmp_path, best, "given", "temperature=2.5")
    assert len(passes) == 1
    assert metrics["test/loss_at_t1"] == pytest.approx(plain["test/loss"], abs=1e-6)
    assert metrics["test/ece_at_t1"] == pytest.approx(plain["test/ece"], abs=1e-6)
    assert metrics["test/acc"] == plain["test/acc"] and metrics["test/loss"] != pytest.approx(plain["test/loss"])
    assert record["test/loss_at_t1"] == metrics["test/loss_at_t1"]


def test_auto_on_two_processes_fits_the_t_of_one_process(checkpoints, cfg_factory, tmp_path):
    """temperature=auto on several processes was refused (on the command line and in the fit); each
    rank now fits T on the validation logits of all ranks, each sample once: 99 samples, so one
    rank holds one fewer. T and the figures are those of the same eval in one process."""
    from tests.conftest import run_cli

    _, sharp, path = checkpoints
    with np.load(path) as f:
        arrays = dict(f)
    odd = tmp_path / "odd.npz"
    np.savez(odd, **{**arrays, **{f"{a}_{s}": arrays[f"{a}_{s}"][:99] for a in "xy" for s in ("val", "test")}})
    cfg = cfg_factory([f"ckpt_path={sharp}", "temperature=auto"], name="one", config_name="eval", fast=False)
    with torch.no_grad():
        one = evaluate(cfg, [f"data.path={odd}"])
    two = tmp_path / "two"
    done = run_cli("litlab.eval", f"ckpt_path={sharp}", "temperature=auto", f"data.path={odd}", "trainer=ddp_cpu",
                   "trainer.devices=2", f"hydra.run.dir={two}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((two / "metrics.json").read_text())
    t, one_t = record["temperature"], json.loads((tmp_path / "one" / "metrics.json").read_text())["temperature"]
    assert t["val_samples"] == one_t["val_samples"] == 99 and record["samples"] == 99
    assert t["value"] == pytest.approx(one_t["value"], abs=1e-6) and t["value"] > 1
    assert t["val_nll"] == pytest.approx(one_t["val_nll"], abs=1e-6)
    for key in ("test/ece", "test/loss", "test/acc", "test/ece_at_t1", "test/loss_at_t1"):
        assert record[key] == pytest.approx(one[key], abs=1e-4), key
    assert done.stdout.count("litlab eval of") == 1  # rank 0 prints and writes; the other rank neither


def test_a_cut_validation_on_two_processes_fits_on_the_samples_of_one(checkpoints, cfg_factory, tmp_path):
    """With trainer.limit_val_batches one process reads the split in a fixed random order, and the
    ranks of two read the first samples in stored order: T was fitted on other samples (3.3979
    against 3.5686 here). Lightning's limit counts batches per rank, so 2 processes with 2 batches
    of 10 read the 40 samples one process reads with 4; now they are the same samples, and the same T."""
    from tests.conftest import run_cli

    _, sharp, path = checkpoints
    cut = ["temperature=auto", f"data.path={path}", "data.batch_size=10"]
    cfg = cfg_factory([f"ckpt_path={sharp}", "temperature=auto", "+trainer.limit_val_batches=4"], name="one",
                      config_name="eval", fast=False)
    with torch.no_grad():
        evaluate(cfg, cut[1:])  # the data's keys, over the checkpoint's data config
    two = tmp_path / "two"
    done = run_cli("litlab.eval", f"ckpt_path={sharp}", *cut, "+trainer.limit_val_batches=2", "trainer=ddp_cpu",
                   "trainer.devices=2", f"hydra.run.dir={two}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    t = json.loads((two / "metrics.json").read_text())["temperature"]
    one_t = json.loads((tmp_path / "one" / "metrics.json").read_text())["temperature"]
    assert t["val_samples"] == one_t["val_samples"] == 40
    assert t["value"] == pytest.approx(one_t["value"], abs=1e-6)
    assert t["val_nll_at_t1"] == pytest.approx(one_t["val_nll_at_t1"], abs=1e-6)


def test_a_failed_fit_on_two_processes_is_said_once(checkpoints, tmp_path):
    """Every rank fits T on the same gathered logits, so a fit that fails fails on every rank: each
    printed the same paragraph. Rank 0 prints it; the run still fails (status 2, recorded)."""
    from tests.conftest import run_cli

    best, _, path = checkpoints
    run = tmp_path / "two"
    done = run_cli("litlab.eval", f"ckpt_path={best}", "temperature=auto", f"data.path={path}", "trainer=ddp_cpu",
                   "trainer.devices=2", "+trainer.limit_val_batches=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("Error:") == 1, done.stderr[-3000:]
    assert "Error: temperature=auto: the validation split gave no logits to fit T on" in done.stderr
    assert "Traceback" not in done.stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("temperature=auto: the validation split")


# --- predict -----------------------------------------------------------------------------------


def nothing_in(folder: Path) -> bool:
    """No file written under ``folder`` (the command line may have made the empty run folder)."""
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def _predict(cfg_factory, tmp_path, ckpt, npz, name, *given):
    cfg = cfg_factory([f"ckpt_path={ckpt}", f"input={npz}", "top_k=3", *given], name=name, config_name="predict",
                      fast=False)
    summary = predict(cfg)
    with open(summary["predictions"], newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((tmp_path / name / "metrics.json").read_text())


def _probs(rows: list[dict], class_names: list[str]) -> torch.Tensor:
    """(N, C) probabilities of the CSV rows, by class index."""
    out = torch.zeros(len(rows), len(class_names), dtype=torch.float64)
    for i, row in enumerate(rows):
        for k in range(1, len(class_names) + 1):
            out[i, class_names.index(row[f"label_{k}"])] = float(row[f"prob_{k}"])
    return out


def _predict_with_the_eval_t(cfg_factory, tmp_path, ckpt, x: torch.Tensor, fitted: dict, name: str) -> None:
    """predict of ``ckpt`` on ``x`` with ``temperature=<tmp_path/fit>`` (the eval that recorded
    ``fitted``) records that T from that folder, and its CSV's probabilities are softmax(logits / T)
    of ``ckpt``'s net on ``x``."""
    np.savez(tmp_path / "inputs.npz", x=x.numpy())
    rows, record = _predict(cfg_factory, tmp_path, ckpt, tmp_path / "inputs.npz", name,
                            f"temperature={tmp_path / 'fit'}")
    t = fitted["temperature"]["value"]
    assert record["temperature"] == {"value": t, "from": str(tmp_path / "fit")}
    predictor = load_predictor(str(ckpt), torch.device("cpu"))
    expected = (predictor.logits(x).double() / t).softmax(-1)
    assert torch.allclose(_probs(rows, predictor.class_names), expected, atol=6e-7)


def test_predict_writes_softmax_of_logits_over_t(checkpoints, cfg_factory, tmp_path):
    best, _, path = checkpoints
    x, _ = split_arrays(path, "test")
    np.savez(tmp_path / "inputs.npz", x=x.numpy())
    predictor = load_predictor(str(best), torch.device("cpu"))
    logits = predictor.logits(x).double()
    plain, _ = _predict(cfg_factory, tmp_path, best, tmp_path / "inputs.npz", "p1")
    scaled, record = _predict(cfg_factory, tmp_path, best, tmp_path / "inputs.npz", "p17", "temperature=1.7")
    assert record["temperature"] == {"value": 1.7, "from": "given"}
    assert torch.allclose(_probs(scaled, predictor.class_names), (logits / 1.7).softmax(-1), atol=6e-7)
    assert torch.allclose(_probs(plain, predictor.class_names), logits.softmax(-1), atol=6e-7)
    # the ranking is the same; the probabilities are not
    assert [[r[f"label_{k}"] for k in (1, 2, 3)] for r in scaled] == [[r[f"label_{k}"] for k in (1, 2, 3)]
                                                                     for r in plain]
    assert any(a["prob_1"] != b["prob_1"] for a, b in zip(scaled, plain))


def test_predict_reads_t_from_an_eval_folder_of_the_same_checkpoint(checkpoints, cfg_factory, tmp_path):
    best, sharp, path = checkpoints
    _, fitted = _eval(cfg_factory, tmp_path, best, "fit", "temperature=auto")
    _predict_with_the_eval_t(cfg_factory, tmp_path, best, split_arrays(path, "test")[0][:20], fitted, "pf")
    # the same folder for another checkpoint, a folder without a temperature: refused, naming both paths
    for ckpt, folder, message in (
            (sharp, tmp_path / "fit", f"the temperature in {tmp_path / 'fit' / 'metrics.json'} was fitted for the "
                                      f"checkpoint {best}, and ckpt_path={sharp} is another file with other contents "
                                      f"({sharp.stat().st_size} bytes, where the eval recorded {best.stat().st_size})"),
            (best, best.parent.parent, f"{best.parent.parent / 'metrics.json'} records no temperature")):
        out = tmp_path / "refused"
        stderr = refused_before_torch("litlab.predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'inputs.npz'}",
                                            f"temperature={folder}", f"hydra.run.dir={out}"], tmp_path)
        assert message in " ".join(stderr.split()) and nothing_in(out)


@pytest.mark.parametrize("value,message", [
    ("auto", "temperature=auto needs labelled data to fit T on, which predict does not have."),
    ("0", "temperature must be a positive finite number"),
    ("false", "temperature=false is a yes/no value"),
    ("no_such_folder", "temperature=no_such_folder is neither a positive number nor a folder."),
])
def test_predict_refusals_exit_2_with_nothing_written(checkpoints, tmp_path, value, message):
    best, _, path = checkpoints
    out = tmp_path / "pr"
    stderr = refused_before_torch("litlab.predict", [f"ckpt_path={best}", f"input={path}", f"temperature={value}",
                                        f"hydra.run.dir={out}"], tmp_path)
    assert message in " ".join(stderr.split()) and nothing_in(out)


def _copy_run(ckpt: Path, folder: Path) -> Path:
    """``ckpt`` copied into ``folder/checkpoints/last.ckpt`` (a run of one's own to rewrite or move)."""
    (folder / "checkpoints").mkdir(parents=True)
    return Path(shutil.copyfile(ckpt, folder / "checkpoints" / "last.ckpt"))


def test_predict_refuses_a_t_whose_checkpoint_was_rewritten_since_the_eval(checkpoints, cfg_factory, tmp_path):
    """A resume that wrote over last.ckpt after the eval: the path matched, and the old T was used."""
    best, sharp, path = checkpoints
    last = _copy_run(best, tmp_path / "run")
    _eval(cfg_factory, tmp_path, last, "fit", "temperature=auto")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=split_arrays(path, "test")[0][:5].numpy())
    data = bytearray(last.read_bytes())
    data[-1] ^= 1  # the same size, other bytes: only the sha256 tells
    for contents in (bytes(data), sharp.read_bytes()):
        last.write_bytes(contents)
        out = tmp_path / "refused"
        stderr = " ".join(refused_before_torch("litlab.predict", [
            f"ckpt_path={last}", f"input={inputs}", f"temperature={tmp_path / 'fit'}", f"hydra.run.dir={out}"],
            tmp_path).split())
        assert (f"temperature={tmp_path / 'fit'}: the checkpoint changed since the eval. The temperature in "
                f"{tmp_path / 'fit' / 'metrics.json'} was fitted for {last} as it was then ({best.stat().st_size} "
                f"bytes, sha256 {hashlib.sha256(best.read_bytes()).hexdigest()[:16]}...), and ckpt_path={last} now "
                f"holds other contents ({len(contents)} bytes") in stderr, stderr
        assert (f"Run python -m litlab.eval ckpt_path={last} temperature=auto again" in stderr and nothing_in(out))


def test_predict_takes_the_t_of_a_moved_run_with_the_same_checkpoint(checkpoints, cfg_factory, tmp_path):
    """A run folder moved after its eval holds the same bytes: refused as "another model's T" before."""
    best, _, path = checkpoints
    last = _copy_run(best, tmp_path / "run")
    _, fitted = _eval(cfg_factory, tmp_path, last, "fit", "temperature=auto")
    (tmp_path / "run").rename(tmp_path / "moved")
    moved = tmp_path / "moved" / "checkpoints" / "last.ckpt"
    _predict_with_the_eval_t(cfg_factory, tmp_path, moved, split_arrays(path, "test")[0][:10], fitted, "pm")


def test_predict_says_a_t_given_to_the_eval_was_given(checkpoints, cfg_factory, tmp_path, capsys):
    """An eval's temperature=2.5 was reported by predict as "fitted by eval in ..."."""
    best, _, path = checkpoints
    _eval(cfg_factory, tmp_path, best, "given", "temperature=2.5")
    _eval(cfg_factory, tmp_path, best, "fit", "temperature=auto")
    np.savez(tmp_path / "inputs.npz", x=split_arrays(path, "test")[0][:5].numpy())
    capsys.readouterr()
    for name, how in (("given", "given to the eval in"), ("fit", "fitted by eval in")):
        _, record = _predict(cfg_factory, tmp_path, best, tmp_path / "inputs.npz", f"p_{name}",
                             f"temperature={tmp_path / name}")
        value = record["temperature"]["value"]
        assert f"  temperature  {value:.6f} ({how} {tmp_path / name})\n" in capsys.readouterr().out
    assert value != 2.5
