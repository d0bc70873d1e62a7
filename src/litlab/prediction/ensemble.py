"""Classifying new inputs with an ensemble (``ckpt_path=[A,B]`` or a sweep folder): the average of
its members' class probabilities, which ``prediction.run.predict`` runs for such a ``ckpt_path``.

Each member predicts as it would alone: its own normalization, channels and image size, its own
temperature (``ensemble_checks.member_temperatures``). The members must name the same classes in the
same order. Image files mean one picture to every member, so members of other image sizes or
channels are combined: each decodes the file to its own size and channels, as it does alone (the
file is opened once, decoded once per distinct size and channels). An ``.npz`` array reaches every
member as it is, so they must take samples of one shape and one scale (the same ``kind`` and
``pixels``): a float array is pixels in [0, 1] to one model and raw values to another. Every
member is held on the device at once: the ensemble takes the memory of its members together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from litlab.errors import LitlabError
from litlab.listing import first_of
from litlab.prediction.checkpoint_model import Predictor, load_predictor, pick_device
from litlab.prediction.csv_rows import PredictionCsv
from litlab.prediction.ensemble_checks import Temperature, check_ensemble_before_loading
from litlab.prediction.inputs import Resized, array_batches, decoded_batches, sample_shape
from litlab.prediction.path_checks import check_before_loading, check_input_exists
from litlab.prediction.run import (check_some_predicted, check_takes_image_files, leave_out, listed_files,
                                   log_resized, log_top_k, print_summary, read_samples, summary_of, with_temperature)
from litlab.reporting.run_files import update_metrics
from litlab.tuning.temperature_setting import checkpoint_fingerprint

log = logging.getLogger(__name__)

# (names of the readable inputs, their samples for each member, (name, why) of the others, every name in order)
EnsembleBatch = tuple[list[str], list[Tensor] | None, list[tuple[str, str]], list[str]]


def predict_ensemble(cfg: DictConfig) -> dict:
    """Classifies ``cfg.input`` with every member of ``cfg.ckpt_path``; writes the CSV of their
    averaged probabilities and returns the summary."""
    run_dir = Path(cfg.paths.output_dir)
    out = Path(cfg.output) if cfg.get("output") else run_dir / "predictions.csv"
    top_k, batch_size, members, temperatures = check_ensemble_before_loading(
        cfg, out, ("paths.output_dir", run_dir), check_before_loading, tell=True)
    log.info("ensemble of %d member%s: %s", len(members), "s" if len(members) != 1 else "",
             ", ".join(map(str, members)))
    predictors = load_members(members, temperatures, pick_device(str(cfg.get("device", "auto"))))
    check_same_classes(members, predictors)
    resized = [Resized() for _ in members]
    any_resized = Resized()
    total, batches = ensemble_batches(Path(cfg.input), members, predictors, batch_size, leave_out(cfg, run_dir, out),
                                      resized, any_resized)
    log_top_k(cfg, top_k, len(predictors[0].class_names))
    log.info("predicting %d input(s) from %s with an ensemble of %d", total, cfg.input, len(members))
    with PredictionCsv(out, predictors[0].class_names, top_k) as rows:
        for names, xs, errors, order in batches:
            rows.write_probabilities(names, average_probabilities(predictors, xs) if xs is not None else None,
                                     errors, order)
    log_members_resized(members, predictors, resized)
    check_some_predicted(cfg, rows, out)
    records = []
    for path, (temperature, source, _), count in zip(members, temperatures, resized):
        record = {"ckpt_path": str(path), **checkpoint_fingerprint(path), "resized": count.count,
                  "resized_stretched": count.stretched}
        if temperature is not None:
            record["temperature"] = {"value": temperature, "from": source}
        records.append(record)
    summary = summary_of(rows, any_resized, out)
    given = cfg.ckpt_path if isinstance(cfg.ckpt_path, str) else [str(v) for v in cfg.ckpt_path]
    update_metrics(run_dir, status="completed", task="predict", ckpt_path=given, input=str(cfg.input),
                   ensemble=True, members=records, **{k: v for k, v in summary.items() if k != "top1_counts"})
    print_ensemble(cfg, summary, rows.errors, records)
    return {**summary, "ensemble": True, "members": records}


def load_members(members: list[Path], temperatures: list[Temperature], device: torch.device) -> list[Predictor]:
    """Every member's model, each with its own T, held on ``device`` together: the ensemble takes the
    memory of all its members at once, said in the log with their weights' bytes."""
    predictors = []
    for path, (temperature, _, how) in zip(members, temperatures):
        predictor = load_predictor(str(path), device)
        with_temperature(predictor, temperature, how, who=f"member {path}: ")
        predictors.append(predictor)
    held = sum(t.numel() * t.element_size() for p in predictors for t in (*p.net.parameters(), *p.net.buffers()))
    places = ", ".join(sorted({str(p.device) for p in predictors}))
    log.info("the ensemble's %d member(s) are held on %s at once: %d bytes (%.1f MiB) of parameters and buffers in "
             "all, the sum of the members'", len(predictors), places, held, held / 2**20)
    return predictors


def average_probabilities(predictors: list[Predictor], xs: list[Tensor]) -> Tensor:
    """The mean of the members' softmax probabilities, float64 ``(N, C)``; ``xs[i]`` is member i's samples."""
    probabilities = [p.logits(x).double().softmax(dim=-1) for p, x in zip(predictors, xs)]  # M x (N, C)
    return torch.stack(probabilities).mean(dim=0)  # (M, N, C) -> (N, C)


