"""A key added on the command line that the class or function it is given to does not take.

``++averaging.decya=0.9`` (decay, misspelt) under ``averaging=ema`` composed without a word, as
``++`` adds any key; the run made its folder, prepared the data and failed only when
``litlab.callbacks.weight_averaging.ema`` was called with ``decya``. ``config_check`` runs this
rule on every job's composed config before torch is imported and before any folder is made:
a ``+KEY`` or ``++KEY`` override whose nearest node with a ``_target_`` above it
(``averaging``, ``model.net``, ``compress.finetune``, ``callbacks.eval_report``, ``model.optimizer``,
``trainer``) builds a target inside litlab, Lightning or ``torch.optim`` is refused where that
target has no argument of the key's name, read from its source (``source_signatures``, not
imported). Let through: a target elsewhere (the user's own, ``torch.nn``'s), one whose arguments
cannot be read with certainty (``**kwargs``, a base class elsewhere), Hydra's own keys
(``_partial_``, ...), a key the chosen files already have, ``model.*`` keys that litlab takes off
the node before building the task (its speed switches), and keys of a node with no ``_target_``
(a choice with no settings: ``empty_choices``; ``data.augment.*``, whose dict is one argument).
Refused whatever the target: an argument litlab passes itself when it builds the node
(``model.net.num_classes``, from the data; ``model.optimizer.params`` and
``model.scheduler.optimizer``, given as the partials are finished; ``trainer.logger``, the logger
group's; the trainer's as the entry point builds it: ``trainer.plugins`` in train and eval, and
in lr_find, which hands its trainer overrides on to the train command it prints), which would
override the user's value without a word, and ``model.mixing``, the mixing group's; they are
left out of the keys listed. In train and lr_find, ``trainer.enable_checkpointing=true`` (or
``enable_progress_bar``) is refused where the callbacks have no ``model_checkpoint``
(``progress_bar``) entry: build_trainer sets both from the callbacks.
A key under the argument (``+compress.student.num_classes=3``) is refused as the argument.
An override this check cannot read (an interpolation that does not resolve yet) is let through
to the checks after it.
"""

from __future__ import annotations

import ast
import difflib
import shlex
from collections.abc import Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.errors import LitlabError
from litlab.source_signatures import PACKAGE_DIR, subclass_of, target_params

# keys Hydra's instantiate reads itself and never passes on
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def _from_data(where: str, *names: str) -> dict[str, str]:
    """Why a value typed for ``where``'s ``names`` is refused, as litlab takes them from the data."""
    sources = {"input_shape": "the data (the shape of one sample)", "num_classes": "the data (its number of classes)"}
    return {name: f"litlab sets {where}.{name} from {sources[name]} when it builds {where}, so this value would "
                  f"never be used. Remove it" for name in names}


# the arguments litlab passes itself when it builds the node (build.build_model and build_task,
# compression.distillation's student), each with why the value typed is refused and what to do
# instead; the trainer's, which differ by entry point, are TRAINER_SET_BY_LITLAB's
SET_BY_LITLAB = {
    "model.net": _from_data("model.net", "input_shape", "num_classes"),
    "compress.student": _from_data("compress.student", "input_shape", "num_classes"),
    "model": {
        **_from_data("model", "num_classes"),
        # under mixing=none the value reached the task as it is, and the training failed on it
        "mixing": "model.mixing is the mixing group's, and a value given here is not a mixer: litlab hands the task "
                  "the mixer that mixing=mixup, cutmix or mixup_cutmix builds (its keys are mixing.*). Remove it and "
                  "choose the mixing with the mixing group",
    },
    # partials finished in code (tasks.optimizers): the keyword given there wins over the file's
    "model.optimizer": {"params": "litlab gives the optimizer the net's parameters itself (in two groups where "
                                  "model.decay_biases_and_norms=false), so this value would never be used. Remove it"},
    "model.scheduler": {"optimizer": "litlab gives the schedule the optimizer built from model.optimizer itself, so "
                                     "this value would never be used. Remove it"},
}


