"""``litlab.predict`` with an ensemble ('ckpt_path=[A,B]' or a sweep folder): the CSV holds the
average of the members' own probabilities; members that cannot be averaged are refused up front."""

from __future__ import annotations

import builtins
import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from litlab.errors import LitlabError
from litlab.prediction.inputs import image_batches
from litlab.prediction.checkpoint_model import load_predictor
from litlab.prediction.run import predict
from litlab.temperature_scaling import temperature_record
from litlab.training import train
from litlab.tuning.temperature_setting import checkpoint_fingerprint
from tests.conftest import make_cfg, refused_before_torch, run_cli

# one epoch on a few batches: the members need only differ, not be good
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1",
         "+trainer.limit_test_batches=1", "logger=none"]
# member 1 reads the 8x8 grayscale digits as 12x12 RGB: image files still mean one picture to all
MEMBERS = [["seed=1"], ["seed=2", "data.image_size=[12,12]", "data.channels=3"], ["seed=3"]]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    """Three digits models laid out as a sweep folder (jobs 0/, 1/, 2/ with .hydra/) and a fourth job
    that failed before its first checkpoint; returns (sweep folder, [member checkpoints])."""
    folder = tmp_path_factory.mktemp("ens_predict") / "multiruns" / "sweep"
    ckpts = []
    for job, extra in enumerate(MEMBERS):
        (folder / str(job) / ".hydra").mkdir(parents=True)
        train(make_cfg(QUICK + extra, folder / str(job), data_dir))
        ckpts.append(folder / str(job) / "checkpoints" / "best.ckpt")
    (folder / "3" / ".hydra").mkdir(parents=True)
    (folder / "multirun.yaml").write_text("{}\n")
    return folder, ckpts


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir, sweep):
    """A folder of six digit images and one text file (an error row), and an .npz of the same pixels."""
    root = tmp_path_factory.mktemp("ens_inputs")
    files = sorted((data_dir / "digits" / "test").rglob("*.png"))[::60][:6]
    (root / "pics").mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, root / "pics" / f"{i}.png")
    (root / "pics" / "notes.txt").write_text("not an image")
    np.savez(root / "x.npz", x=np.stack([np.asarray(Image.open(f))[None] for f in files]))  # (6, 1, 8, 8) uint8
    return root


def _run(cfg_factory, ckpt_path, input_path, *given, name="ens"):
    cfg = cfg_factory([f"input={input_path}", *given], name=name, config_name="predict", fast=False)
    OmegaConf.update(cfg, "ckpt_path", ckpt_path, force_add=True)
    summary = predict(cfg)
    with open(summary["predictions"], newline="") as f:
        return cfg, summary, list(csv.DictReader(f))


def _probabilities(rows: list[dict]) -> dict[str, dict[str, float]]:
    """input -> {class: probability} of the rows with predictions (top_k=10: every class listed)."""
    return {r["input"]: {r[f"label_{i}"]: float(r[f"prob_{i}"]) for i in range(1, 11)} for r in rows if not r["error"]}


def _members_mean(cfg_factory, ckpts, input_path, temperatures=None) -> dict[str, dict[str, float]]:
    """The mean over the members of what predict of each member alone writes."""
    alone = []
    for i, ckpt in enumerate(ckpts):
        given = [f"temperature={temperatures[i]}"] if temperatures else []
        alone.append(_probabilities(_run(cfg_factory, str(ckpt), input_path, "top_k=10", *given, name=f"a{i}")[2]))
    return {name: {c: float(np.mean([a[name][c] for a in alone])) for c in alone[0][name]} for name in alone[0]}


def _assert_average(rows, expected):
    got = _probabilities(rows)
    assert sorted(got) == sorted(expected)
    for name, probs in got.items():
        # each member's CSV rounds to 1e-6, and so does the ensemble's
        assert probs == pytest.approx(expected[name], abs=1.5e-6), name
        best = max(expected[name].values())
        assert probs[rows[[r["input"] for r in rows].index(name)]["label_1"]] == pytest.approx(best, abs=1.5e-6)


