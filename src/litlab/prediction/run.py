"""Classifying new inputs with a checkpoint (``predict(cfg)``), which ``python -m litlab.predict`` runs.

``input`` is one image file, a folder of images (searched recursively) or an ``.npz`` with the
samples under key ``x`` (or ``x_test``). Resizing, channels and normalization come from the
checkpoint, as do the class names. Results go to ``predictions.csv`` in the run directory (or
``output=PATH``), written batch by batch; unreadable files are listed there as errors.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from litlab.errors import LitlabError, check_positive_int
from litlab.prediction.checkpoint_model import Predictor, load_predictor, pick_device
from litlab.prediction.csv_rows import PredictionCsv
from litlab.prediction.inputs import array_batches, image_batches, list_files, read_npz
from litlab.reporting.run_files import update_metrics
from litlab.run_folders import name_limit, path_problem

log = logging.getLogger(__name__)


def input_batches(path: Path, predictor: Predictor, batch_size: int):
    """The batches of ``input=path`` for this model, after checking that the kind fits it."""
    if not path.exists():
        raise LitlabError(f"input={path} does not exist. Give an image file, a folder of images or an .npz file.")
    if path.is_file() and path.suffix.lower() == ".npz":
        key, x = read_npz(path, predictor.input_shape, predictor.preprocess)
        if len(x) == 0:
            raise LitlabError(f"input={path}: {key} holds no samples. Give an .npz with the samples to classify.")
        return len(x), array_batches(path, key, x, batch_size)
    check_takes_image_files(path, predictor)
    files = list_files(path)
    if not files:
        raise LitlabError(f"input={path} is a folder without files. Put the images to classify in it "
                          f"(subfolders are searched).")
    return len(files), image_batches(files, predictor.input_shape, predictor.preprocess.channels, batch_size)


def check_takes_image_files(path: Path, predictor: Predictor) -> None:
    """Image files decode to 8-bit grayscale or RGB pixels: a sequence model, or a model trained on
    arrays of another scale or channel count, cannot take them."""
    pre, channels = predictor.preprocess, predictor.input_shape[0]
    if pre.kind != "image":
        shape = ", ".join(map(str, predictor.input_shape))
        raise LitlabError(f"input={path}: this checkpoint classifies sequences of shape ({shape}), not image files. "
                          f"Give an .npz file with the sequences under key x, shaped (N, {shape}).")
    if pre.pixels is False:
        raise LitlabError(f"input={path}: this checkpoint was trained on arrays used as they are, not on 8-bit pixels, "
                          f"so image files would reach it on another scale. Give an .npz file with the samples under "
                          f"key x, on the scale of the training arrays.")
    if pre.channels is None and channels not in (1, 3):
        raise LitlabError(f"input={path}: this checkpoint takes images of {channels} channels; image files give 1 "
                          f"(grayscale) or 3 (RGB). Give an .npz file with the samples under key x, shaped "
                          f"(N, {', '.join(map(str, predictor.input_shape))}).")


def check_output(out: Path, inputs: dict[str, Path] | None = None) -> None:
    """``output=``: a file path whose folder exists or can be made and takes new files, and not one
    of the command's own files (``inputs``: key -> path), checked before any work."""
    for key, path in (inputs or {}).items():
        if out.exists() and path.exists() and out.resolve() == path.resolve():
            raise LitlabError(f"output={out} is the {key} file; writing the CSV there would destroy it. Give "
                              f"another path, e.g. output={out.with_name('predictions.csv')}.")
    if out.is_dir():
        raise LitlabError(f"output={out} is a folder. Give the path of the CSV file to write, e.g. "
                          f"output={out / 'predictions.csv'}.")
    if out.exists() and not _is_predictions_csv(out):
        # an earlier predict's CSV is replaced (a rerun); any other file (a run's metrics.json, data) is kept
        raise LitlabError(f"output={out} exists and is not a predictions CSV of litlab.predict; writing there would "
                          f"destroy it. Give a new path, e.g. output={out.with_name('predictions.csv')}.")
    check_output_folder(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LitlabError(f"output={out}: its folder {out.parent} cannot be made ({e.strerror or e}). "
                          f"Give a path in a folder that exists or can be created.") from None


def check_output_folder(out: Path) -> None:
    """``output=``'s folder must be (or become) a folder this process can write: a file in the way
    said only "File exists", and a read-only folder failed at the CSV's first write, after the
    model was loaded, with a bare OSError (``run_folders.path_problem``, as for a run's folder)."""
    problem = path_problem(out.absolute().parent, writable=True)
    if problem:
        raise LitlabError(f"output={out}: the CSV cannot be written there: {problem}. Give a path in a folder this "
                          f"process can write, with output=PATH.")


def check_name_lengths(key: str, path: Path) -> None:
    """Each name in ``path`` (a folder's or the file's) fits the file system's limit: a longer one
    failed deep inside loading or writing with "[Errno 36] File name too long" and a traceback."""
    limit = name_limit(path)
    for name in Path(path).parts:
        size = len(os.fsencode(name))
        if size > limit:
            raise LitlabError(f"{key}={path}: a name in this path is too long ({size} bytes, starting "
                              f"{name[:20]}...), longer than the {limit} bytes the file system takes per file or "
                              f"folder name. Give {key}= a path with shorter names.")


def _is_predictions_csv(path: Path) -> bool:
    """Whether ``path`` starts with the header that ``PredictionCsv`` writes."""
    try:
        with open(path, "rb") as f:
            return f.read(64).startswith(b"input,label_1,prob_1,")
    except OSError:
        return False


def predict(cfg: DictConfig) -> dict:
    """Classifies ``cfg.input`` with ``cfg.ckpt_path``; writes the CSV and returns the summary."""
    for key in ("ckpt_path", "input"):
        if not cfg.get(key):
            raise LitlabError(f"{key} is required: python -m litlab.predict ckpt_path=outputs/runs/<run>/checkpoints/"
                              f"best.ckpt input=IMAGE|FOLDER|FILE.npz")
    for key in ("ckpt_path", "input", "output"):
        if cfg.get(key):
            check_name_lengths(key, Path(cfg[key]))
    top_k = check_positive_int("top_k", cfg.get("top_k", 3))
    batch_size = check_positive_int("batch_size", cfg.get("batch_size", 64))
    run_dir = Path(cfg.paths.output_dir)
    out = Path(cfg.output) if cfg.get("output") else run_dir / "predictions.csv"
    check_output(out, {"ckpt_path": Path(cfg.ckpt_path), "input": Path(cfg.input)})  # before the model loads
    predictor = load_predictor(str(cfg.ckpt_path), pick_device(str(cfg.get("device", "auto"))))
    total, batches = input_batches(Path(cfg.input), predictor, batch_size)
    log.info("predicting %d input(s) from %s with %s", total, cfg.input, cfg.ckpt_path)
    with PredictionCsv(out, predictor.class_names, top_k) as rows:
        for names, x, errors, order in batches:
            rows.write(names, predictor.logits(x) if x is not None else None, errors, order)
    if rows.errors and not rows.predicted:
        name, why = rows.errors[0]
        if Path(str(cfg.input)).suffix == ".npz":  # samples of one array, not files
            raise LitlabError(f"input={cfg.input}: none of its {len(rows.errors)} sample(s) could be classified; the "
                              f"first, {name}, {why}. {out} lists each sample with why. Give samples the model can "
                              f"take (finite numbers, no NaN or infinity) under key x.")
        raise LitlabError(f"input={cfg.input}: none of its {len(rows.errors)} file(s) could be classified; the first, "
                          f"{name}, is {why}. {out} lists each file with why. Give images (PNG, JPEG, ...) or an "
                          f".npz file with the samples under key x.")
    summary = {"predicted": rows.predicted, "errors": len(rows.errors), "predictions": str(out),
               "top1_counts": dict(sorted(rows.top1_counts.items(), key=lambda kv: -kv[1]))}
    update_metrics(run_dir, status="completed", task="predict", ckpt_path=str(cfg.ckpt_path), input=str(cfg.input),
                   **{k: v for k, v in summary.items() if k != "top1_counts"})
    print_summary(cfg, summary, rows.errors)
    return summary


def print_summary(cfg: DictConfig, summary: dict, errors: list[tuple[str, str]]) -> None:
    """A few lines: counts, the most frequent predicted classes, the first errors, the CSV."""
    print(f"\nlitlab predict with {cfg.ckpt_path}:")
    print(f"  input        {cfg.input}")
    print(f"  predicted    {summary['predicted']}")
    if summary["top1_counts"]:
        common = list(summary["top1_counts"].items())[:5]
        print("  top classes  " + ", ".join(f"{name} ({n})" for name, n in common))
    print(f"  errors       {summary['errors']}")
    for name, why in errors[:3]:
        print(f"    {name}: {why}")
    if len(errors) > 3:
        print(f"    ... and {len(errors) - 3} more (see the CSV's error column)")
    print(f"  predictions  {summary['predictions']}")