def _switches_off(run: str) -> dict[str, str]:
    """Why ``enable_checkpointing`` and ``enable_progress_bar`` typed are refused where ``run`` gives
    its trainer both false itself."""
    return {"enable_checkpointing": f"{run} writes no checkpoint (litlab gives its trainer enable_checkpointing="
                                    f"False), so this value would never be used. Remove it",
            "enable_progress_bar": f"{run} shows no progress bar (litlab gives its trainer enable_progress_bar="
                                   f"False), so this value would never be used. Remove it"}


_BUILD_TRAINER = {
    "logger": "litlab gives the trainer the loggers of the logger group itself, so this value would never be "
              "used. Remove it and choose them with logger=tensorboard, csv or none (both: logger=[tensorboard,csv])",
    "plugins": "litlab gives the trainer its own plugin (the checkpoint writer that replaces a file only once "
               "the new one is whole), so this value would never be used; litlab has no key for other plugins "
               "(the precision is trainer.precision). Remove it",
}
_TRAIN = {
    "callbacks": "litlab gives the trainer the callbacks it builds itself, so this value would never be used. "
                 "Remove it: they are the callbacks group's (callbacks=default, early_stopping or none; "
                 "callbacks.NAME=null drops one, +callbacks.NAME={_target_:CLASS} adds one of your own) and the "
                 "averaging's (averaging=...)",
    **_BUILD_TRAINER,
}
# the Trainer arguments each entry point passes itself, as its trainer is built: train and eval
# through build.build_trainer (its callbacks, the logger group's loggers, the atomic checkpoint
# writer; eval neither checkpoints nor a progress bar). lr_find's are train's: its trainer
# overrides are carried to the train command it prints (its range test sets its own callbacks,
# logger and switches over them), so it refuses what that command would refuse and no more.
# predict builds no trainer.
TRAINER_SET_BY_LITLAB = {
    "train": _TRAIN,
    "eval": {
        "callbacks": "litlab gives the trainer the callbacks it builds itself (the evaluation's report and its "
                     "interruption record), so this value would never be used. Remove it",
        **_BUILD_TRAINER,
        # build_trainer turns both on only for a checkpoint or progress-bar callback, which eval has none of
        **_switches_off("the evaluation"),
    },
    "lr_find": {name: f"lr_find hands its trainer overrides on to the train command it prints, and there "
                      f"{reason[0].lower()}{reason[1:]}" for name, reason in _TRAIN.items()},
}
# the Trainer switches build_trainer sets from the callbacks (on only where one of that kind is
# there): the entry of conf/callbacks/default.yaml that builds it, its target, and what it gives
SWITCHED_BY_CALLBACK = {
    "enable_checkpointing": ("model_checkpoint", "litlab.callbacks.checkpoints.checkpoint_callback", "checkpoints"),
    "enable_progress_bar": ("progress_bar", "litlab.callbacks.progress.progress_bar", "a progress bar"),
}
# arguments of Lightning's ModelCheckpoint that litlab's checkpoint_callback does not take (a habit from
# other templates): what litlab keeps instead, said in place of the nearest argument's name
_KEEPS = ("litlab keeps two checkpoints: checkpoints/best.ckpt, rewritten whenever callbacks.model_checkpoint.monitor "
          "improves (in the direction of callbacks.model_checkpoint.mode), and checkpoints/last.ckpt, rewritten at "
          "every epoch's end for resuming (callbacks.model_checkpoint.save_last)")
_MORE = ("For more, add Lightning's own beside them, e.g. '+callbacks.top_k={_target_:lightning.pytorch.callbacks."
         "ModelCheckpoint,dirpath:${paths.output_dir}/top_k,save_top_k:3,monitor:val/acc,mode:max}' (best.ckpt and "
         "last.ckpt stay as they are).")
