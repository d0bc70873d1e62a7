"""conf/model/_classifier.yaml's ``model.scheduler.T_max`` under a schedule that takes none.

A model file of the user's own over ``defaults: [_classifier, _self_]`` that sets
``scheduler: {_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, mode: min}``
kept the cosine's ``T_max: ${trainer.max_epochs}`` (a yaml file cannot delete a key), and the run
failed at build with "unexpected keyword argument 'T_max'". The inherited value is left out; a
value set on purpose is refused, naming where the key comes from. Needs no torch: the target's
arguments are read from its source (``source_signatures``). Only ``drop_inherited_period``, run
where the model is built, imports a target whose source is not read there (a scheduler function
of the user's own) to see its signature.
"""

from __future__ import annotations

import inspect
import logging

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.errors import LitlabError
from litlab.source_signatures import target_params

log = logging.getLogger(__name__)

# conf/model/_classifier.yaml's cosine period, which every model file over ``defaults: [_classifier]``
# inherits: a yaml file cannot delete a key, so a file that changes the schedule's _target_ keeps it
INHERITED_PERIOD = ("T_max", "${trainer.max_epochs}")


def inherited_period(model_cfg: DictConfig) -> str | None:
    """``T_max`` where ``model.scheduler``'s target takes no such argument (read from its source,
    torch not imported) and the value is still conf/model/_classifier.yaml's ``${trainer.max_epochs}``:
    the key to drop, as a file of the user's own (``_target_: ...ReduceLROnPlateau``) cannot. None
    where the target takes it, cannot be read, or the value was set (``period_refusal`` says so)."""
    name, inherited = INHERITED_PERIOD
    scheduler = model_cfg.get("scheduler") if isinstance(model_cfg, DictConfig) else None
    if not _takes_no(scheduler, name):
        return None
    raw = OmegaConf.to_container(scheduler, resolve=False).get(name)
    return name if raw == inherited else None


def period_refusal(model_cfg: DictConfig) -> LitlabError | None:
    """The error for a ``model.scheduler.T_max`` set (not the inherited interpolation) for a
    schedule that takes none; None otherwise. Needs no torch: ``config_check`` can run it before
    any folder is made, as ``build.check_task_settings`` does before the data is prepared."""
    name, inherited = INHERITED_PERIOD
    scheduler = model_cfg.get("scheduler") if isinstance(model_cfg, DictConfig) else None
    if not _takes_no(scheduler, name) or inherited_period(model_cfg) is not None:
        return None
    target = scheduler.get("_target_")
    value = OmegaConf.to_container(scheduler, resolve=False).get(name)
    takes = [k for k in target_params(target) or () if k != "optimizer"]
    return LitlabError(
        f"model.scheduler.{name}={value}: {target} takes no {name} (it takes "
        f"{', '.join(f'model.scheduler.{k}' for k in takes) or 'no settings'}). {name} is the cosine schedule's "
        f"period from conf/model/_classifier.yaml, where it is {inherited}; litlab leaves that inherited value out for "
        f"a schedule without {name}, but this one was set (in a model file or on the command line). Remove it there, "
        f"or add ~model.scheduler.{name} to the command. Refused before any data was prepared.")


def _takes_no(scheduler, name: str) -> bool:
    """Whether the partial ``scheduler`` node has ``name`` and its target is known not to take it."""
    if not isinstance(scheduler, DictConfig) or name not in scheduler:
        return False
    target = scheduler.get("_target_")
    takes = target_params(target) if isinstance(target, str) else None
    return takes is not None and name not in takes


def drop_inherited_period(model_cfg: DictConfig) -> None:
    """Takes conf/model/_classifier.yaml's ``model.scheduler.T_max: ${trainer.max_epochs}`` off a
    schedule that takes no T_max (a model file of the user's own over ``defaults: [_classifier]``
    with ``_target_: ...ReduceLROnPlateau``, which cannot delete it); refuses a T_max set for such
    a schedule (``period_refusal``). The run's record then shows the schedule built. A target whose
    source is not read (``my_sched.warmup_then_flat``) is imported here, at build, where the
    schedule is imported anyway, and its signature read."""
    refusal = period_refusal(model_cfg)
    if refusal is not None:
        raise refusal
    name = inherited_period(model_cfg) or _inherited_by_imported(model_cfg)
    if name is not None:
        with open_dict(model_cfg.scheduler):
            del model_cfg.scheduler[name]
        log.info("model.scheduler: %s takes no %s; the %s inherited from conf/model/_classifier.yaml is left out",
                 model_cfg.scheduler._target_, name, name)


def _inherited_by_imported(model_cfg: DictConfig) -> str | None:
    """``T_max`` where the scheduler's target is one ``target_params`` does not read, its imported
    signature has no T_max and no ``**kwargs``, and the value is still the inherited one. None
    where the target does not import or has no signature: building it then says why."""
    name, inherited = INHERITED_PERIOD
    scheduler = model_cfg.get("scheduler") if isinstance(model_cfg, DictConfig) else None
    if not isinstance(scheduler, DictConfig) or name not in scheduler:
        return None
    target = scheduler.get("_target_")
    if not isinstance(target, str) or target_params(target) is not None:
        return None
    if OmegaConf.to_container(scheduler, resolve=False).get(name) != inherited:
        return None
    try:
        params = inspect.signature(hydra.utils.get_object(target)).parameters.values()
    except Exception:  # not importable, or no signature (a builtin)
        return None
    if any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return name
