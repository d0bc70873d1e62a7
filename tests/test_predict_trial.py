"""``litlab.predict`` after a user trial: its own outputs are not read as inputs (and only
litlab's run folders are left out), a run folder that is or holds the input is refused, resized
images are counted and said, and a feature-vector model's shape errors speak of feature vectors."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict
from PIL import Image

from litlab.errors import LitlabError
from litlab.prediction.run import predict
from litlab.training import train
from tests.conftest import make_cfg, refused_before_torch
from tests.helpers import write_image_folder

FEATURES = 64


@pytest.fixture(scope="module")
def image_ckpt(tmp_path_factory, data_dir) -> Path:
    """best.ckpt of an MLP trained one epoch on 8x8 grayscale PNG files of their own size."""
    root = tmp_path_factory.mktemp("trial_images")
    write_image_folder(root / "images", per_class=4, size=8)
    train(make_cfg(["model=mlp", "data=imagefolder", f"data.root={root / 'images'}", "trainer.max_epochs=1"],
                   root / "train", data_dir))
    return root / "train" / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def feature_ckpt(tmp_path_factory, data_dir) -> Path:
    """best.ckpt of an MLP trained one epoch on feature vectors x of shape (N, 64)."""
    root = tmp_path_factory.mktemp("trial_features")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    x = (rng.normal(size=(40, FEATURES)) + y[:, None]).astype(np.float32)  # (N, F)
    np.savez(root / "features.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    train(make_cfg(["model=mlp", "data=npz", f"data.path={root / 'features.npz'}", "trainer.max_epochs=1"],
                   root / "train", data_dir))
    return root / "train" / "checkpoints" / "best.ckpt"


def predict_cfg(ckpt: Path, input_path: Path, run_dir: Path, log_dir: Path, data_dir: Path, *overrides: str):
    """predict's config writing to ``run_dir`` with ``paths.log_dir=log_dir`` (as Hydra's default
    ``<log_dir>/runs/<time>`` would be)."""
    cfg = make_cfg([f"ckpt_path={ckpt}", f"input={input_path}", *overrides], run_dir, data_dir,
                   config_name="predict", fast=False)
    with open_dict(cfg):
        cfg.paths.log_dir = str(log_dir)
    return cfg


def csv_rows(summary: dict) -> list[dict]:
    with open(summary["predictions"], newline="") as f:
        return list(csv.DictReader(f))


def save_gray(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), 128, np.uint8), mode="L").save(path)  # (H, W)
    return path


def test_a_second_predict_of_a_folder_lists_none_of_the_first_runs_files(image_ckpt, data_dir, tmp_path):
    """``predict input=.`` from a folder of photos: its runs go to ``./outputs/runs/<time>``; the
    second run listed the first's predict.log, metrics.json and CSV as inputs (error rows)."""
    photos = tmp_path / "photos"
    for i in range(3):
        save_gray(photos / f"{i}.png", 8, 8)
    logs = photos / "outputs"
    first = predict(predict_cfg(image_ckpt, photos, logs / "runs" / "first", logs, data_dir))
    (logs / "runs" / "first" / "predict.log").write_text("a log line\n")  # as Hydra writes it
    second = predict(predict_cfg(image_ckpt, photos, logs / "runs" / "second", logs, data_dir))
    assert (first["predicted"], first["errors"]) == (3, 0)
    assert (second["predicted"], second["errors"]) == (3, 0)
    assert [Path(r["input"]).name for r in csv_rows(second)] == ["0.png", "1.png", "2.png"]