ARGUMENT_HINTS = {
    "litlab.callbacks.checkpoints.checkpoint_callback": {
        "save_top_k": f"{_KEEPS}; it keeps no top-k set of checkpoints. {_MORE}",
        "every_n_epochs": f"{_KEEPS}; it keeps no checkpoint of every n-th epoch. {_MORE}",
    },
}
DISTILL = "litlab.compression.distillation.Distill"  # the compression method that builds compress.student
CLASSIFIER = "litlab.tasks.classification.Classifier"  # the task that finishes model.optimizer and model.scheduler


def check_target_arguments(cfg: DictConfig, overrides: Sequence[str], primary_command: str,
                           keys_before: Callable[[list[str]], DictConfig | None] | None = None) -> None:
    """Refuses a ``+``/``++`` override of ``overrides`` that gives a litlab target of ``cfg`` (one
    job's composed config) an argument it does not take, as the module's docstring says.
    ``keys_before``: a function of the overrides that returns the config composed from them (or
    None), to tell a key the chosen files already have; read only for a key about to be refused."""
    for override in overrides:
        try:
            refusal = _refusal(cfg, override, overrides, primary_command, keys_before)
        except OmegaConfBaseException:  # not readable here (an interpolation): the checks after this one say
            continue
        if refusal is not None:
            raise refusal


def _refusal(cfg: DictConfig, override: str, overrides: Sequence[str], command: str,
             compose: Callable[[list[str]], DictConfig | None] | None) -> LitlabError | None:
    """The error for ``override`` where it gives its node's target an argument it does not take
    or one litlab sets itself; None where it is let through."""
    found = _given_to(cfg, override)
    if found is None:
        return None
    where, name, target = found
    set_aside = passed_by_litlab(cfg, where, command)
    if name in set_aside:
        return set_by_litlab(override, where, name, set_aside[name])
    if where == "trainer" and _entry_point(command) in ("train", "lr_find") and name in SWITCHED_BY_CALLBACK:
        return _switch_without_callback(cfg, override, name)
    takes = target_params(target)
    if takes is None or name in takes or name in HYDRA_KEYS or name in _taken_off(where):
        return None
    job = OmegaConf.select(cfg, "hydra.overrides.task", default=None)  # this job's own, in a sweep
    # read as typed: ${hydra:runtime.output_dir} in any override does not resolve before the run
    job = [str(o) for o in OmegaConf.to_container(job, resolve=False)] if job else list(overrides)
    if compose is not None and _in_files(compose, job, f"{where}.{name}"):
        return None
    origin, hint = _origin(where, target, _choice(cfg, where), job, f"{where}.{name}", compose)
    return not_an_argument(override, where, name, target, takes, origin, " ".join(filter(None, [command, hint])),
                           set_aside)


def passed_by_litlab(cfg: DictConfig, where: str, command: str) -> dict[str, str]:
    """The arguments litlab passes itself to the node at ``where`` (``SET_BY_LITLAB``), each with
    where it takes them from; ``compress.student`` only as litlab's distillation builds it,
    ``model.optimizer``'s and ``model.scheduler``'s only as litlab's Classifier finishes them, and
    ``trainer``'s as the entry point of ``command`` (``python -m litlab.lr_find ...``) builds it.
    Read by this check and by ``misspelt_keys`` (which never suggests adding one of them)."""
    if where == "trainer":
        return TRAINER_SET_BY_LITLAB.get(_entry_point(command), {})
    if where == "compress.student" and subclass_of(str(OmegaConf.select(cfg, "compress._target_", default="")),
                                                   DISTILL) is not True:
        return {}
    if where in ("model.optimizer", "model.scheduler") and subclass_of(
            str(OmegaConf.select(cfg, "model._target_", default="")), CLASSIFIER) is not True:
        return {}  # a task of the user's own is handed only net and num_classes: these keys are its own
    return SET_BY_LITLAB.get(where, {})


