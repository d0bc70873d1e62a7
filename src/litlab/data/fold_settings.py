"""The cross-validation settings ``data.folds`` and ``data.fold``, checked without torch.

One check for every way a run reaches them: the command line's, before Hydra makes the run's
folder (``config_check.check_overrides`` calls ``check_fold_config`` for each swept value), and the
data modules' own when they are built. How many samples the folds share is known only once the
data is read (``datasets.fold_of_pool``).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError


def check_folds(folds: object, fold: object) -> tuple[int | None, int]:
    """``(data.folds, data.fold)`` as the data modules use them, or a LitlabError naming the key:
    ``folds`` is null (one hold-out split, ``fold`` then 0) or an integer >= 2, ``fold`` an integer
    in ``0..folds-1``."""
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise LitlabError(
            f"data.folds must be an integer >= 2 (the number of cross-validation folds) or null (one hold-out "
            f"validation split), got {folds!r}. For 5-fold cross-validation: data.folds=5 with data.fold=0..4.")
    if isinstance(fold, bool) or not isinstance(fold, int):
        raise LitlabError(f"data.fold must be an integer (the fold held out for validation, counted from 0), "
                          f"got {fold!r}.")
    if folds is None and fold != 0:
        raise LitlabError(
            f"data.fold={fold} picks the validation fold of a cross-validation, and data.folds is null (one hold-out "
            f"validation split, no folds). Add data.folds=K to cut the data into K folds (K > {fold}), or leave "
            f"data.fold out.")
    if folds is not None and not 0 <= fold < folds:
        raise LitlabError(
            f"data.fold must lie in 0..{folds - 1} (the validation fold of data.folds={folds}, counted from 0), got "
            f"{fold}. Sweep every fold with -m data.folds={folds} data.fold={','.join(map(str, range(folds)))}.")
    return folds, fold


def check_fold_config(cfg: DictConfig) -> None:
    """``data.folds`` and ``data.fold`` of a composed config (each job of a sweep), before Hydra
    makes the run's folder; data without the keys (synthetic) has nothing to check."""
    node = OmegaConf.select(cfg, "data", throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig) or ("folds" not in node and "fold" not in node):
        return
    check_folds(node.get("folds"), node.get("fold", 0))


def fold_shown(folds: int | None, fold: int) -> str:
    return f"fold {fold} of data.folds={folds}" if folds else "one hold-out split (data.folds=null)"


def other_fold(asked: tuple[int | None, int], trained: tuple[int | None, int], where: str) -> LitlabError:
    """The paragraph for data to evaluate (``asked``: data.folds, data.fold) cut otherwise than the
    run of ``where`` (a checkpoint) was trained on (``trained``)."""
    return LitlabError(
        f"The data is {fold_shown(*asked)} but the model of {where} was trained on {fold_shown(*trained)}: its "
        f"validation split would hold samples the model trained on. Leave data.folds and data.fold out of the "
        f"command (the run's own are used).")


def check_eval_folds(cfg: DictConfig, stored: dict | None) -> None:
    """``data.folds``/``data.fold`` given to eval (``cfg``, its command line's config) against the
    run's own (``stored``, its config read from ``cfg.ckpt_path``; None where it cannot be read):
    refused before eval makes its folder, with eval's advice, not a training sweep's. The data
    module refuses them again once the checkpoint is loaded (``adopt_trained``)."""
    node = OmegaConf.select(cfg, "data", throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig) or ("folds" not in node and "fold" not in node):
        return
    run = stored.get("data") if isinstance(stored, dict) else None
    where = f"ckpt_path={cfg.ckpt_path}"
    if isinstance(run, dict) and ("folds" in run or "fold" in run):
        trained = (run.get("folds"), run.get("fold", 0))
        asked = (node.get("folds", trained[0]), node.get("fold", trained[1]))
        if "fold" in node and asked[0] is None and asked[1] != 0:  # data.fold given, without folds: no fold to name
            raise LitlabError(f"data.fold={asked[1]} picks a cross-validation fold, and the model of {where} was "
                              f"trained on {fold_shown(*trained)}. Leave data.folds and data.fold out of the command "
                              f"(the run's own are used).")
        if asked != trained:
            raise other_fold(asked, trained, where)
        return
    try:  # a run whose config cannot be read here: the values at least must be valid ones
        check_folds(node.get("folds"), node.get("fold", 0))
    except LitlabError as e:
        raise LitlabError(f"{str(e).split('. ')[0]}. Leave data.folds and data.fold out of the command to "
                          f"evaluate {where} (the run's own are used).") from None


def folds_not_a_key(key: str, overrides: list[str]) -> LitlabError | None:
    """The paragraph for ``data.folds``/``data.fold`` given to data that has no such key (generated
    data): Hydra's "not a key ... use +data.folds" pointed at an argument the class does not take.
    None for any other key."""
    if key not in ("data.folds", "data.fold"):
        return None
    chosen = next((o.split("=", 1)[1] for o in overrides if "=" in o and o.split("=", 1)[0].lstrip("+") == "data"),
                  None)
    which = f"data={chosen}" if chosen else "the chosen data"
    return LitlabError(
        f"{key} is not a key of {which}: cross-validation cuts the training and validation samples of data read "
        f"from files (data=digits, data=imagefolder, data=npz) into folds, and generated data (data=synthetic, "
        f"data=synthetic_seq) has none; to repeat its runs on other samples, sweep data.data_seed. Leave {key} out, "
        f"or choose data read from files.")
