"""``model.freeze``: training only part of the net (linear probing, a head trained on a frozen
backbone; fastai's and timm's ``freeze``).

The value is a list of parameter-name prefixes of the net, as ``net.named_parameters()`` names
them (``features``, ``features.0``, ``head.0.weight``); a prefix matches the name equal to it and
every name under it (``features.0`` matches ``features.0.1.weight``, not ``features.01.weight``).
The matched parameters get ``requires_grad=False`` when the task is built, before the trainer
wraps the net (DDP, FSDP) and before its first compiled call (``model.compile`` compiles the net in
place: the names stay the same). Modules whose every parameter is frozen run in eval mode while
training (``keep_eval``): their BatchNorm statistics stay as loaded and their dropout is off, as a
frozen feature extractor should.

Frozen parameters stay in the optimizer: torch's optimizers skip a parameter whose ``.grad`` is
None (no step, no weight decay), and the optimizer's state keeps the shape of an unfrozen run's, so
a resume may change ``model.freeze`` (``ckpt_path=last model.freeze=[]`` unfreezes after a frozen
phase)."""

from __future__ import annotations

import difflib
import logging
from typing import TYPE_CHECKING

from litlab.errors import LitlabError

if TYPE_CHECKING:  # no torch at import: the setting's check runs before the data is prepared
    from torch import nn

log = logging.getLogger(__name__)

KEY = "model.freeze"


def freezes_nothing(value: object) -> bool:
    """The one rule for a ``model.freeze`` that freezes nothing: null or an empty list (``[]``), the
    values a run that trains every parameter has. Any other value names prefixes or is refused
    (``freeze_prefixes``): a blank string (``model.freeze=''``, an unset shell variable) names no
    prefix, and is refused rather than read as "train everything": a run meant to freeze part of the
    net would otherwise train all of it without a word. Read by training (``freeze_prefixes``), by
    ``build.build_task`` and by eval and predict's refusal of the key (``init_from_path.check_not_given``,
    each swept value too)."""
    return value is None or (_is_list(value) and len(value) == 0)


def _is_list(value: object) -> bool:
    # a ListConfig by its name: omegaconf is imported only inside this module's functions
    return isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig"


def freeze_prefixes(value: object) -> list[str]:
    """``model.freeze`` as a list of prefixes: ``[]`` where it freezes nothing (``freezes_nothing``), a
    bare string is one prefix; an integer is its digits (Hydra reads ``model.freeze=[1]`` as an int:
    ``1.weight`` of an ``nn.Sequential``). A float is refused with the hint to quote it (``1.10`` reads
    as 1.1); anything else (a dict, a bool, a blank string, a list holding other than non-empty names)
    is refused."""
    if freezes_nothing(value):
        return []
    given = value  # as typed, for the message: '' rather than ['']
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    items = list(value) if _is_list(value) else None
    for item in items or []:
        if isinstance(item, float):
            raise LitlabError(
                f"{KEY}: {item!r} was read as a number, and a number's digits are lost on the way (Hydra reads "
                f"1.10 as 1.1). Quote a prefix made of digits and dots: {KEY}=['1.10'] (or \"{KEY}=['1.10']\" in "
                f"the shell).")
    if items is not None:  # model.freeze=[1]: the module named 1 of an nn.Sequential
        items = [str(p) if isinstance(p, int) and not isinstance(p, bool) else p for p in items]
    if items is None or not all(isinstance(p, str) and p.strip() and p == p.strip() for p in items):
        raise LitlabError(
            f"{KEY} must be a list of parameter-name prefixes of the net, as net.named_parameters() names them "
            f"(e.g. {KEY}=[features] or {KEY}=[features.0,head.0]), or one such name; got {given!r}. "
            f"{KEY}=[] trains every parameter.")
    return list(dict.fromkeys(items))  # in order, once each