def test_image_files_give_the_average_of_each_members_own_predictions(sweep, inputs, cfg_factory, capsys):
    folder, ckpts = sweep
    cfg, summary, rows = _run(cfg_factory, [str(c) for c in ckpts], inputs / "pics", "top_k=10")
    _assert_average(rows, _members_mean(cfg_factory, ckpts, inputs / "pics"))
    errors = [r for r in rows if r["error"]]
    assert [Path(r["input"]).name for r in errors] == ["notes.txt"]  # listed once, not once per member
    assert errors[0]["error"].startswith("not a readable image: UnidentifiedImageError: cannot identify image file "
                                         f"'{inputs / 'pics' / 'notes.txt'}'")
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["ensemble"] is True and record["status"] == "completed" and record["task"] == "predict"
    assert [m["ckpt_path"] for m in record["members"]] == [str(c) for c in ckpts]
    assert [m["ckpt_sha256"] for m in record["members"]] == [hashlib.sha256(c.read_bytes()).hexdigest() for c in ckpts]
    # member 1 alone resizes every 8x8 file to its 12x12; the others none
    assert [m["resized"] for m in record["members"]] == [0, 6, 0] and record["resized"] == 6
    assert (record["predicted"], record["errors"]) == (6, 1)
    out = capsys.readouterr().out
    assert "litlab predict with an ensemble of 3 members (their probabilities averaged):" in out
    assert f"member 2     {ckpts[2]}" in out


def test_a_sweep_folder_gives_the_list_forms_rows_and_skips_its_failed_job(sweep, inputs, cfg_factory, caplog):
    folder, ckpts = sweep
    with caplog.at_level(logging.WARNING):
        cfg, _, rows = _run(cfg_factory, str(folder), inputs / "pics", name="swept")
    assert f"skipping job {folder / '3'}" in caplog.text
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["ckpt_path"] == str(folder) and [m["ckpt_path"] for m in record["members"]] == [str(c) for c in ckpts]
    # run folders listed as members mean their checkpoints/best.ckpt, as eval's ensemble reads them
    _, _, listed = _run(cfg_factory, [str(c.parent.parent) for c in ckpts], inputs / "pics", name="listed")
    assert listed == rows and len(rows) == 7
    # the npz read once is every member's samples: here members 0 and 2 (one shape), as each alone reads it
    _, _, npz_rows = _run(cfg_factory, [str(ckpts[0]), str(ckpts[2])], inputs / "x.npz", "top_k=10", name="npz")
    _assert_average(npz_rows, _members_mean(cfg_factory, [ckpts[0], ckpts[2]], inputs / "x.npz"))


def test_an_npz_for_members_of_other_shapes_is_refused_naming_both(sweep, inputs, cfg_factory):
    """The sweep's member 1 takes 12x12 RGB: one array cannot be (1, 8, 8) and (3, 12, 12) samples.
    An earlier CSV at output= is kept as it was."""
    folder, ckpts = sweep
    kept = inputs.parent / "kept.csv"
    kept.write_text("input,label_1,prob_1,error\nold,1,0.5,\n")
    with pytest.raises(LitlabError) as err:
        _run(cfg_factory, str(folder), inputs / "x.npz", f"output={kept}", name="shapes")
    assert str(err.value) == (
        f"input={inputs / 'x.npz'}: the ensemble's members {ckpts[0]} and {ckpts[1]} take other samples (images of "
        f"shape (1, 8, 8), 8-bit pixels against images of shape (3, 12, 12), 8-bit pixels), so one array cannot mean "
        f"the same to both. Give image files (each member decodes and resizes them as it does alone), or combine "
        f"models trained on data of one shape and scale.")
    assert kept.read_text() == "input,label_1,prob_1,error\nold,1,0.5,\n"


