"""``python -m litlab.eval ckpt_path=PATH``: re-evaluate a checkpoint on the test (or val) split.

Data and model are rebuilt from the run record stored in the checkpoint; ``data.KEY=VALUE``
overrides change how the stored data is loaded (e.g. ``data.root`` after moving the files). This
module stays light (no torch or Lightning) so that command-line mistakes are reported at once;
the work is ``litlab.evaluation.evaluate``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from litlab.checkpoint_paths import check_checkpoint_path
from litlab.checkpoint_record import stored_run_config
from litlab.data.fold_settings import check_eval_folds
from litlab.ensemble_paths import check_ensemble_before_loading, is_ensemble
from litlab.entry import check_cli, hydra_main, mode_known, run_entrypoint, start
from litlab.errors import LitlabError, check_choice, check_positive_int
from litlab.init_from_path import check_not_given
from litlab.run_folders import select_or_none
from litlab.source_signatures import target_params
from litlab.target_arguments import HYDRA_KEYS, closest_first
from litlab.tuning.temperature_setting import eval_temperature

# the config groups a checkpoint's run record holds, which eval overrides change
RUN_GROUPS = ("data", "model")


def is_run_override(arg: str) -> bool:
    """``data.KEY=VALUE`` / ``model.KEY=VALUE`` (with or without ``+``): a change to the stored run."""
    key = arg.split("=", 1)[0].lstrip("+")
    return "=" in arg and "." in key and key.split(".")[0] in RUN_GROUPS


def hydra_argv(argv: list[str]) -> list[str]:
    """The command line as Hydra gets it: the eval config has no ``data``/``model`` nodes (they come
    from the checkpoint), so a plain ``data.KEY=VALUE`` is passed as ``++data.KEY=VALUE``;
    ``litlab.evaluation.stored_config`` then checks that the stored run has the key."""
    return [f"++{a}" if is_run_override(a) and not a.startswith("+") else a for a in argv]


def check_before_loading(cfg: DictConfig) -> str:
    """Every check of eval that needs neither torch nor the checkpoint's contents; returns the split.

    ``ckpt_path`` is given and is a checkpoint file that can be read, and a ``data.root`` given on
    the command line is a folder. ``check_cli`` runs this before torch and Lightning are imported
    (seconds), so that a mistyped path is reported at once; ``evaluation.evaluate`` runs it too.
    An ensemble (``ckpt_path`` a list or a sweep folder) gets these checks for each member
    (``ensemble_paths.check_ensemble_before_loading``)."""
    if is_ensemble(cfg.get("ckpt_path")):
        return check_ensemble_before_loading(cfg, check_before_loading)[0]
    if not cfg.get("ckpt_path"):
        raise LitlabError("ckpt_path is required: python -m litlab.eval "
                          "ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt")
    split = check_choice("split", cfg.get("split", "test"), ("test", "val"))
    check_checkpoint_path(cfg.ckpt_path)
    check_not_given(cfg, "eval")  # model.init_from: a training run's, not eval's
    check_data_keys_taken(cfg)  # +data.root=... on an npz run: NpzDataModule's TypeError once torch had loaded
    check_eval_folds(cfg, stored_run_config(cfg.ckpt_path))  # data.fold=9: the run's fold, not a sweep's advice
    root = select_or_none(cfg, "data.root")  # in the command line's config only when given (++data.root)
    if root is not None:
        check_root_given(root)
    eval_temperature(cfg)  # a number or auto, not auto with split=val
    check_callbacks_given(cfg)
    return split


def check_callbacks_given(cfg: DictConfig) -> None:
    """Of the training callbacks, eval takes ``+callbacks.eval_report.calibration_bins=N`` (the bins
    of ``test/ece``; the run's own by default); any other ``callbacks.*`` key was accepted and did
    nothing, so it is refused, naming it."""
    given = select_or_none(cfg, "callbacks")
    if given is None:
        return
    if not isinstance(given, DictConfig):
        given = OmegaConf.create({"": given})  # callbacks=<value>: reported as callbacks.
    report = given.get("eval_report")
    others = [f"callbacks.{k}".rstrip(".") for k in given if k != "eval_report"]
    if isinstance(report, DictConfig):
        others += [f"callbacks.eval_report.{k}" for k in report if k != "calibration_bins"]
    elif report is not None:
        others.append("callbacks.eval_report")
    if others:
        raise LitlabError(f"{', '.join(others)}: eval runs none of the training callbacks, so this would change "
                          f"nothing. Of them, eval takes only +callbacks.eval_report.calibration_bins=N (the bins of "
                          f"test/ece). Remove the key.")
    bins = report.get("calibration_bins") if isinstance(report, DictConfig) else None
    if bins is not None:
        check_positive_int("callbacks.eval_report.calibration_bins", bins)


def check_data_keys_taken(cfg: DictConfig) -> None:
    """A ``data.KEY`` given to eval (``data.KEY=`` or ``+data.KEY=``) that the run stored in the
    checkpoint has not, and whose data module takes no argument of that name, is refused here,
    before torch: the stored config is read from the file without it (``checkpoint_record``).
    Where that cannot be read, ``evaluation.stored_config`` refuses it once the checkpoint is loaded."""
    given = select_or_none(cfg, "data")
    stored = stored_run_config(cfg.ckpt_path) if isinstance(given, DictConfig) else None
    data = (stored or {}).get("data")
    if not isinstance(data, dict):
        return
    run = OmegaConf.create({"data": data})
    for key in given:
        why = None if key in data else argument_taken(run, f"data.{key}")
        if isinstance(why, str):
            raise key_not_taken(f"data.{key}", cfg.ckpt_path, why)


def key_not_taken(name: str, ckpt_path, why: str) -> LitlabError:
    """The refusal of a key ``name`` given to eval that the run stored in ``ckpt_path`` has not, and
    that its class does not take (``why``: ``argument_taken``'s sentence), as ``name=``, ``+name=``
    or ``++name=`` alike: told before torch (``check_data_keys_taken``) or, where the record could
    not be read then, once the checkpoint is loaded (``evaluation.stored_config``), in one wording."""
    return LitlabError(f"{name} is not a key of the run stored in {ckpt_path}, and it cannot be added either: {why} "
                       f"Check the spelling against the run's .hydra/config.yaml. Refused before anything was "
                       f"evaluated.")


def argument_taken(cfg: DictConfig, name: str) -> bool | str | None:
    """Whether the node above ``name`` in a stored run ``cfg`` (``data`` for ``data.root``) builds
    a target that takes that argument, read from its source (``source_signatures.target_params``):
    True; None where that cannot be told (a node without ``_target_``, a class of the user's own,
    the task's ``model`` node, Hydra's keys); else the sentence naming the arguments it does take,
    the closest to the key first."""
    where, _, arg = name.rpartition(".")
    if where == "model" or arg in HYDRA_KEYS:  # the task: litlab takes its speed switches and init_from off
        return None
    node = OmegaConf.select(cfg, where, default=None)
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    takes = target_params(target) if isinstance(target, str) else None
    if takes is None or arg in takes:
        return None if takes is None else True
    close, ordered = closest_first(arg, [k for k in takes if k not in HYDRA_KEYS])
    listed = ", ".join(f"{where}.{k}" for k in ordered) or "no settings"
    hint = f" Did you mean {where}.{close[0]}?" if close else ""
    return f"{where} is {target}, which has no argument {arg}; it takes {listed}.{hint}"


def check_root_given(root: object) -> None:
    """A ``data.root`` given to eval must be a folder: on a digits checkpoint a misspelt one got a
    fresh digits set written there, scored, and reported with exit 0 as if it were the folder meant."""
    if not Path(str(root)).is_dir():
        raise LitlabError(f"data.root={root} is not a folder. Give the folder of the images to evaluate, "
                          f"holding test/<class>/ (or val/<class>/ with split=val).")


@hydra_main("eval")
def _hydra_main(cfg: DictConfig) -> None:
    overrides = list(HydraConfig.get().overrides.task)

    def work(c: DictConfig) -> dict:
        if is_ensemble(c.get("ckpt_path")):  # a list of checkpoints, or a sweep folder
            from litlab.ensemble_eval import evaluate_ensemble

            return evaluate_ensemble(c, overrides)
        from litlab.evaluation import evaluate  # inside run_entrypoint: Ctrl-C during the imports is recorded

        return evaluate(c, overrides)

    run_entrypoint(work, cfg)


def main() -> None:
    """``python -m litlab.eval`` / ``litlab-eval``."""
    sys.argv[1:] = hydra_argv(start("eval"))
    with mode_known(sys.argv[1:], check_cli(sys.argv[1:], "eval", check_before_loading)):
        _hydra_main()


if __name__ == "__main__":
    main()