def matches(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` is ``prefix`` or lies under it (``prefix.`` + the rest)."""
    return name == prefix or name.startswith(prefix + ".")


def check_freeze_config(cfg) -> None:
    """The run's ``model.freeze`` value, and its fit with the strategy, before the data is prepared
    (the prefixes need the net, built for the data's shape: checked when the task is built).
    FSDP flattens parameters into shards: frozen and trained ones may share one only with
    ``use_orig_params`` (Lightning's FSDPStrategy sets it true unless told otherwise)."""
    from omegaconf import OmegaConf

    prefixes = freeze_prefixes(OmegaConf.select(cfg, KEY, default=None))
    strategy = OmegaConf.select(cfg, "trainer.strategy", default=None)
    target = str(strategy.get("_target_", "")) if OmegaConf.is_dict(strategy) else str(strategy or "")
    if prefixes and "fsdp" in target.lower() and OmegaConf.is_dict(strategy) and \
            strategy.get("use_orig_params", True) is False:
        raise LitlabError(
            f"{KEY}={prefixes} with trainer.strategy.use_orig_params=false: FSDP then flattens frozen and trained "
            f"parameters into shared shards, which it cannot do with mixed requires_grad. Remove "
            f"trainer.strategy.use_orig_params (Lightning's default is true), or set {KEY}=[].")


def keep_resumed_freeze(cfg, resume) -> None:
    """A resume whose command does not set ``model.freeze`` trains with the checkpoint run's (an
    interrupted frozen phase goes on frozen, said in the log); one that sets it (``model.freeze=[]``
    unfreezes) trains with its own: frozen parameters stayed in the optimizer, so its saved state
    loads either way. ``resume``: ``open_resume``'s, or None for a new run."""
    from omegaconf import DictConfig

    from litlab.distributed.ranks import is_rank_zero
    from litlab.resume_overrides import job_overrides
    from litlab.run_commands import sets_key

    node = cfg.get("model")
    if resume is None or not isinstance(node, DictConfig) or "freeze" not in node:
        return  # a new run, or a task of the user's own
    if any(sets_key(o, KEY) for o in job_overrides(cfg) or []):
        return
    stored = (((resume.ckpt.get("litlab") or {}).get("config") or {}).get("model") or {}).get("freeze")
    if freeze_prefixes(stored) == freeze_prefixes(node.freeze):
        return
    if is_rank_zero():  # once, not once per DDP rank
        log.info("resuming with %s=%s, as ckpt_path=%s was trained (%s=[] on the command line trains every "
                 "parameter)", KEY, freeze_prefixes(stored), resume.path, KEY)
    node.freeze = freeze_prefixes(stored)


class FrozenLayers:
    """The parameters of ``net`` that ``model.freeze`` (``value``) freezes, frozen on construction.

    Attributes:
        prefixes: the prefixes, in order.
        frozen: parameters (elements) frozen; trainable: those left to train.
        modules: the outermost modules whose every parameter is frozen (set to eval while training).
    """

    def __init__(self, net: nn.Module, value: object):
        self.prefixes = freeze_prefixes(value)
        self.modules: list[nn.Module] = []
        named = list(net.named_parameters())
        self.frozen, self.trainable = 0, sum(p.numel() for _, p in named)
        if not self.prefixes:
            return
        for prefix in self.prefixes:
            if not any(matches(name, prefix) for name, _ in named):
                raise _no_match(net, prefix, self.prefixes)
        chosen = {name for name, _ in named if any(matches(name, p) for p in self.prefixes)}
        if len(chosen) == len(named):
            raise LitlabError(
                f"{KEY}={self.prefixes} freezes every parameter of the net ({self.trainable:,} in all): nothing would "
                f"train. Freeze only part of it (the net's top-level modules: {_top_level(net)}), e.g. the feature "
                f"layers to train the head on them, or set {KEY}=[] to train every parameter.")
        for name, p in named:
            if name in chosen:
                p.requires_grad_(False)
        self.frozen = sum(p.numel() for name, p in named if name in chosen)
        self.trainable -= self.frozen
        self.modules = _frozen_modules(net)

    def keep_eval(self) -> None:
        """Frozen modules in eval mode: BatchNorm statistics stay, dropout is off. Called as each
        training epoch starts (also a resume within an epoch: at training start); Lightning's
        validation loop puts every module back in the mode it had, so they stay in eval after it."""
        for module in self.modules:
            module.eval()

    def describe(self) -> str:
        """The log line: ``model.freeze: N of M parameters frozen (features); K trainable``."""
        return (f"{KEY}: {self.frozen:,} of {self.frozen + self.trainable:,} parameters frozen "
                f"({', '.join(self.prefixes)}); {self.trainable:,} trainable")

    def record(self) -> dict:
        """``{"freeze": {prefixes, frozen, trainable}}`` for metrics.json, or ``{}`` without."""
        if not self.prefixes:
            return {}
        return {"freeze": {"prefixes": list(self.prefixes), "frozen": self.frozen, "trainable": self.trainable}}


def freeze_record(model) -> dict:
    """The metrics.json record of a task's ``model.freeze`` (``{}`` without, or for a task of the
    user's own)."""
    frozen = getattr(model, "frozen", None)
    return frozen.record() if isinstance(frozen, FrozenLayers) else {}


def train_as_frozen(net: nn.Module) -> nn.Module:
    """``net`` in the modes a training step runs it in: train mode, except its modules whose every
    parameter is frozen, in eval as ``FrozenLayers.keep_eval`` puts them (``build.check_batch_norm_batch``'s
    probe of a copy: a frozen BatchNorm normalizes with its running statistics, even on one sample).
    Without frozen parameters, plain train mode."""
    net.train()
    for module in _frozen_modules(net):
        module.eval()
    return net


def _frozen_modules(net: nn.Module) -> list[nn.Module]:
    """The outermost modules with parameters, all of them frozen (their children come with them)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(net)
    return found


def _top_level(net: nn.Module) -> str:
    names = [name for name, m in net.named_children() if any(True for _ in m.parameters())]
    return ", ".join(names) or "none"


def _no_match(net: nn.Module, prefix: str, prefixes: list[str]) -> LitlabError:
    """The refusal of a prefix that names no parameter, with the closest name the net has."""
    candidates = [n for n, m in net.named_modules() if n and any(True for _ in m.parameters())]
    candidates += [n for n, _ in net.named_parameters()]
    whole = prefix.rstrip(".")  # features. : the name is features, which matches features.* already
    if whole != prefix and whole in candidates:
        hint = f" A prefix does not end with \".\": write {whole}, which matches {whole} and every name under it."
    else:
        close = difflib.get_close_matches(whole or prefix, candidates, n=1, cutoff=0.5)
        hint = f" The closest name is {close[0]}." if close else ""
    return LitlabError(
        f"{KEY}={prefixes}: {prefix} matches no parameter of the net ({type(net).__name__}, whose top-level modules "
        f"are {_top_level(net)}).{hint} A prefix is a module or parameter name as net.named_parameters() gives them "
        f"(features, features.0, head.0.weight) and matches that name and every name under it. Correct it, or "
        f"remove it from {KEY}.")
