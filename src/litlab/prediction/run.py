"""Classifying new inputs with a checkpoint (``predict(cfg)``), which ``python -m litlab.predict`` runs.

``input`` is one image file, a folder of images (searched recursively, leaving out litlab's own
run folders and ``paths.log_dir``) or an ``.npz`` with the samples under key ``x`` (or
``x_test``). Resizing, channels and normalization come from the checkpoint, as do the class names;
image files of another size are resized, counted in metrics.json (``resized``) and said once.
Results go to ``predictions.csv`` in the run directory (or ``output=PATH``), written batch by
batch; unreadable files are listed there as errors.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig
from torch import Tensor

from litlab.ensemble_paths import is_ensemble
from litlab.errors import LitlabError
from litlab.listing import first_of
from litlab.models.temperature_scaled import TemperatureScaled
from litlab.prediction.checkpoint_model import Predictor, load_predictor, pick_device
from litlab.prediction.csv_rows import PredictionCsv
from litlab.prediction.input_files import list_files
from litlab.prediction.inputs import Resized, array_batches, image_batches, read_npz, sample_shape
from litlab.prediction.path_checks import check_before_loading, check_input_exists
from litlab.reporting.run_files import update_metrics
from litlab.resume_overrides import job_overrides
from litlab.run_commands import sets_key
from litlab.tuning.temperature_setting import predict_temperature

log = logging.getLogger(__name__)


def input_batches(path: Path, predictor: Predictor, batch_size: int, leave_out: tuple[Path, ...] = (),
                  resized: Resized | None = None):
    """The batches of ``input=path`` for this model, after checking that the kind fits it.

    ``leave_out``: folders and files below a folder ``path`` that are litlab's, not inputs
    (``paths.log_dir``, the run's folder, the CSV); run folders are left out too (``input_files.list_files``).
    ``resized`` counts the image files decoded from another size."""
    check_input_exists(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        key, x = read_samples(path, predictor)
        return len(x), array_batches(path, key, x, batch_size)
    check_takes_image_files(path, predictor)
    files = listed_files(path, leave_out)
    return len(files), image_batches(files, predictor.input_shape, predictor.preprocess.channels, batch_size,
                                     resized)


def read_samples(path: Path, predictor: Predictor) -> tuple[str, Tensor]:
    """The samples of the ``.npz`` ``input=path`` for this model (``inputs.read_npz``); none is refused."""
    key, x = read_npz(path, predictor.input_shape, predictor.preprocess)
    if len(x) == 0:
        raise LitlabError(f"input={path}: {key} holds no samples. Give an .npz with the samples to classify.")
    return key, x


def leave_out(cfg: DictConfig, run_dir: Path, out: Path) -> tuple[Path, ...]:
    """What a folder ``input`` holds that is litlab's, not inputs: ``paths.log_dir``, the run's folder, the CSV."""
    log_dir = cfg.paths.get("log_dir")
    return (Path(log_dir), run_dir, out) if log_dir else (run_dir, out)


def with_temperature(predictor: Predictor, temperature: float | None, how: str | None, who: str = "") -> None:
    """Divides ``predictor``'s logits by ``temperature`` (None: T = 1, as it is), said in the log."""
    if temperature is None:
        return
    predictor.net = TemperatureScaled(predictor.net, temperature)  # softmax(logits / T); the ranking stays
    log.info("%stemperature T=%.4f (%s)", who, temperature, how)


def summary_of(rows: PredictionCsv, resized: Resized, out: Path) -> dict:
    """What predict returns and records (less ``top1_counts``) of the CSV's ``rows``."""
    return {"predicted": rows.predicted, "errors": len(rows.errors), "resized": resized.count,
            "resized_stretched": resized.stretched, "predictions": str(out), "top_k": rows.top_k,
            "top1_counts": dict(sorted(rows.top1_counts.items(), key=lambda kv: -kv[1]))}


def listed_files(path: Path, leave_out: tuple[Path, ...] = ()) -> list[Path]:
    """The files of ``input=path`` (``input_files.list_files``), the folders left out said in the
    log; a folder without files is refused, naming what was left out."""
    files, left_out, images_left_out = list_files(path, leave_out)
    log_left_out(path, left_out, images_left_out)
    if not files:
        also = (f" (left out: {len(left_out)} folder(s) of litlab's runs and outputs: {first_of(left_out, 3)})"
                if left_out else "")
        advice = (f", or give a left-out folder itself as input= to read its files (e.g. "
                  f"input={(images_left_out or [(left_out[0], 0)])[0][0]})" if left_out else "")
        raise LitlabError(f"input={path} is a folder without files{also}. Put the images to classify in it "
                          f"(subfolders are searched){advice}.")
    return files


def log_left_out(path: Path, left_out: list[Path], images_left_out: list[tuple[Path, int]]) -> None:
    """One line for the folders the listing left out: a warning where run folders among them
    hold image files (a folder of the user's with a litlab record in it, or images put in a run's
    folder), naming them and how to read one."""
    if images_left_out:
        count = sum(n for _, n in images_left_out)
        log.warning("input=%s: left out %d image file(s) in %d folder(s) that hold a litlab run's record "
                    "(.hydra/config.yaml, multirun.yaml or metrics.json): %s. To classify a left-out folder's files, "
                    "give that folder itself as input= (e.g. input=%s)", path, count, len(images_left_out),
                    first_of([f"{folder} ({n})" for folder, n in images_left_out], 3), images_left_out[0][0])
    elif left_out:
        log.info("input=%s: left out %d folder(s) of litlab's outputs (run folders, paths.log_dir): %s", path,
                 len(left_out), first_of(left_out, 3))


def check_takes_image_files(path: Path, predictor: Predictor) -> None:
    """Image files decode to 8-bit grayscale or RGB pixels: a sequence model, or a model trained on
    arrays of another scale or channel count, cannot take them."""
    pre, channels = predictor.preprocess, predictor.input_shape[0]
    if pre.kind != "image":
        what, one = sample_shape(predictor.input_shape, pre.kind)  # feature vectors (N, F) or sequences (N, L, F)
        what, shape = what.split(" (")[0], ", ".join(map(str, one))
        raise LitlabError(f"input={path}: this checkpoint classifies {what} of shape {one}, not image files. Give an "
                          f".npz file with the {what} under key x, shaped (N, {shape}); one alone, x of shape {one}, "
                          f"needs the batch axis: x[None].")
    if pre.pixels is False:
        raise LitlabError(f"input={path}: this checkpoint was trained on arrays used as they are, not on 8-bit pixels, "
                          f"so image files would reach it on another scale. Give an .npz file with the samples under "
                          f"key x, on the scale of the training arrays.")
    if pre.channels is None and channels not in (1, 3):
        raise LitlabError(f"input={path}: this checkpoint takes images of {channels} channels; image files give 1 "
                          f"(grayscale) or 3 (RGB). Give an .npz file with the samples under key x, shaped "
                          f"(N, {', '.join(map(str, predictor.input_shape))}).")


def predict(cfg: DictConfig) -> dict:
    """Classifies ``cfg.input`` with ``cfg.ckpt_path``; writes the CSV and returns the summary.
    ``ckpt_path`` a list or a sweep folder: with the ensemble (``prediction.ensemble``)."""
    if is_ensemble(cfg.get("ckpt_path")):
        from litlab.prediction.ensemble import predict_ensemble  # it builds on this module's steps

        return predict_ensemble(cfg)
    run_dir = Path(cfg.paths.output_dir)
    out = Path(cfg.output) if cfg.get("output") else run_dir / "predictions.csv"
    # also run by the command line (with hydra.run.dir), before torch is imported
    top_k, batch_size = check_before_loading(cfg, out, ("paths.output_dir", run_dir))
    predictor = load_predictor(str(cfg.ckpt_path), pick_device(str(cfg.get("device", "auto"))))
    temperature, source, how = predict_temperature(cfg)
    with_temperature(predictor, temperature, how)
    resized = Resized()
    total, batches = input_batches(Path(cfg.input), predictor, batch_size, leave_out(cfg, run_dir, out), resized)
    log_top_k(cfg, top_k, len(predictor.class_names))
    log.info("predicting %d input(s) from %s with %s", total, cfg.input, cfg.ckpt_path)
    with PredictionCsv(out, predictor.class_names, top_k) as rows:
        for names, x, errors, order in batches:
            rows.write(names, predictor.logits(x) if x is not None else None, errors, order)
    log_resized(resized, predictor)
    check_some_predicted(cfg, rows, out)
    summary = summary_of(rows, resized, out)
    if temperature is not None:
        summary["temperature"] = {"value": temperature, "from": source}
    update_metrics(run_dir, status="completed", task="predict", ckpt_path=str(cfg.ckpt_path), input=str(cfg.input),
                   **{k: v for k, v in summary.items() if k != "top1_counts"})
    print_summary(cfg, summary, rows.errors, how)
    return summary


def log_top_k(cfg: DictConfig, top_k: int, classes: int) -> None:
    """Said when ``top_k`` is more than the ``classes``: the CSV's columns stop at the last class."""
    if top_k <= classes:
        return
    # a warning only for a top_k the user gave: predict.yaml's default 3 is more than a 2-class model's
    given = job_overrides(cfg)
    told = given is None or any(sets_key(o, "top_k") for o in given)
    log.log(logging.WARNING if told else logging.INFO, "top_k=%d is more than the %d classes: each row lists "
            "all %d", top_k, classes, classes)


def check_some_predicted(cfg: DictConfig, rows: PredictionCsv, out: Path) -> None:
    """A run whose every input was an error row fails, naming the first and why (the CSV lists all)."""
    if not rows.errors or rows.predicted:
        return
    name, why = rows.errors[0]
    if Path(str(cfg.input)).suffix == ".npz":  # samples of one array, not files
        raise LitlabError(f"input={cfg.input}: none of its {len(rows.errors)} sample(s) could be classified; the "
                          f"first, {name}, {why}. {out} lists each sample with why. Give samples the model can "
                          f"take (finite numbers, no NaN or infinity) under key x.")
    raise LitlabError(f"input={cfg.input}: none of its {len(rows.errors)} file(s) could be classified; the first, "
                      f"{name}, is {why}. {out} lists each file with why. Give images (PNG, JPEG, ...) or an "
                      f".npz file with the samples under key x.")


def log_resized(resized: Resized, predictor: Predictor, who: str = "", whose: str = "the model's") -> None:
    """One line for the whole run when image files were resized to the model's ``(H, W)``: a
    warning where the aspect ratio changed (the picture is stretched) or the model was trained on
    files of their own size (it never saw a resized one; eval refuses other sizes there).
    ``who``: the line's start (an ensemble's members); ``whose``: whose size it is."""
    if not resized.count:
        return
    h, w = predictor.input_shape[1:]
    trained = predictor.preprocess.image_size
    how = (f"as training resized its files (data.image_size={list(trained)})" if trained else
           "which training never did (the model saw its files at their own size)")
    line = f"resized {resized.count} image file(s) to {whose} {w}x{h} (width x height), {how}"
    if resized.stretched:
        name, fw, fh = resized.first_stretched
        ratio = f"{w // math.gcd(w, h)}:{h // math.gcd(w, h)}"
        line += (f"; {resized.stretched} of them changed aspect ratio, so they are stretched (e.g. {name}, "
                 f"{fw}x{fh}): crop or pad them to {ratio} (width:height) for predictions like training's")
    else:
        name, fw, fh = resized.first
        line += f", keeping their aspect ratio (e.g. {name}, {fw}x{fh})"
    log.log(logging.WARNING if resized.stretched or not trained else logging.INFO, who + line)


def print_summary(cfg: DictConfig, summary: dict, errors: list[tuple[str, str]], how: str | None = None,
                  title: str | None = None, sizes: str = "the model's size") -> None:
    """A few lines: counts, the most frequent predicted classes, the first errors, the CSV.
    ``how``: where the temperature came from (``temperature_setting.predict_temperature``);
    ``title``: what predicted (default: ``ckpt_path``); ``sizes``: what files were resized to."""
    print(f"\nlitlab predict with {title or cfg.ckpt_path}:")
    print(f"  input        {cfg.input}")
    print(f"  predicted    {summary['predicted']}")
    if "temperature" in summary:
        t = summary["temperature"]
        print(f"  temperature  {t['value']:.6f} ({how or t['from']})")
    if summary["top1_counts"]:
        common = list(summary["top1_counts"].items())[:5]
        print("  top classes  " + ", ".join(f"{name} ({n})" for name, n in common))
    if summary.get("resized"):
        print(f"  resized      {summary['resized']} to {sizes} ({summary['resized_stretched']} stretched: "
              f"another aspect ratio)")
    print(f"  errors       {summary['errors']}")
    for name, why in errors[:3]:
        print(f"    {name}: {why}")
    if len(errors) > 3:
        print(f"    ... and {len(errors) - 3} more (see the CSV's error column)")
    print(f"  predictions  {summary['predictions']}")