def _with_classes(ckpt: Path, path: Path, names: list[str]) -> Path:
    """A copy of ``ckpt`` whose record names other classes (the weights as they were)."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    saved["litlab"]["data"]["class_names"] = names
    torch.save(saved, path)
    return path


@pytest.mark.parametrize("names,why", [
    ([str(9 - i) for i in range(10)], "the same classes in another order (class 0 is 0 and 9)"),
    ([f"c{i}" for i in range(10)], "other classes (10: 0, 1, 2, 3, 4 and 5 more against 10: c0, c1, c2, c3, c4 and "
                                   "5 more)"),
])
def test_members_of_other_classes_are_refused_before_any_row(sweep, inputs, cfg_factory, tmp_path, names, why):
    folder, ckpts = sweep
    other = _with_classes(ckpts[2], tmp_path / "other.ckpt", names)
    kept = tmp_path / "kept.csv"
    kept.write_text("input,label_1,prob_1,error\nold,1,0.5,\n")
    with pytest.raises(LitlabError) as err:
        _run(cfg_factory, [str(ckpts[0]), str(other)], inputs / "pics", f"output={kept}")
    assert str(err.value) == (f"The ensemble's members {ckpts[0]} and {other} predict {why}, so their probabilities "
                              f"cannot be averaged class by class. Combine models trained on the same classes (the "
                              f"same data, e.g. the jobs of one sweep).")
    assert kept.read_text() == "input,label_1,prob_1,error\nold,1,0.5,\n"


def test_the_same_checkpoint_twice_and_a_missing_member_are_refused(sweep, inputs, cfg_factory, tmp_path):
    folder, ckpts = sweep
    copy = shutil.copy(ckpts[1], tmp_path / "copy.ckpt")
    with pytest.raises(LitlabError, match=rf"members {ckpts[1]} and {copy} are the same checkpoint \(the same sha256"):
        _run(cfg_factory, [str(ckpts[1]), str(copy)], inputs / "pics")
    with pytest.raises(LitlabError, match=r"ckpt_path lists .*best.ckpt twice"):
        _run(cfg_factory, [str(ckpts[0]), str(ckpts[0].parent.parent)], inputs / "pics")
    with pytest.raises(LitlabError, match=rf"ckpt_path={tmp_path / 'gone.ckpt'} does not exist"):
        _run(cfg_factory, [str(ckpts[0]), str(tmp_path / "gone.ckpt")], inputs / "pics")
    assert not (tmp_path / "ens" / "predictions.csv").exists()  # refused before the CSV was begun


def test_each_member_takes_its_own_temperature(sweep, inputs, cfg_factory, tmp_path):
    """A number is every member's T; an ensemble eval's folder gives each member the T it recorded
    for that checkpoint's sha256 (here written as eval writes it)."""
    folder, ckpts = sweep
    pair = [ckpts[0], ckpts[2]]
    _, _, rows = _run(cfg_factory, [str(c) for c in pair], inputs / "x.npz", "top_k=10", "temperature=2.0")
    _assert_average(rows, _members_mean(cfg_factory, pair, inputs / "x.npz", [2.0, 2.0]))
    evals = tmp_path / "ens_eval"
    evals.mkdir()
    members = [{"ckpt_path": str(c), "temperature": {"value": t, "fitted_on": "val",
                                                      "ckpt_sha256": hashlib.sha256(c.read_bytes()).hexdigest()}}
               for c, t in zip(pair, (2.0, 0.5))]
    (evals / "metrics.json").write_text(json.dumps({"task": "eval", "status": "completed", "ensemble": True,
                                                    "members": members}))
    cfg, summary, rows = _run(cfg_factory, [str(c) for c in pair], inputs / "x.npz", "top_k=10",
                              f"temperature={evals}", name="fitted")
    _assert_average(rows, _members_mean(cfg_factory, pair, inputs / "x.npz", [2.0, 0.5]))
    assert [m["temperature"]["value"] for m in summary["members"]] == [2.0, 0.5]
    with pytest.raises(LitlabError, match=rf"temperature={evals}: .* records no temperature for the checkpoint of "
                                          rf"member\(s\) {ckpts[1]} \(matched by sha256"):
        _run(cfg_factory, [str(ckpts[0]), str(ckpts[1])], inputs / "x.npz", f"temperature={evals}", name="miss")