def test_run_folders_below_the_input_are_left_out_but_a_users_metrics_json_is_not(tmp_path):
    """A folder holding Hydra's record or litlab's metrics.json is a run's, whatever its name; a
    metrics.json of the user's own (no litlab status) leaves its folder an input folder."""
    from litlab.prediction.input_files import is_run_folder, list_files

    save_gray(tmp_path / "a.png", 8, 8)
    hydra_run = tmp_path / "elsewhere" / "run1"
    (hydra_run / ".hydra").mkdir(parents=True)
    (hydra_run / ".hydra" / "config.yaml").write_text("task_name: predict\npaths:\n  log_dir: outputs\n"
                                                     "  output_dir: ${hydra:runtime.output_dir}\n")
    (hydra_run / "predictions.csv").write_text("input,label_1,prob_1,error\n")
    in_process = tmp_path / "run2"
    in_process.mkdir()
    (in_process / "metrics.json").write_text(json.dumps({"status": "completed", "task": "predict"}))
    (in_process / "predictions.csv").write_text("input,label_1,prob_1,error\n")
    users = tmp_path / "scores"
    save_gray(users / "b.png", 8, 8)
    (users / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    written = tmp_path / "out.csv"
    written.write_text("input,label_1,prob_1,error\n")
    files, left_out, images_left_out = list_files(tmp_path, (written,))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.png", "scores/b.png", "scores/metrics.json"]
    assert left_out == [hydra_run, in_process] and images_left_out == []
    assert is_run_folder(hydra_run) and is_run_folder(in_process) and not is_run_folder(users)


def test_a_run_folder_that_is_or_holds_the_input_is_refused_before_torch(image_ckpt, tmp_path):
    """``hydra.run.dir=newpics input=newpics`` wrote .hydra/, predict.log, metrics.json and
    predictions.csv into the user's image folder, and the CSV had a row for predict.log; a run
    folder above the input makes the image folder part of a run folder."""
    pics = tmp_path / "newpics"
    save_gray(pics / "a.png", 8, 8)
    for run_dir, why in (("newpics", "is the folder input=newpics: predict would write its run's files (.hydra/, "
                                     "predict.log, metrics.json, predictions.csv) among the images it classifies and "
                                     "read its own log as an input"),
                         (".", "holds the folder input=newpics: predict would write its run's record (.hydra/, "
                               "predict.log, metrics.json) above the images")):
        err = refused_before_torch("litlab.predict", [f"ckpt_path={image_ckpt}", "input=newpics",
                                                      f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert f"Error: hydra.run.dir={run_dir} {why}" in err, err
        assert "Give hydra.run.dir another folder (one inside newpics is left out of its listing)" in err, err
        assert err.strip().count("\n") == 0, err  # one paragraph
        assert sorted(p.name for p in pics.iterdir()) == ["a.png"]  # nothing written, nothing made
        assert not (tmp_path / ".hydra").exists() and not (tmp_path / "predict.log").exists()


@pytest.mark.parametrize("run,log_dir,why,advice", [
    ("pics", "logs", r"is the folder input=\S+/pics: predict would write",
     r"Give paths\.output_dir another folder \(one inside \S+/pics is left out of its listing\), or leave it out: "
     r"runs then go to paths\.log_dir"),
    # the run folder holds the input, and paths.log_dir holds the run folder: leaving it out does not help
    (".", ".", r"holds the folder input=\S+/pics: predict would write its run's record",
     r"Give paths\.output_dir \(or paths\.log_dir\) another folder: one outside \S+/pics, or one inside it"),
])
def test_predict_in_process_refuses_a_run_folder_that_is_or_holds_the_input(image_ckpt, data_dir, tmp_path, run,
                                                                             log_dir, why, advice):
    pics = tmp_path / "pics"
    save_gray(pics / "a.png", 8, 8)
    cfg = predict_cfg(image_ckpt, pics, tmp_path / run, tmp_path / log_dir, data_dir)
    with pytest.raises(LitlabError, match=r"^paths\.output_dir=\S+ " + why) as err:
        predict(cfg)
    assert re.search(advice, str(err.value)), str(err.value)
    assert sorted(p.name for p in pics.iterdir()) == ["a.png"]  # predict wrote nothing
    assert not (tmp_path / "metrics.json").exists()


def test_a_run_folder_below_the_input_is_allowed_and_left_out(image_ckpt, data_dir, tmp_path):
    """``input=. hydra.run.dir=preds/run1`` was refused while the default ``./outputs/runs/<time>``
    inside ``input=.`` was allowed; both are left out of the listing."""
    from litlab.prediction.path_checks import check_command_line

    pics = tmp_path / "pics"
    save_gray(pics / "a.png", 8, 8)
    cli = make_cfg([f"ckpt_path={image_ckpt}", f"input={pics}", f"hydra.run.dir={pics / 'preds' / 'run1'}"],
                   tmp_path / "unused", data_dir, config_name="predict", fast=False)
    check_command_line(cli)  # no error: the command line is taken
    logs = tmp_path / "logs"
    first = predict(predict_cfg(image_ckpt, pics, pics / "preds" / "run1", logs, data_dir))
    second = predict(predict_cfg(image_ckpt, pics, pics / "preds" / "run2", logs, data_dir))
    assert (first["predicted"], first["errors"], second["predicted"], second["errors"]) == (1, 0, 1, 0)
    assert [Path(r["input"]).name for r in csv_rows(second)] == ["a.png"]


def save_config(path: Path, config) -> None:
    """Writes ``config`` as Hydra does (unresolved YAML)."""
    from omegaconf import OmegaConf

    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, path, resolve=False)


def test_only_litlab_records_make_a_run_folder(data_dir, tmp_path):
    """Every litlab entrypoint's ``.hydra/config.yaml`` and a sweep's ``multirun.yaml`` (the config
    with its hydra node) count; another Hydra tool's record, a metrics.json without litlab's
    ``task``, a file that is not YAML, or one too large to read, do not."""
    from omegaconf import OmegaConf

    from litlab.prediction import input_files
    from litlab.prediction.input_files import is_run_folder

    for name in ("train", "eval", "predict", "lr_find"):
        cfg = make_cfg([], tmp_path / "made" / name, data_dir, config_name=name, fast=False)
        run_config = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # as Hydra's: no hydra node
        save_config(tmp_path / name / ".hydra" / "config.yaml", run_config)
        save_config(tmp_path / f"{name}_sweep" / "multirun.yaml", cfg)
        assert is_run_folder(tmp_path / name) and is_run_folder(tmp_path / f"{name}_sweep"), name
    (tmp_path / "json" / "metrics.json").parent.mkdir()
    (tmp_path / "json" / "metrics.json").write_text(json.dumps({"status": "failed", "task": "train"}))
    assert is_run_folder(tmp_path / "json")
    foreign = {".hydra/config.yaml": "a: 1\n", ".hydra/hydra.yaml": "hydra:\n  run:\n    dir: x\n",
               "multirun.yaml": "task_name: other\n", "metrics.json": json.dumps({"status": "reviewed"})}
    for i, (name, text) in enumerate(foreign.items()):
        (tmp_path / f"other{i}" / name).parent.mkdir(parents=True)
        (tmp_path / f"other{i}" / name).write_text(text)
        assert not is_run_folder(tmp_path / f"other{i}"), name
    (tmp_path / "bad" / ".hydra").mkdir(parents=True)
    (tmp_path / "bad" / ".hydra" / "config.yaml").write_bytes(b"task_name: [\n\xff")
    big = {"task": "train", "status": "completed", "pad": "x" * input_files.RECORD_BYTES}
    (tmp_path / "big" / "metrics.json").parent.mkdir()
    (tmp_path / "big" / "metrics.json").write_text(json.dumps(big))
    assert not is_run_folder(tmp_path / "bad") and not is_run_folder(tmp_path / "big")


def test_folders_with_another_tools_records_are_predicted(image_ckpt, data_dir, tmp_path):
    """The reviewer's folder: another Hydra tool's run and a metrics.json of the user's were left
    out with their 12 images, and predict refused ``input=gen is a folder without files``."""
    gen = tmp_path / "gen"
    for i in range(5):
        save_gray(gen / "run1" / f"{i}.png", 8, 8)
        if i < 4:
            save_gray(gen / "run2" / f"{i}.png", 8, 8)
            save_gray(gen / "mine" / f"{i}.png", 8, 8)
    (gen / "run1" / ".hydra").mkdir()
    (gen / "run1" / ".hydra" / "config.yaml").write_text("a: 1\n")
    (gen / "run2" / ".hydra").mkdir()
    (gen / "run2" / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: gen\n")
    (gen / "mine" / "metrics.json").write_text(json.dumps({"status": "reviewed"}))
    summary = predict(predict_cfg(image_ckpt, gen, tmp_path / "run", tmp_path / "logs", data_dir))
    assert (summary["predicted"], summary["errors"]) == (13, 1)  # metrics.json is a file of the folder
    assert len(csv_rows(summary)) == 14


def test_images_in_a_left_out_run_folder_are_warned_and_named(image_ckpt, data_dir, tmp_path, caplog):
    gen = tmp_path / "gen"
    save_gray(gen / "a.png", 8, 8)
    old = gen / "old"
    save_gray(old / "x.png", 8, 8)
    save_gray(old / "sub" / "y.jpg", 8, 8)
    (old / "metrics.json").write_text(json.dumps({"status": "completed", "task": "predict"}))
    with caplog.at_level(logging.INFO, logger="litlab.prediction.run"):
        summary = predict(predict_cfg(image_ckpt, gen, tmp_path / "run1", tmp_path / "logs", data_dir))
    assert (summary["predicted"], summary["errors"]) == (1, 0)
    lines = [r for r in caplog.records if "left out" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING], [r.getMessage() for r in lines]
    assert lines[0].getMessage() == (
        f"input={gen}: left out 2 image file(s) in 1 folder(s) that hold a litlab run's record (.hydra/config.yaml, "
        f"multirun.yaml or metrics.json): {old} (2). To classify a left-out folder's files, give that folder itself "
        f"as input= (e.g. input={old})")
    followed = predict(predict_cfg(image_ckpt, old, tmp_path / "run2", tmp_path / "logs", data_dir))
    assert (followed["predicted"], followed["errors"]) == (2, 1)  # the advice followed: its metrics.json an error row
    (gen / "a.png").unlink()
    with pytest.raises(LitlabError) as err:
        predict(predict_cfg(image_ckpt, gen, tmp_path / "run3", tmp_path / "logs", data_dir))
    assert str(err.value) == (f"input={gen} is a folder without files (left out: 1 folder(s) of litlab's runs and "
                              f"outputs: {old}). Put the images to classify in it (subfolders are searched), or give "
                              f"a left-out folder itself as input= to read its files (e.g. input={old}).")


def test_resized_images_are_said_once_with_their_count_and_recorded(image_ckpt, data_dir, tmp_path, caplog):
    """The model saw 8x8 files of their own size; eval refuses others, predict resizes them."""
    pics = tmp_path / "pics"
    save_gray(pics / "same.png", 8, 8)
    save_gray(pics / "bigger.png", 16, 16)  # same aspect ratio
    save_gray(pics / "wide.png", 48, 40)  # stretched to 8x8
    save_gray(pics / "wide2.png", 12, 8)
    (pics / "notes.txt").write_text("not an image")  # an error row: not counted
    cfg = predict_cfg(image_ckpt, pics, tmp_path / "run", tmp_path, data_dir)
    with caplog.at_level(logging.INFO, logger="litlab.prediction.run"):
        summary = predict(cfg)
    lines = [r for r in caplog.records if r.getMessage().startswith("resized")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING
    assert message.startswith("resized 3 image file(s) to the model's 8x8 (width x height), which training never "
                              "did (the model saw its files at their own size); 2 of them changed aspect ratio, so "
                              "they are stretched (e.g. "), message
    assert message.endswith("wide.png, 48x40): crop or pad them to 1:1 (width:height) for predictions like "
                            "training's"), message
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (record["predicted"], record["errors"], record["resized"], record["resized_stretched"]) == (4, 1, 3, 2)
    assert (summary["resized"], summary["resized_stretched"]) == (3, 2)  # the summary predict returns too


def test_a_feature_vector_model_names_feature_vectors_and_the_batch_axis(feature_ckpt, data_dir, tmp_path):
    one = np.ones(FEATURES, np.float32)  # (F,)
    np.savez(tmp_path / "one.npz", x=one)
    cfg = predict_cfg(feature_ckpt, tmp_path / "one.npz", tmp_path / "run1", tmp_path, data_dir)
    with pytest.raises(LitlabError) as err:
        predict(cfg)
    assert str(err.value).endswith("x has shape (64,) but the model takes feature vectors (N, F) of shape (N, 64). "
                                   "That is one sample without the batch axis: store x[None] (a batch of one, "
                                   "shape (1, 64))."), str(err.value)
    np.savez(tmp_path / "batch.npz", x=one[None])  # the hint followed: (1, F), as trained on
    summary = predict(predict_cfg(feature_ckpt, tmp_path / "batch.npz", tmp_path / "run2", tmp_path, data_dir))
    assert (summary["predicted"], summary["errors"], summary["resized"]) == (1, 0, 0)
    np.savez(tmp_path / "short.npz", x=np.ones((5, 32), np.float32))
    with pytest.raises(LitlabError, match=r"x has shape \(5, 32\) but the model takes feature vectors \(N, F\) of "
                                          r"shape \(N, 64\)\. Give arrays shaped like"):
        predict(predict_cfg(feature_ckpt, tmp_path / "short.npz", tmp_path / "run3", tmp_path, data_dir))
    image = save_gray(tmp_path / "pics" / "a.png", 8, 8)
    with pytest.raises(LitlabError) as err:
        predict(predict_cfg(feature_ckpt, image, tmp_path / "run4", tmp_path, data_dir))
    assert str(err.value) == (f"input={image}: this checkpoint classifies feature vectors of shape (64,), not image "
                              f"files. Give an .npz file with the feature vectors under key x, shaped (N, 64); one "
                              f"alone, x of shape (64,), needs the batch axis: x[None].")


def test_a_resize_that_keeps_the_aspect_ratio_within_one_percent_is_no_stretch():
    from litlab.prediction.inputs import Resized

    resized = Resized()
    resized.add("same.png", 32, 24, (24, 32))  # (H, W): not resized
    resized.add("big.png", 1000, 751, (24, 32))  # 4:3 within 0.2%
    resized.add("wide.png", 48, 40, (32, 32))  # 6:5 to 1:1
    resized.add("tall.png", 10, 20, (32, 32))
    assert (resized.count, resized.stretched, resized.first, resized.first_stretched) == (
        3, 2, ("big.png", 1000, 751), ("wide.png", 48, 40))