def check_same_classes(members: list[Path], predictors: list[Predictor]) -> None:
    """Every member names the same classes in the same order: probabilities are averaged by index."""
    first = predictors[0].class_names
    for path, predictor in zip(members[1:], predictors[1:]):
        names = predictor.class_names
        if names == first:
            continue
        if sorted(names) == sorted(first):
            at = next(i for i, (a, b) in enumerate(zip(first, names)) if a != b)
            why = f"the same classes in another order (class {at} is {first[at]} and {names[at]})"
        else:
            why = f"other classes ({len(first)}: {first_of(first, 5)} against {len(names)}: {first_of(names, 5)})"
        raise LitlabError(f"The ensemble's members {members[0]} and {path} predict {why}, so their probabilities "
                          f"cannot be averaged class by class. Combine models trained on the same classes (the same "
                          f"data, e.g. the jobs of one sweep).")


def ensemble_batches(path: Path, members: list[Path], predictors: list[Predictor], batch_size: int,
                     leave_out: tuple[Path, ...], resized: list[Resized], any_resized: Resized
                     ) -> tuple[int, Iterator[EnsembleBatch]]:
    """The batches of ``input=path`` for every member, read once: an ``.npz`` array is read once and
    given to every member as it is (checked to mean the same to all: ``check_same_samples``); an
    image file is opened once and decoded once per distinct (channels, size) of the members."""
    check_input_exists(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        check_same_samples(path, members, predictors)
        key, x = read_samples(path, predictors[0])
        return len(x), ((names, None if chunk is None else [chunk] * len(predictors), errors, order)
                        for names, chunk, errors, order in array_batches(path, key, x, batch_size))
    for member, predictor in zip(members, predictors):
        try:
            check_takes_image_files(path, predictor)
        except LitlabError as e:
            raise LitlabError(f"The ensemble's member {member} cannot take image files: {e}") from None
    files = listed_files(path, leave_out)
    specs = [(p.preprocess.channels or p.input_shape[0], *p.input_shape[1:]) for p in predictors]
    distinct = list(dict.fromkeys(specs))  # members of one size and channels share the decoded files
    shared = [Resized() for _ in distinct]
    resized[:] = [shared[distinct.index(s)] for s in specs]  # each member's count: its size's

    def batches() -> Iterator[EnsembleBatch]:
        for names, decoded, errors, order in decoded_batches(files, distinct, batch_size, shared, any_resized):
            yield names, None if decoded is None else [decoded[distinct.index(s)] for s in specs], errors, order

    return len(files), batches()


def log_members_resized(members: list[Path], predictors: list[Predictor], resized: list[Resized]) -> None:
    """One line per distinct decoding that resized files (``log_resized``), naming its members:
    members of one size and channels share one count (``ensemble_batches``), and a line per member
    repeated the same words once per job of a sweep. Members of one decoding trained otherwise (with
    ``data.image_size``, or on files of their own size) get a line each way."""
    groups: dict[tuple, list[int]] = {}
    for i, (predictor, count) in enumerate(zip(predictors, resized)):
        trained = tuple(predictor.preprocess.image_size or ())
        groups.setdefault((id(count), trained), []).append(i)
    for at in groups.values():
        if len(at) == 1:
            log_resized(resized[at[0]], predictors[at[0]], who=f"member {members[at[0]]}: ")
        else:
            who = f"{len(at)} members ({first_of([str(members[i]) for i in at], 3)}): "
            log_resized(resized[at[0]], predictors[at[0]], who=who, whose="their")


def check_same_samples(path: Path, members: list[Path], predictors: list[Predictor]) -> None:
    """An ``.npz`` array reaches every member as it is: they must take samples of one shape and one
    scale (the same kind, and 8-bit pixels or raw values alike)."""
    first = predictors[0]
    for member, predictor in zip(members[1:], predictors[1:]):
        a, b = first.preprocess, predictor.preprocess
        if (tuple(first.input_shape), a.kind, a.pixels) == (tuple(predictor.input_shape), b.kind, b.pixels):
            continue
        raise LitlabError(f"input={path}: the ensemble's members {members[0]} and {member} take other samples "
                          f"({_samples(first)} against {_samples(predictor)}), so one array cannot mean the same to "
                          f"both. Give image files (each member decodes and resizes them as it does alone), or "
                          f"combine models trained on data of one shape and scale.")


def _samples(predictor: Predictor) -> str:
    what, one = sample_shape(predictor.input_shape, predictor.preprocess.kind)
    scale = {True: "8-bit pixels", False: "raw values"}.get(predictor.preprocess.pixels, "values")
    return f"{what.split(' (')[0]} of shape {one}, {scale}"


def print_ensemble(cfg: DictConfig, summary: dict, errors: list[tuple[str, str]], records: list[dict]) -> None:
    """The summary of one checkpoint's predict, titled as an ensemble, then its members (and their T)."""
    n = len(records)
    print_summary(cfg, summary, errors, title=f"an ensemble of {n} member{'s' if n != 1 else ''} (their "
                                               f"probabilities averaged)",
                  sizes="the model's size" if n == 1 else "their members' sizes")
    for i, r in enumerate(records):
        extra = f" (T={r['temperature']['value']:.4f})" if "temperature" in r else ""
        print(f"  member {i}     {r['ckpt_path']}{extra}")
