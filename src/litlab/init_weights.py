"""``model.init_from``: a new run starts from the net weights of an earlier run's checkpoint
(fine-tuning, transfer). Only the weights: the optimizer, schedule, epoch count and data of the new
run are its own (a resume, ``ckpt_path``, restores all of those instead).

The checkpoint is read and checked before the data is prepared (``open_init_from``); its tensors
go into the net once it is built for this data (``load_init_weights``), on every DDP rank alike,
matched by name and shape. Only the output layer may differ, and only by the class count (10 digit
classes pretrained, 4 classes here): it is left as freshly initialized. A checkpoint of a run with
weight averaging gives its ``state_dict``, the averaged weights its best.ckpt was chosen, tested and
evaluated with (``callbacks/weight_averaging.py``), not the live ones of ``current_model_state``;
one whose averaging never updated (``averaging_state``'s ``n_averaged`` 0) gives its trained weights.

The record of where the weights came from (``init_record``) goes into ``metrics.json`` and into the
run's checkpoints (their ``litlab`` record): a resume carries it over from there, with the file's
absolute path (and the file it resolved to, links followed), so that the resumed run's record still
names it, and a resume given ``model.init_from`` is told from another start by the file it resolves
to (the recorded one: the same start, whatever it holds now) or else by that file's bytes (its
recorded sha256: a copy or a move), not by the path as it was typed in another folder, nor by where
a link points now."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from litlab.checkpoint_files import load_checkpoint
from litlab.distributed.ranks import is_rank_zero
from litlab.errors import LitlabError
from litlab.init_from_path import KEY, folder_checkpoints, init_checkpoint_path, init_from_value
from litlab.tuning.temperature_setting import checkpoint_fingerprint

log = logging.getLogger(__name__)

# the task's attribute the net is under: its tensors are "net.<name>" in a checkpoint's state_dict
_NET = "net."
# how many tensor names a refusal lists
_SHOWN = 4


@dataclass
class InitFrom:
    """The checkpoint of ``model.init_from``, read once before the data is prepared; for a resume of
    a run that began from one, only that start's record (``carried``): the file is not read again."""

    path: Path
    ckpt: dict | None
    carried: dict | None = None


def open_init_from(cfg: DictConfig, resume) -> InitFrom | None:
    """Reads ``model.init_from`` (None when unset and not resuming). With a resume (``resume``:
    ``open_resume``'s, or None): the record of the file the run began from is carried over from the
    checkpoint, which already holds the weights trained from it, and the file is not read again (it
    may be gone); ``model.init_from`` may then be null or name that same file (``_names_start``),
    and anything else asks for two starting points and is refused."""
    value = init_from_value(cfg)
    if resume is not None:
        return _resumed(value, resume)
    if value is None:
        return None
    path = init_checkpoint_path(value)
    return InitFrom(path, load_checkpoint(path, KEY, compressed_ok=False))


def _resumed(value: str | None, resume) -> InitFrom | None:
    """The carried record of a resume (None where its run began from fresh weights, or its
    checkpoint comes from a litlab that did not record it), or the refusal of another file."""
    record = resume.ckpt.get("litlab") or {}
    carried = record.get("init_from")  # the first start's record, with the file's absolute path
    typed = ((record.get("config") or {}).get("model") or {}).get("init_from")  # as that start was given it
    stored = carried["path"] if carried else typed
    if value is not None and not (stored is not None and _names_start(value, stored, typed, carried or {})):
        began = f"a run that began from {KEY}={stored}" if stored else "a run that began without it"
        raise LitlabError(
            f"{KEY}={value} and ckpt_path={resume.path} were both given: a resume restores the weights, optimizer, "
            f"schedule and epoch count from ckpt_path (here {began}), while {KEY} starts a new run from another "
            f"run's weights. Give one: ckpt_path alone (with {KEY}=null, or the run's own {KEY}) to resume, or "
            f"{KEY} alone to start a new run in a new folder."
            + (f" A {KEY} that names another file than the run's source is compared by its bytes (sha256): a copy "
               f"of the source is the same, a link repointed since is another." if (carried or {}).get("ckpt_sha256")
               else ""))
    if value is not None and is_rank_zero():  # once, not once per DDP rank
        log.info("%s=%s: not read again; the resumed checkpoint %s already holds the weights trained from it",
                 KEY, value, resume.path)
    return InitFrom(Path(carried["path"]), None, carried) if carried else None