def _eval_records(folder: Path, pair: list[Path]) -> tuple[Path, Path]:
    """The folders of an eval of ``pair[0]`` alone with temperature=2.0 and of an ensemble eval of
    ``pair`` with T 2.0 and 0.5, their metrics.json as eval writes them."""
    one, ensemble = folder / "eval_one", folder / "eval_ensemble"
    one.mkdir()
    ensemble.mkdir()
    (one / "metrics.json").write_text(json.dumps({"task": "eval", "status": "completed", "ckpt_path": str(pair[0]),
                                                  "temperature": temperature_record(2.0, None, str(pair[0]),
                                                                                    checkpoint_fingerprint(pair[0]))}))
    members = [{"ckpt_path": str(c), "temperature": temperature_record(t, None, str(c), checkpoint_fingerprint(c))}
               for c, t in zip(pair, (2.0, 0.5))]
    (ensemble / "metrics.json").write_text(json.dumps({"task": "eval", "status": "completed", "ensemble": True,
                                                       "ckpt_path": list(map(str, pair)), "members": members}))
    return one, ensemble


def test_a_members_t_is_found_by_sha256_in_a_single_or_an_ensemble_eval(sweep, inputs, cfg_factory, tmp_path):
    """A one-member list took no single eval's folder, and one checkpoint no ensemble eval's
    folder, though each record holds that checkpoint's T."""
    folder, ckpts = sweep
    one, ensemble = _eval_records(tmp_path, [ckpts[0], ckpts[2]])
    _, summary, rows = _run(cfg_factory, [str(ckpts[0])], inputs / "x.npz", "top_k=10", f"temperature={one}",
                            name="list_of_one")
    assert summary["members"][0]["temperature"] == {"value": 2.0, "from": str(one)}
    _assert_average(rows, _members_mean(cfg_factory, [ckpts[0]], inputs / "x.npz", [2.0]))
    _, summary, _ = _run(cfg_factory, str(ckpts[2]), inputs / "x.npz", f"temperature={ensemble}", name="member")
    assert summary["temperature"] == {"value": 0.5, "from": str(ensemble)}
    with pytest.raises(LitlabError) as err:
        _run(cfg_factory, str(ckpts[1]), inputs / "x.npz", f"temperature={ensemble}", name="other")
    assert str(err.value).startswith(
        f"temperature={ensemble}: {ensemble / 'metrics.json'}, the record of an ensemble eval of 2 member(s) "
        f"([{ckpts[0]}, {ckpts[2]}]), records no temperature for the checkpoint ckpt_path={ckpts[1]} (matched by "
        f"sha256")


def test_records_of_other_commands_are_refused_naming_their_task(sweep, inputs, cfg_factory, tmp_path):
    """An ensemble predict's folder was read as an eval's, and a training run's was "it evaluated None"."""
    folder, ckpts = sweep
    _, ensemble = _eval_records(tmp_path, [ckpts[0], ckpts[2]])
    pair = [str(ckpts[0]), str(ckpts[2])]
    cfg, _, _ = _run(cfg_factory, pair, inputs / "x.npz", f"temperature={ensemble}", name="predicted")
    predicted = Path(cfg.paths.output_dir)
    for given, task, of in ((predicted, "predict", f" of ckpt_path=[{ckpts[0]}, {ckpts[2]}]"),
                            (ckpts[0].parent.parent, "train", "")):
        with pytest.raises(LitlabError) as err:
            _run(cfg_factory, pair, inputs / "x.npz", f"temperature={given}", name="refused")
        assert str(err.value) == (
            f"temperature={given}: {given / 'metrics.json'} records no temperature: it is the record of a {task} "
            f"run{of}, not of an eval (python -m litlab.eval ... temperature=...). Give the folder of python -m "
            f"litlab.eval with the same members and temperature=auto, or a number (every member's T).")