def _switch_without_callback(cfg: DictConfig, override: str, name: str) -> LitlabError | None:
    """The error for ``trainer.enable_checkpointing=true`` (or ``enable_progress_bar``) where the
    composed callbacks have no entry of that kind: build_trainer sets the switch from the callbacks
    present, so the true typed did nothing. ``false`` is honoured (it drops them); an entry with a
    target outside litlab may be of that kind, so it lets the key through."""
    entry, builder, gives = SWITCHED_BY_CALLBACK[name]
    if OmegaConf.select(cfg, f"trainer.{name}", default=None) is not True:
        return None
    entries = OmegaConf.select(cfg, "callbacks", default=None)
    for key, node in (entries.items_ex(resolve=False) if isinstance(entries, DictConfig) else []):
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if key == entry and node is not None or target == builder or (
                isinstance(target, str) and not target.startswith("litlab.")):
            return None
    return LitlabError(
        f"{override} asks the trainer for {gives}, but litlab turns trainer.{name} on itself when "
        f"callbacks.{entry} is there, and this run's callbacks have no callbacks.{entry}, so the value would do "
        f"nothing. Remove it, or choose callbacks that have it (callbacks=default, or "
        f"+callbacks.{entry}={{_target_:{builder}}}); trainer.{name}=false stays honoured. Refused before any "
        f"work (no folder made, no data prepared).")


def _entry_point(command: str) -> str:
    """The entry point of ``command`` (``config_flags.Primary.command``'s ``python -m litlab.KIND
    ...``): ``lr_find``; empty for another command."""
    words = command.split()
    module = words[2] if len(words) > 2 and words[:2] == ["python", "-m"] else ""
    return module.removeprefix("litlab.") if module.startswith("litlab.") else ""


def _given_to(cfg: DictConfig, override: str) -> tuple[str, str, str] | None:
    """For an override that adds a key (``++model.net.widht=64``): the node with a ``_target_``
    nearest above it (``model.net``), the argument the key gives it (``widht``) and the target;
    None for other overrides, Hydra's keys, or a key with no such node above it."""
    if not override.startswith("+"):
        return None
    key = override.lstrip("+").split("=", 1)[0]
    parts = key.split(".")
    if len(parts) < 2 or parts[0] == "hydra" or any(c in key for c in "/@~ "):
        return None  # a group (+experiment=x, +model/net=...), Hydra's own settings
    for depth in range(len(parts) - 1, 0, -1):
        where = ".".join(parts[:depth])
        node = OmegaConf.select(cfg, where, default=None, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and "_target_" in node:
            try:
                target = node.get("_target_")
            except Exception:  # an interpolation that does not resolve: the run reports it
                return None
            return (where, parts[depth], target) if isinstance(target, str) else None
    return None


def _taken_off(where: str) -> tuple[str, ...]:
    """The keys litlab removes from the node at ``where`` before building it: ``model``'s speed
    switches (``models.speed_switches.SPEED_SWITCHES``, read from its source: the module imports torch)."""
    if where != "model":
        return ()
    try:
        tree = ast.parse((PACKAGE_DIR / "models" / "speed_switches.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SPEED_SWITCHES"
                                                for t in stmt.targets):
            try:
                value = ast.literal_eval(stmt.value)
            except ValueError:
                return ()
            return tuple(str(v) for v in value)
    return ()


def _in_files(compose: Callable[[list[str]], DictConfig | None], overrides: Sequence[str], key: str) -> bool:
    """Whether ``key`` is in the config the command composes without its ``+``/``++`` overrides
    of that key or of keys under it: a key of the chosen files (an experiment's, a choice's) is never refused here."""
    kept = [o for o in overrides if not _adds(o, key)]
    cfg = compose(kept)
    if cfg is None:
        return True  # not known: let it through
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False)
    return isinstance(node, DictConfig) and name in node


def _adds(override: str, key: str) -> bool:
    """Whether ``override`` is a ``+``/``++`` of ``key`` or of a key under it (``+compress.student.x=3``
    adds ``compress.student``): left out, the config composed says whether the files have ``key``."""
    typed = override.lstrip("+").split("=", 1)[0]
    return override.startswith("+") and (typed == key or typed.startswith(f"{key}."))


def _choice(cfg: DictConfig, where: str) -> str:
    """``group=choice`` of the group ``where`` is in, as this job composed it (``averaging=ema``);
    empty where the group has no one choice (``logger=[csv,tensorboard]``)."""
    group = where.split(".")[0]
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    return f"{group}={choice}" if isinstance(choice, str) else ""


def _origin(where: str, target: str, choice: str, job: Sequence[str], key: str,
            compose: Callable[[list[str]], DictConfig | None] | None) -> tuple[str, str]:
    """Where the node's target came from, said after it (``, chosen by model=cnn``, or ``, set by
    model.net._target_=...`` where an override gives it), and the job's overrides without its
    ``+``/``++`` of ``key``, quoted, for the ``--cfg job`` hint."""
    hint = " ".join(shlex.quote(o) for o in job if not _adds(o, key))
    for o in job:
        if _gives_target(o, where):
            return f", set by {o}", hint
    if not choice or compose is None:
        return "", hint
    alone = compose([choice])  # the target of the chosen file, as its own defaults compose it
    try:
        chosen = OmegaConf.select(alone, f"{where}._target_", default=None) if alone is not None else None
    except OmegaConfBaseException:
        chosen = None
    return (f", chosen by {choice}" if chosen == target else ""), hint


def _gives_target(override: str, where: str) -> bool:
    """Whether ``override`` sets the ``_target_`` of the node at ``where``: ``model.net._target_=...``,
    or a dict given to the node or above it that holds one there (``model.net={_target_: ...}``);
    a dict without it (``model.net={hidden_size:64}``) leaves the chosen file's target."""
    typed, _, value = override.lstrip("+").partition("=")
    if typed == f"{where}._target_":
        return True
    if not (typed == where or where.startswith(f"{typed}.")) or not value.lstrip().startswith("{"):
        return False
    try:
        node = OverridesParser.create().parse_override(override).value()
    except HydraException:  # Hydra says what is wrong with it when it composes; here it names no origin
        return False
    for part in where[len(typed):].split(".")[1:]:  # from the key typed down to the node
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict) and "_target_" in node