def _names_start(value: str, stored: str, typed: str | None, carried: dict) -> bool:
    """Whether ``model.init_from=value``, given to a resume here, names the file the run began from:
    ``stored``, its absolute path (a checkpoint of an earlier litlab: the value as it was typed then).
    ``value`` (a folder meaning its ``checkpoints/best.ckpt`` or ``best.ckpt``) that resolves to the
    file the start resolved to (``carried["resolved"]``; for an older record, ``stored`` with links
    resolved now) is that start, whatever the file holds now: the source run may have rewritten its
    best.ckpt since, and litlab's own resume command carries the value. At another path, a file
    with the recorded sha256 is a copy or a move of it, and one with other bytes (a link repointed
    since) another source. The run's own command in another folder also resumes (the same text as
    ``typed``), unless there it names a file or folder, which is another one."""
    given = Path(value).absolute()
    places = (given, *folder_checkpoints(given))
    first = Path(carried.get("resolved") or Path(stored).absolute().resolve())
    if first in {p.resolve() for p in places}:  # the very file: no hashing (on every DDP rank)
        return True
    named = next((p for p in places if p.is_file()), None)
    if named is not None and carried.get("ckpt_sha256"):
        return checkpoint_fingerprint(named)["ckpt_sha256"] == carried["ckpt_sha256"]  # same bytes, same source
    return value == typed and not given.exists()


def load_init_weights(init: InitFrom | None, net: nn.Module, num_classes: int) -> dict:
    """Copies the checkpoint's net tensors into ``net`` (built for this run's data and settings) and
    logs what it loaded. Returns the ``metrics.json`` record (``init_record``), empty without
    ``model.init_from``."""
    if init is None:
        return {}
    if init.ckpt is None:  # a resume: its checkpoint holds the weights trained from the file, and its record
        return dict(init.carried)
    theirs = {k.removeprefix(_NET): v for k, v in init.ckpt["state_dict"].items() if k.startswith(_NET)}
    own = net.state_dict()
    fresh = _kept_fresh(own, theirs, init, num_classes)
    with torch.no_grad():
        missing, unexpected = net.load_state_dict({k: v for k, v in theirs.items() if k not in fresh}, strict=False)
    assert sorted(missing) == sorted(fresh) and not unexpected, (missing, unexpected)  # _kept_fresh checked them
    averaged = _averaged(init.ckpt)
    if is_rank_zero():  # every rank loads; rank 0 says so, once (not once per DDP rank)
        _log_loaded(init.path, len(own) - len(fresh), len(own), fresh, averaged)
    # the path as given (absolute) and the file it is now (links followed): a link may be repointed later
    return {"path": str(init.path.absolute()), "resolved": str(init.path.resolve()),
            "loaded": len(own) - len(fresh), "tensors": len(own), "kept_fresh": fresh,
            "weights": "averaged" if averaged else "trained"}


def _log_loaded(path: Path, loaded: int, tensors: int, fresh: list[str], averaged: bool) -> None:
    log.info("%s: loaded %d of %d tensors from %s (kept fresh: %s)", KEY, loaded, tensors, path,
             ", ".join(fresh) or "none")
    if averaged:
        log.info("%s: %s was trained with weight averaging; its averaged weights were loaded, those its best.ckpt, "
                 "test and eval used", KEY, path)


def init_record(loaded: dict) -> dict:
    """``{"init_from": {path, resolved, ckpt_bytes, ckpt_sha256, loaded, tensors, kept_fresh, weights}}`` for
    ``metrics.json`` (the file's size and sha256 as eval records them beside a temperature), or
    ``{}``. Hashed here, on the rank that writes the record only; a record carried by a resume is
    kept as it is (the file may be gone). Training also puts it in its checkpoints' ``litlab`` record,
    from which a resume carries it (``open_init_from``)."""
    if not loaded:
        return {}
    if "ckpt_sha256" in loaded:
        return {"init_from": loaded}
    return {"init_from": {**loaded, **checkpoint_fingerprint(loaded["path"])}}