def test_auto_for_an_ensemble_advises_the_ensemble_eval(sweep, inputs, cfg_factory, tmp_path):
    folder, ckpts = sweep
    for given, words in ((str(folder), f"ckpt_path={folder}"), ([str(c) for c in ckpts[:2]],
                                                                 f"'ckpt_path=[{ckpts[0]},{ckpts[1]}]'")):
        with pytest.raises(LitlabError) as err:
            _run(cfg_factory, given, inputs / "x.npz", "temperature=auto", name="auto")
        assert f"Fit each member's T with python -m litlab.eval {words} temperature=auto, then give" in str(err.value)


def test_a_sweep_without_models_is_worded_for_predict(inputs, cfg_factory, tmp_path):
    failed = tmp_path / "failed_sweep"
    (failed / "0" / ".hydra").mkdir(parents=True)
    (failed / "multirun.yaml").write_text("{}\n")
    with pytest.raises(LitlabError, match=r"a checkpoints/best.ckpt, so there is no model to predict with\. Give"):
        _run(cfg_factory, str(failed), inputs / "x.npz", name="failed")


def _rewritten(ckpt: Path, path: Path) -> Path:
    """The model of ``ckpt`` under other bytes (another sha256): a second member of its size."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    saved["litlab"]["copied_from"] = str(ckpt)
    torch.save(saved, path)
    return path


def test_members_of_one_size_are_said_resized_once_and_their_memory_is_said(sweep, inputs, cfg_factory, tmp_path,
                                                                              caplog, capsys):
    folder, ckpts = sweep
    twin = _rewritten(ckpts[1], tmp_path / "twin.ckpt")
    with caplog.at_level(logging.INFO, logger="litlab.prediction"):
        _run(cfg_factory, [str(ckpts[1]), str(twin)], inputs / "pics", "device=cpu", name="twins")
    lines = [r.getMessage() for r in caplog.records if "resized 6 image file(s)" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"2 members ({ckpts[1]}, {twin}): resized 6 image file(s) to "
                                                   f"their 12x12 (width x height)")
    net = load_predictor(str(ckpts[1]), torch.device("cpu")).net
    one = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert (f"the ensemble's 2 member(s) are held on cpu at once: {2 * one} bytes" in caplog.text)
    assert "  resized      6 to their members' sizes (0 stretched" in capsys.readouterr().out


def test_each_image_file_is_opened_once(sweep, inputs, monkeypatch):
    """The header (the file's own size) and the decode read one open file: it was opened twice."""
    files = sorted((inputs / "pics").glob("*.png"))
    opened = []
    real_open = builtins.open

    def counting(path, *args, **kwargs):
        if str(path).endswith(".png"):
            opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    (names, x, errors, _), = image_batches(files, (1, 8, 8), 1, 64)
    assert sorted(opened) == sorted(map(str, files)) and names == list(map(str, files)) and x.shape == (6, 1, 8, 8)


@pytest.mark.slow
def test_the_command_line_predicts_with_a_sweep_folder_and_refuses_a_copy_before_torch(sweep, inputs, tmp_path):
    folder, ckpts = sweep
    copy = shutil.copy(ckpts[0], tmp_path / "copy.ckpt")
    stderr = refused_before_torch("litlab.predict", [f"ckpt_path=[{ckpts[0]},{copy}]", f"input={inputs / 'pics'}",
                                                     f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path)
    assert f"Error: The ensemble's members {ckpts[0]} and {copy} are the same checkpoint" in stderr
    done = run_cli("litlab.predict", f"ckpt_path={folder}", f"input={inputs / 'pics'}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "litlab predict with an ensemble of 3 members" in done.stdout and "predicted    6" in done.stdout
    assert len(list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))) == 7