def set_by_litlab(override: str, where: str, name: str, reason: str) -> LitlabError:
    """The paragraph for an argument litlab passes the node itself (``reason``: its ``SET_BY_LITLAB`` text)."""
    return LitlabError(
        f"{override} gives {name} to {where}, but {reason}. Refused before any work (no folder made, no data "
        f"prepared).")


def closest_first(name: str, takes: Sequence[str]) -> tuple[list[str], list[str]]:
    """The arguments of ``takes`` close to ``name`` (a misspelling of one), closest first, and all
    of ``takes`` in that order: the close ones, then the rest as the target lists them."""
    close = difflib.get_close_matches(name, list(takes), n=max(len(takes), 1), cutoff=0.6)
    return close, [*close, *(k for k in takes if k not in close)]


def not_an_argument(override: str, where: str, name: str, target: str, takes: Sequence[str], origin: str,
                    command: str, set_aside: dict[str, str] | None = None) -> LitlabError:
    """The paragraph: the key, the target, the keys it takes (the closest to the key first), less
    those litlab sets itself (``set_aside``, named after them). ``origin``: ``_origin``'s phrase;
    ``command``: the command that shows the node with ``--cfg job``."""
    set_aside = set_aside or {}
    close, ordered = closest_first(name, [k for k in takes if k not in set_aside])
    if ordered:
        listed = ", ".join(f"{where}.{k}" for k in ordered)
        known = ARGUMENT_HINTS.get(target, {}).get(name)  # not a misspelling: no nearest name offered
        hint = f" {known}" if known else f" Did you mean {where}.{close[0]}?" if close else ""
        keys = f"it takes {listed}.{hint}"
    else:
        keys = "it takes no settings."
    if set_aside:  # not listed, as a value given to them is never used; said, as the user may look for them
        keys += f" (litlab sets {' and '.join(f'{where}.{k}' for k in set_aside)} itself.)"
    return LitlabError(
        f"{override} gives {name} to {where} ({target}{origin}), which has no argument {name}: {keys} Refused "
        f"before any work (no folder made, no data prepared): fix the key ({command} "
        f"--cfg job --package {where} shows the node's keys).")