def _averaged(ckpt: dict) -> bool:
    """Whether the checkpoint's ``state_dict`` is a weight average: one of a run with averaging
    (``current_model_state``, the live weights, beside it) whose average had an update. Before the
    first (SWA's start epoch not reached) its state_dict is the trained weights."""
    if "current_model_state" not in ckpt:
        return False
    count = (ckpt.get("averaging_state") or {}).get("n_averaged")
    return count is not None and int(count) > 0


def _kept_fresh(own: dict, theirs: dict, init: InitFrom, num_classes: int) -> list[str]:
    """The names of the net's output-layer tensors that differ from the checkpoint's by the class
    count alone, left freshly initialized; a LitlabError for any other difference of names or shapes."""
    record = init.ckpt.get("litlab") or {}
    classes_there = len((record.get("data") or {}).get("class_names") or []) or None
    fresh, wrong = [], []
    for name in (k for k in own if k in theirs):  # the net's order: weight before bias
        a, b = tuple(theirs[name].shape), tuple(own[name].shape)
        if a == b:
            continue
        head = (len(a) == len(b) and a[1:] == b[1:] and b[0] == num_classes and a[0] != num_classes
                and classes_there in (None, a[0]))
        (fresh if head else wrong).append(name)
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    if not (missing or unexpected or wrong) and len(fresh) < len(own):
        return fresh
    raise _refusal(init, own, theirs, missing, unexpected, wrong, record)


def _refusal(init: InitFrom, own: dict, theirs: dict, missing: list[str], unexpected: list[str], wrong: list[str],
             record: dict) -> LitlabError:
    """The one paragraph for a checkpoint whose net does not fit this run's."""
    stored = ((record.get("config") or {}).get("model") or {}).get("net") or {}
    target = stored.get("_target_") if isinstance(stored, dict) else None
    shape = (record.get("data") or {}).get("input_shape")
    if not set(own) & set(theirs):
        what = (f"it shares no tensor with this run's net (its {len(theirs)} net tensor(s), such as "
                f"{', '.join(sorted(theirs)[:_SHOWN]) or 'none'}; this net's, such as "
                f"{', '.join(sorted(own)[:_SHOWN])})")
    else:
        parts = [f"{k}: {tuple(theirs[k].shape)} in the file, {tuple(own[k].shape)} in the net" for k in wrong[:_SHOWN]]
        if missing:
            parts.append(f"not in the file: {', '.join(missing[:_SHOWN])}")
        if unexpected:
            parts.append(f"not in the net: {', '.join(unexpected[:_SHOWN])}")
        if len(wrong) + len(missing) + len(unexpected) > _SHOWN:
            parts.append(f"in all {len(wrong)} of another shape, {len(missing)} missing, {len(unexpected)} extra")
        what = f"its tensors differ beyond the output layer's class count ({'; '.join(parts)})"
    trained = " and ".join(x for x in (f"a {target} net" if target else "", f"samples of shape {tuple(shape)}"
                                       if shape else "") if x)
    return LitlabError(
        f"{KEY}={init.path} does not fit this run's net: {what}. A run starts from another's weights with the "
        f"same model=... and model.net.* settings{f' (that run trained {trained})' if trained else ''}; only the "
        f"output layer may differ, by the number of classes. Use those settings here, or leave {KEY}=null to "
        f"start from fresh weights.{_channels_hint(own, theirs, wrong)}")


def _channels_hint(own: dict, theirs: dict, wrong: list[str]) -> str:
    """A sentence naming ``data.channels`` where the first layer differs in its input channels
    alone (1 vs 3): the images are read in another number of channels than the file's run read
    them (``data.channels=auto``, the image folders' default, reads colour folders in 3)."""
    first = next(iter(own), None)
    if first not in wrong or theirs[first].dim() < 2:
        return ""
    a, b = tuple(theirs[first].shape), tuple(own[first].shape)
    if a[0] != b[0] or a[2:] != b[2:] or {a[1], b[1]} != {1, 3}:
        return ""
    return (f" Its first layer ({first}) takes {a[1]} input channel(s), and this run's data has {b[1]}: the images "
            f"are read in another number of channels than that run read them (data.channels=auto, the image "
            f"folders' default, reads colour images in 3 and grey ones in 1). Set data.channels={a[1]}, the file's, "
            f"to read them as that run did.")
