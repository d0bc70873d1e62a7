"""``litlab.predict``: images, folders and npz files classified with a checkpoint's own
preprocessing; bad files listed, bad inputs explained, results agreeing with eval."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litlab.errors import LitlabError
from litlab.evaluation import evaluate
from litlab.prediction.run import predict
from litlab.prediction.checkpoint_model import Predictor
from litlab.training import train
from tests.conftest import make_cfg, run_cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data_dir) -> Path:
    """best.ckpt of a 2-epoch CNN on digits."""
    run_dir = tmp_path_factory.mktemp("predict") / "train"
    train(make_cfg([], run_dir, data_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture
def run_predict(cfg_factory, ckpt, tmp_path):
    """``run_predict(input, *overrides)`` -> (summary, rows of the CSV as dicts)."""

    def run(input_path, *overrides):
        cfg = cfg_factory([f"ckpt_path={ckpt}", f"input={input_path}", *overrides], name="pred",
                          config_name="predict", fast=False)
        summary = predict(cfg)
        with open(summary["predictions"], newline="") as f:
            return summary, list(csv.DictReader(f))

    return run


def digit_files(data_dir: Path, n: int) -> list[Path]:
    return sorted((data_dir / "digits" / "test").rglob("*.png"))[:n]


def top1_accuracy(rows: list[dict]) -> float:
    # the digits test tree is test/<class>/<index>.png: the parent folder is the true class
    return sum(Path(r["input"]).parent.name == r["label_1"] for r in rows) / len(rows)


def test_folder_with_good_corrupt_and_non_image_files(run_predict, data_dir, tmp_path):
    folder = tmp_path / "inbox"
    (folder / "nested" / "deeper").mkdir(parents=True)
    good = digit_files(data_dir, 4)
    for i, f in enumerate(good):
        shutil.copy(f, folder / ("nested/deeper" if i % 2 else "nested") / f"good{i}.png")
    # a colour JPEG of another size: converted to grey and resized as in training
    Image.new("RGB", (20, 24), (200, 10, 10)).save(folder / "colour.jpg")
    (folder / "truncated.png").write_bytes(good[0].read_bytes()[:40])
    (folder / "random.png").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"skipped")
    summary, rows = run_predict(folder, "top_k=3", "batch_size=2")
    assert summary["predicted"] == 5 and summary["errors"] == 3
    # input order (sorted paths), error rows in place
    assert [r["input"] for r in rows] == sorted(r["input"] for r in rows)
    by_name = {Path(r["input"]).name: r for r in rows}
    assert set(by_name) == {"good0.png", "good1.png", "good2.png", "good3.png", "colour.jpg", "truncated.png",
                            "random.png", "notes.txt"}
    for name in ("truncated.png", "random.png", "notes.txt"):
        assert "not a readable image" in by_name[name]["error"] and by_name[name]["label_1"] == ""
    for i in range(4):
        row = by_name[f"good{i}.png"]
        probs = [float(row[f"prob_{k}"]) for k in (1, 2, 3)]
        assert row["error"] == "" and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert row["label_1"] in [str(d) for d in range(10)]


def test_a_folder_without_a_readable_image_fails_and_lists_each_file(run_predict, tmp_path):
    """It exited 0 with "predicted 0", as if the folder had been classified."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("not an image")
    (folder / "b.png").write_bytes(b"not a png either")
    with pytest.raises(LitlabError, match=r"input=.*notes: none of its 2 file\(s\) could be classified; the first, "
                                          r".*a\.txt, is not a readable image"):
        run_predict(folder)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv", newline="")))
    assert [(Path(r["input"]).name, r["label_1"]) for r in rows] == [("a.txt", ""), ("b.png", "")]
    assert all("not a readable image" in r["error"] for r in rows)


def test_predict_agrees_with_eval_on_the_test_split(run_predict, cfg_factory, ckpt, data_dir):
    metrics = evaluate(cfg_factory([f"ckpt_path={ckpt}"], name="eval", config_name="eval"))
    summary, rows = run_predict(data_dir / "digits" / "test")
    assert summary["errors"] == 0 and len(rows) == 359
    # eval's accuracy is a float32: compare counts of correct predictions
    assert round(top1_accuracy(rows) * 359) == round(metrics["test/acc"] * 359)


