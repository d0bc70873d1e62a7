"""What ``predict`` checks before it loads the model: the paths (``ckpt_path``, ``input``,
``output``) and the numbers of the command line, none of which needs torch or the checkpoint's
contents. ``python -m litlab.predict`` runs ``check_before_loading`` before it imports torch and
Lightning (seconds), so that a mistyped path is reported at once; ``predict(cfg)`` runs it too, for
callers in-process."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from litlab.checkpoint_paths import check_checkpoint_path
from litlab.ensemble_paths import is_ensemble
from litlab.errors import LitlabError, check_positive_int
from litlab.init_from_path import check_not_given
from litlab.prediction.ensemble_checks import check_ensemble_before_loading
from litlab.run_folders import name_limit, path_problem, select_or_none
from litlab.tuning.temperature_setting import predict_temperature


def check_before_loading(cfg: DictConfig, out: Path | None, run_dir: tuple[str, Path] | None = None
                         ) -> tuple[int, int]:
    """Every check of ``predict`` that comes before the model loads; returns ``(top_k, batch_size)``.

    ``out`` is the CSV to write, None where it is not known yet (the run's own folder, which Hydra
    has not made when the command line is checked). ``run_dir``: the key that names the run's
    folder and the folder (``hydra.run.dir`` on the command line, ``paths.output_dir`` in the run).
    An ensemble (``ckpt_path`` a list or a sweep folder) gets these checks for each member
    (``ensemble_checks.check_ensemble_before_loading``)."""
    if is_ensemble(cfg.get("ckpt_path")):
        return check_ensemble_before_loading(cfg, out, run_dir, check_before_loading)[:2]
    for key in ("ckpt_path", "input"):
        if not cfg.get(key):
            raise LitlabError(f"{key} is required: python -m litlab.predict ckpt_path=outputs/runs/<run>/checkpoints/"
                              f"best.ckpt input=IMAGE|FOLDER|FILE.npz")
    for key in ("ckpt_path", "input", "output"):
        value = select_or_none(cfg, key)  # None: an output in the run's folder, not made yet on the command line
        if value:
            check_name_lengths(key, Path(value))
    top_k = check_positive_int("top_k", cfg.get("top_k", 3))
    batch_size = check_positive_int("batch_size", cfg.get("batch_size", 64))
    if out is not None:
        check_output(out, {"ckpt_path": Path(cfg.ckpt_path), "input": Path(cfg.input)})
    check_checkpoint_path(cfg.ckpt_path)
    check_not_given(cfg, "predict")  # model.init_from: a training run's, not predict's
    check_input_exists(Path(cfg.input))
    if run_dir is not None:
        check_run_dir_outside_input(cfg, *run_dir)
    predict_temperature(cfg)  # a positive number, or an eval folder whose T is of this checkpoint's bytes (sha256)
    return top_k, batch_size


def check_command_line(cfg: DictConfig) -> None:
    """``check_before_loading`` on the composed config of the command line (``entry.check_cli``):
    ``output=`` when given; the default, in the run's folder, is checked in the run."""
    output = select_or_none(cfg, "output")
    run_dir = select_or_none(cfg, "hydra.run.dir")  # None: resolved only in the run, checked there
    check_before_loading(cfg, Path(output) if output else None,
                         ("hydra.run.dir", Path(run_dir)) if run_dir else None)


def check_input_exists(path: Path) -> None:
    """``input=`` must exist; whether its kind (images or arrays) fits the model is known only
    from the checkpoint (``run.input_batches``)."""
    if not path.exists():
        raise LitlabError(f"input={path} does not exist. Give an image file, a folder of images or an .npz file.")


def check_run_dir_outside_input(cfg: DictConfig, key: str, run_dir: Path) -> None:
    """The run's folder must not be the folder ``input=`` nor hold it. Hydra writes ``.hydra/``
    and ``predict.log`` there before the inputs are listed, and ``metrics.json`` and the CSV
    follow: in the input folder itself this run would list its own log as an input, and later
    predicts its other files; a run folder above the input makes the user's image folder part of a
    run's folder, which a listing of a folder above it leaves out whole (``is_run_folder``). A run
    folder strictly below ``input`` is fine: the listing leaves it out (``input_files.list_files``),
    as it does the default ``outputs/runs/<time>`` of ``predict input=.``."""
    given = Path(cfg.input)
    if not given.is_dir():
        return  # one image file or an .npz: nothing is listed
    inputs, run = os.path.realpath(given), os.path.realpath(run_dir)
    if run == inputs:
        why = (f"is the folder input={cfg.input}: predict would write its run's files (.hydra/, predict.log, "
               f"metrics.json, predictions.csv) among the images it classifies and read its own log as an input, "
               f"and a later predict of the folder its other files")
    elif Path(inputs).is_relative_to(run):
        why = (f"holds the folder input={cfg.input}: predict would write its run's record (.hydra/, predict.log, "
               f"metrics.json) above the images, making their folder part of a run folder, which a later predict "
               f"of a folder above it leaves out with all its images")
    else:
        return
    log_dir = select_or_none(cfg, "paths.log_dir")
    if log_dir and Path(run).is_relative_to(os.path.realpath(log_dir)):
        how = (f"Give {key} (or paths.log_dir) another folder: one outside {cfg.input}, or one inside it, which its "
               f"listing leaves out.")
    else:
        how = (f"Give {key} another folder (one inside {cfg.input} is left out of its listing), or leave it out: "
               f"runs then go to paths.log_dir ({log_dir}).")
    raise LitlabError(f"{key}={run_dir} {why}. {how}")


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