def test_npz_gives_the_same_predictions_as_the_image_files(run_predict, data_dir, tmp_path):
    files = digit_files(data_dir, 40)
    x = np.stack([np.asarray(Image.open(f))[None] for f in files])  # (N, 1, 8, 8) uint8
    np.savez(tmp_path / "digits.npz", x=x)
    _, from_npz = run_predict(tmp_path / "digits.npz")
    folder = tmp_path / "same"
    folder.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, folder / f"{i:03d}.png")
    _, from_files = run_predict(folder)
    assert [r["label_1"] for r in from_npz] == [r["label_1"] for r in from_files]
    assert [float(r["prob_1"]) for r in from_npz] == pytest.approx([float(r["prob_1"]) for r in from_files], abs=1e-6)
    assert from_npz[0]["input"].endswith("digits.npz[x][0]")


def test_top_k_is_capped_at_the_class_count_and_output_is_honoured(run_predict, data_dir, tmp_path):
    out = tmp_path / "elsewhere" / "p.csv"
    summary, rows = run_predict(digit_files(data_dir, 1)[0], "top_k=50", f"output={out}")
    assert summary["predictions"] == str(out) and out.is_file()
    assert "label_10" in rows[0] and "label_11" not in rows[0]
    assert sum(float(rows[0][f"prob_{k}"]) for k in range(1, 11)) == pytest.approx(1.0, abs=1e-4)


def test_rows_written_before_a_failure_are_kept(run_predict, data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "four"
    folder.mkdir()
    for f in digit_files(data_dir, 4):
        shutil.copy(f, folder / f.name)
    calls = []
    real = Predictor.logits

    def fail_second_batch(self, x):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real(self, x)

    monkeypatch.setattr(Predictor, "logits", fail_second_batch)
    with pytest.raises(RuntimeError):
        run_predict(folder, "batch_size=2", f"output={tmp_path / 'partial.csv'}")
    with open(tmp_path / "partial.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


@pytest.mark.parametrize("case,match", [
    ("missing_ckpt", "ckpt_path=.* does not exist"),
    ("foreign_ckpt", "is not a litlab checkpoint"),
    ("onnx_ckpt", r"model\.onnx is an exported model \(export/\), which runs on its own in onnxruntime"),
    ("missing_input", "input=.* does not exist"),
    ("empty_folder", "is a folder without files"),
    ("npz_wrong_shape", r"has shape \(3, 8, 8\) but the model takes images .* \(N, 1, 8, 8\)"),
    ("npz_sequences", r"has shape \(3, 12, 2\)"),
    ("npz_no_x", "has no array named x or x_test; it has y"),
    ("npz_corrupt", "is not a readable .npz file"),
    ("top_k", "top_k must be a positive integer"),
    ("npy", r"holds one bare array \(a \.npy file\), not an \.npz archive"),
    ("npz_float_pixels", r"holds floats from 0 to 255, but this checkpoint was trained on 8-bit pixels"),
    ("npz_wide_ints", r"holds integers from 0 to 300, but this checkpoint was trained on 8-bit pixels"),
    ("output_folder", r"output=.*out is a folder\. Give the path of the CSV file"),
    ("output_under_a_file", r"output=.*: the CSV cannot be written there: .*a_file is a file, not a folder"),
])
def test_bad_inputs_are_one_paragraph_errors(case, match, cfg_factory, ckpt, tmp_path):
    ckpt_path, input_path, extra = ckpt, tmp_path / "in", []
    if case == "missing_ckpt":
        ckpt_path = tmp_path / "nope.ckpt"
    elif case == "foreign_ckpt":
        ckpt_path = tmp_path / "other.ckpt"
        torch.save({"state_dict": {}}, ckpt_path)
    elif case == "onnx_ckpt":
        ckpt_path = tmp_path / "model.onnx"
        ckpt_path.write_bytes(b"\x08\x07onnx")
    if case != "missing_input":
        input_path.mkdir()
    arrays = {"npz_wrong_shape": {"x": np.zeros((3, 8, 8), np.uint8)},
              "npz_sequences": {"x_test": np.zeros((3, 12, 2), np.float32)},
              "npz_no_x": {"y": np.zeros(3, np.int64)},
              "npz_float_pixels": {"x": np.linspace(0, 255, 3 * 64, dtype=np.float32).reshape(3, 1, 8, 8)},
              "npz_wide_ints": {"x": np.linspace(0, 300, 3 * 64).astype(np.int64).reshape(3, 1, 8, 8)}}
    if case in arrays:
        input_path = tmp_path / "in" / "a.npz"
        np.savez(input_path, **arrays[case])
    elif case == "npz_corrupt":
        input_path = tmp_path / "in" / "a.npz"
        input_path.write_bytes(b"PK not really")
    elif case == "top_k":
        extra = ["top_k=0"]
    elif case == "npy":
        input_path = tmp_path / "in" / "a.npz"
        with open(input_path, "wb") as f:
            np.save(f, np.zeros((3, 1, 8, 8), np.uint8))
    elif case == "output_folder":
        (tmp_path / "out").mkdir()
        extra = [f"output={tmp_path / 'out'}"]
    elif case == "output_under_a_file":
        (tmp_path / "a_file").write_text("")
        extra = [f"output={tmp_path / 'a_file' / 'p.csv'}"]
    cfg = cfg_factory([f"ckpt_path={ckpt_path}", f"input={input_path}", *extra], name="bad",
                      config_name="predict", fast=False)
    with pytest.raises(LitlabError, match=match) as err:
        predict(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_command_line(ckpt, data_dir, tmp_path):
    out = tmp_path / "cli.csv"
    image = digit_files(data_dir, 1)[0]
    done = run_cli("litlab.predict", f"ckpt_path={ckpt}", f"input={image}", f"output={out}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "predicted    1" in done.stdout and str(out) in done.stdout
    assert len(list(csv.DictReader(out.open()))) == 1
    bad = run_cli("litlab.predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'missing'}",
                  f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "Error: input=" in bad.stderr and "Traceback" not in bad.stderr


def test_image_files_for_a_sequence_model_are_refused(tmp_path):
    from litlab.data.preprocess import Preprocess
    from litlab.prediction.run import input_batches

    sequence_model = Predictor(torch.nn.Identity(), Preprocess("sequence", [0.0] * 4, [1.0] * 4), (32, 4),
                               ["a", "b"], torch.device("cpu"))
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(LitlabError, match=r"classifies sequences of shape \(32, 4\), not image files"):
        input_batches(tmp_path, sequence_model, 8)


def test_npz_pixels_in_any_dtype_give_the_same_predictions_and_nan_rows_are_errors(run_predict, data_dir, tmp_path):
    """For a model trained on 8-bit pixels, int64 pixels and floats scaled to [0, 1] are the same
    inputs as uint8 pixels; a sample holding NaN gets an error row, the others are predicted."""
    x = np.stack([np.asarray(Image.open(f))[None] for f in digit_files(data_dir, 6)])  # (6, 1, 8, 8) uint8
    outputs = {}
    for name, arr in (("u8", x), ("i64", x.astype(np.int64)), ("f32", x.astype(np.float32) / 255)):
        np.savez(tmp_path / f"{name}.npz", x=arr)
        summary, rows = run_predict(tmp_path / f"{name}.npz")
        outputs[name] = [(r["label_1"], float(r["prob_1"])) for r in rows]
    assert outputs["i64"] == outputs["u8"]
    assert [label for label, _ in outputs["f32"]] == [label for label, _ in outputs["u8"]]
    assert [p for _, p in outputs["f32"]] == pytest.approx([p for _, p in outputs["u8"]], abs=1e-5)
    with_nan = x.astype(np.float32) / 255
    with_nan[2, 0, 3, 3] = np.nan
    np.savez(tmp_path / "nan.npz", x=with_nan)
    summary, rows = run_predict(tmp_path / "nan.npz")
    assert summary["predicted"] == 5 and summary["errors"] == 1
    # one row per input in input order (the error row came last in its batch)
    assert [r["input"].rsplit("[", 1)[1] for r in rows] == [f"{i}]" for i in range(6)]
    bad = [r for r in rows if r["error"]]
    assert bad[0]["input"].endswith("nan.npz[x][2]") and "NaN or infinite" in bad[0]["error"]
    kept = [o for i, o in enumerate(outputs["f32"]) if i != 2]
    assert [r["label_1"] for r in rows if not r["error"]] == [label for label, _ in kept]
    # every sample bad: the error read "the first, nan.npz[x][0], is holds NaN" and asked for an .npz
    np.savez(tmp_path / "all_nan.npz", x=np.full_like(with_nan[:3], np.nan))
    with pytest.raises(LitlabError, match=r"all_nan\.npz: none of its 3 sample\(s\) could be classified; the first, "
                                          r".*all_nan\.npz\[x\]\[0\], holds NaN or infinite values\. .*lists each sample"):
        run_predict(tmp_path / "all_nan.npz")
    assert [float(r["prob_1"]) for r in rows if not r["error"]] == pytest.approx([p for _, p in kept], abs=1e-6)


@pytest.mark.parametrize("pre,shape,match", [
    (dict(pixels=False), (1, 8, 8), "trained on arrays used as they are, not on 8-bit pixels"),
    (dict(pixels=True), (4, 8, 8), r"takes images of 4 channels; image files give 1 \(grayscale\) or 3 \(RGB\)"),
])
def test_image_files_for_a_model_of_other_arrays_are_refused(tmp_path, pre, shape, match):
    """Models trained on npz arrays that image files cannot stand for: float arrays used as they
    are, or images of a channel count files do not have."""
    from litlab.data.preprocess import Preprocess
    from litlab.prediction.run import input_batches

    c = shape[0]
    model = Predictor(torch.nn.Identity(), Preprocess("image", [0.0] * c, [1.0] * c, **pre), shape, ["a", "b"],
                      torch.device("cpu"))
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(LitlabError, match=match):
        input_batches(tmp_path, model, 8)


def test_a_model_of_raw_arrays_takes_floats_as_they_are_and_refuses_uint8_images():
    """uint8 images for a model trained on float images went in 255 times too large (every
    probability 1.0), where eval refuses the same arrays."""
    from litlab.data.preprocess import Preprocess
    from litlab.prediction.inputs import model_inputs

    x = np.arange(8, dtype=np.uint8).reshape(2, 1, 2, 2)
    raw = model_inputs(x.astype(np.float32), "x", Preprocess("image", [0.0], [1.0], pixels=False))
    assert raw.dtype == torch.float32 and raw.max().item() == 7.0
    with pytest.raises(LitlabError, match="x holds uint8 images, read as 8-bit pixels, but this checkpoint was "
                                          "trained on images of another dtype"):
        model_inputs(x, "x", Preprocess("image", [0.0], [1.0], pixels=False))
    assert model_inputs(x, "x", Preprocess("image", [0.0], [1.0], pixels=True)).dtype == torch.uint8


def test_equal_scores_rank_as_eval_counts_them(tmp_path):
    """torch.topk put the later of two equal classes first (9 before 8 for an int8 model's tied
    logits), so predictions.csv disagreed with eval's accuracy (argmax: the first)."""
    from litlab.prediction.csv_rows import PredictionCsv

    logits = torch.zeros(2, 10)
    logits[0, [8, 9]] = 2.0  # an exact tie
    logits[1, [0, 1]] = 2.0
    with PredictionCsv(tmp_path / "p.csv", [str(k) for k in range(10)], top_k=3) as rows:
        rows.write(["a", "b"], logits, [])
    with open(tmp_path / "p.csv", newline="") as f:
        got = [(r["label_1"], r["label_2"], r["label_3"]) for r in csv.DictReader(f)]
    assert [g[0] for g in got] == [str(int(k)) for k in logits.argmax(dim=1)] == ["8", "0"]
    assert got == [("8", "9", "0"), ("0", "1", "2")]  # the rest in class order too


def test_an_npz_without_samples_is_named_and_nothing_is_written(run_predict, tmp_path):
    """It crashed in a reshape, after emptying the output file."""
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 1, 8, 8), np.uint8))
    out = tmp_path / "keep.csv"
    out.write_text("input,label_1,prob_1,error\nearlier.png,3,0.900000,\n")
    with pytest.raises(LitlabError, match=r"input=.*empty\.npz: x holds no samples"):
        run_predict(empty, f"output={out}")
    assert out.read_text() == "input,label_1,prob_1,error\nearlier.png,3,0.900000,\n"


def test_output_replaces_an_earlier_predictions_csv_but_no_other_file(run_predict, data_dir, tmp_path):
    """output=<another run>/metrics.json wrote the CSV over that run's record."""
    image = digit_files(data_dir, 1)[0]
    record = tmp_path / "metrics.json"
    record.write_text('{"status": "completed"}')
    with pytest.raises(LitlabError, match=r"output=.*metrics\.json exists and is not a predictions CSV of "
                                          r"litlab\.predict; writing there would destroy it"):
        run_predict(image, f"output={record}")
    assert record.read_text() == '{"status": "completed"}'
    out = tmp_path / "p.csv"
    run_predict(image, f"output={out}")
    first = out.read_text()
    run_predict(image, "top_k=1", f"output={out}")  # a rerun replaces its own CSV
    assert first.startswith("input,label_1,prob_1,label_2") and out.read_text().startswith("input,label_1,prob_1,error")


@pytest.mark.parametrize("which", ["input", "ckpt_path"])
def test_output_cannot_be_the_commands_own_input_or_checkpoint(run_predict, ckpt, data_dir, tmp_path, which):
    """output= the input npz or the checkpoint wrote the CSV over it."""
    import shutil

    arrays = tmp_path / "x.npz"
    np.savez(arrays, x=np.zeros((2, 1, 8, 8), np.uint8))
    target = arrays if which == "input" else tmp_path / "copy.ckpt"
    if which == "ckpt_path":
        shutil.copy(ckpt, target)
    before = target.read_bytes()
    overrides = [f"output={target}"] + ([f"ckpt_path={target}"] if which == "ckpt_path" else [])
    with pytest.raises(LitlabError, match=rf"output=.* is the {which} file; writing the CSV there would destroy it"):
        run_predict(arrays, *overrides)
    assert target.read_bytes() == before


@pytest.mark.parametrize("kind,input_shape,stored,quoted", [
    # (N, L) arrays are read as (N, L, 1): the error quoted (50, 1, 1), a shape the user never made
    ("sequence", (50, 1), (50, 1), r"x has shape \(50, 1\) but the model takes sequences \(N, L, F\) of shape "
                                   r"\(N, 50, 1\)\. That is one sample without the batch axis: store x\[None\] "
                                   r"\(a batch of one, shape \(1, 50, 1\)\)\.$"),
    ("sequence", (50, 1), (3, 40), r"x has shape \(3, 40\) but .* \(N, 50, 1\)\. Give arrays shaped like"),
    ("image", (1, 8, 8), (1, 8, 8), r"x has shape \(1, 8, 8\) .* store x\[None\] \(a batch of one, shape "
                                    r"\(1, 1, 8, 8\)\)\.$"),
])
def test_a_wrong_npz_shape_is_quoted_as_stored_and_one_sample_is_named(tmp_path, kind, input_shape, stored, quoted):
    from litlab.data.preprocess import Preprocess
    from litlab.prediction.inputs import read_npz

    np.savez(tmp_path / "one.npz", x=np.zeros(stored, np.float32))
    pre = Preprocess(kind, [0.0] * (input_shape[-1] if kind == "sequence" else input_shape[0]), [1.0])
    with pytest.raises(LitlabError, match=quoted):
        read_npz(tmp_path / "one.npz", input_shape, pre)


def test_one_unbatched_image_in_an_npz_is_named_by_predict(run_predict, tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(LitlabError, match=r"one sample without the batch axis: store x\[None\]"):
        run_predict(tmp_path / "one.npz")
