"""A training loader that a checkpoint taken within an epoch resumes exactly.

Lightning saves the state of every training loader that has ``state_dict``/``load_state_dict`` in
each checkpoint (the fit loop's ``combined_loader``) and gives it back on a resume before the first
batch is fetched. Without it, a resume from the middle of an epoch served the epoch from its first
batch while Lightning counted the batches already trained: some were trained twice, the rest never.

The state is the loader's position, (epoch, batches served of it), plus the random state of the
process at the checkpoint (torch's CPU and CUDA generators, NumPy's, Python's). The position is
enough for the order: an epoch's order is a function of the seed and the epoch only
(``data/shuffled_batches.py``). The random state makes the dropout and augmentation draws after the
resume point those of the uninterrupted run: ``EpochSeed`` reseeds at an epoch's start, which a
resume in the middle of one does not pass.
"""

from __future__ import annotations

import itertools
import random
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from litlab.errors import LitlabError


class ResumableLoader(DataLoader):
    """``DataLoader`` whose position within an epoch is part of every checkpoint.

    After ``load_state_dict``, the first epoch served, when it is the checkpoint's, leaves out the
    batches served before the checkpoint at the index sampler: their samples are never read or
    decoded. Later epochs are whole. Any index sampler works: ``ShuffledBatches`` (data in memory),
    ``BatchSampler`` over ``EpochShuffle`` (streamed) or over the ``DistributedSampler`` Lightning
    puts in its place under DDP (which builds this class again with its own sampler).
    """

    _epoch: int | None = None
    """the epoch the batches being served belong to (their sampler's), None before the first batch"""
    _served = 0
    """batches of that epoch served so far, those left out by a resume included"""
    _skip = 0
    """batches the next pass over the index sampler leaves out"""
    _resume: dict | None = None
    """the position of a checkpoint, until the first epoch served takes it"""

    @property
    def _index_sampler(self):
        return _SkipFirst(self, super()._index_sampler)

    def __iter__(self) -> Iterator:
        return self._serve()

    def _serve(self) -> Iterator:
        # A generator: the iterator (and the workers' first indices) is made at the first fetch.
        # Lightning calls iter() when it sets the loader up, before it gives a resumed run's sampler
        # its epoch (set_epoch); workers draw indices as soon as the iterator exists, so a resume
        # with workers served the first epoch in epoch 0's order.
        epoch = sampler_epoch(self)
        resume, self._resume = self._resume, None
        skip = 0
        if resume is not None and resume["epoch"] == epoch and resume["served"] > 0:
            self._check_same_batches(resume)
            skip = resume["served"]
        else:
            resume = None
        self._epoch, self._served, self._skip = epoch, skip, skip
        for batch in super().__iter__():
            if resume is not None:  # just before the resumed run's first training step
                set_random_state(_this_process(resume.get("random")))
                resume = None
            self._served += 1
            yield batch

    def _check_same_batches(self, resume: dict) -> None:
        """The batches served are counted in batches of this loader's size, per process."""
        here = {"batches": len(self), "world_size": _replicas(self)}
        if all(resume.get(k, v) == v for k, v in here.items()):
            return
        raise LitlabError(
            f"The checkpoint was taken after {resume['served']} of the {resume.get('batches')} training batches "
            f"of epoch {resume['epoch']} per process, with {resume.get('world_size')} process(es); here an "
            f"epoch has {here['batches']} batches per process with {here['world_size']} process(es), so the "
            f"batches left of that epoch are not the same. Resume with the run's data.batch_size, trainer.devices "
            f"and trainer.num_nodes (its .hydra/overrides.yaml lists those it set).")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "served": self._served, "batches": len(self), "world_size": _replicas(self),
                "random": random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict) if state_dict.get("epoch") is not None else None

    @property
    def resumable(self) -> bool:
        """Whether its position within an epoch can be restored: its order is a function of the
        epoch (a sampler with ``epoch``; Lightning's sequential sampler of ``overfit_batches`` has none)."""
        return _epoch_sampler(self) is not None


def start_at_checkpoint_position(trainer) -> bool:
    """Whether this fit resumes within a training epoch at the loader position of its checkpoint;
    makes sure that the training loaders start there. Call it at ``on_train_start``, before the
    first training batch.

    Lightning gives the loaders their checkpoint state when it builds them after the restore
    (``FitLoop.setup_data``). One built before it (Lightning bug #20550: reading
    ``trainer.estimated_stepping_batches`` or ``trainer.train_dataloader`` in ``setup`` or
    ``configure_optimizers``) is used as it is and never got its position: the epoch started again
    at its first batch while Lightning counted those already trained, so some were trained twice
    and the rest never. The state Lightning still holds is given to them here (they read it at
    their first batch); a loader that cannot start at the position is an error before any batch."""
    loop = trainer.fit_loop
    combined = getattr(loop, "_combined_loader", None)
    if (not getattr(loop, "restarted_mid_epoch", False) or combined is None
            or not all(getattr(dl, "resumable", False) for dl in combined.flattened)):
        return False
    if getattr(loop, "_combined_loader_states_to_load", None):  # never given: the loaders were built before
        loop._load_combined_loader_states()
    done, epoch = loop.epoch_loop.batch_progress.current.completed, trainer.current_epoch
    for loader in combined.flattened:
        resume = loader._resume
        if resume is None or (resume.get("epoch"), resume.get("served")) != (epoch, done):
            at = ("its first batch" if resume is None else
                  f"batch {resume.get('served')} of epoch {resume.get('epoch')} (counted from 0)")
            raise LitlabError(
                f"The run resumes within epoch {epoch} after {done} of its training batches, but the training "
                f"loader would start at {at}, so some batches of the epoch would be trained twice and others "
                f"never. Something built the loader before the checkpoint was restored and it was not given its "
                f"position (Lightning bug #20550: trainer.estimated_stepping_batches or trainer.train_dataloader "
                f"read in setup or configure_optimizers), or took batches of it before training started (in "
                f"on_fit_start or on_train_start). Nothing was trained. Take training batches in a callback only "
                f"from the first training batch on, or resume from a checkpoint taken at an epoch's end.")
    return True


class _SkipFirst:
    """An index sampler (of samples or of batches) whose next pass leaves out the loader's
    ``_skip`` first items. Torch keeps the object for the iterator's life (persistent workers
    start every epoch's pass from it), so the count is read from the loader at each pass, when
    the pass yields its first item: torch makes a pass that it never reads when it creates an
    iterator with workers, and then the one it reads.

    The loader is held by a weak reference: a loader with persistent workers holds its iterator,
    which holds this object, and a strong one back made a cycle. Dropping the loader then left its
    workers running until a garbage collection, which stalled 5 s per worker (the collection stops
    the index queues' feeder threads before the iterator's shutdown puts its stop signal in them,
    so torch waits out its join timeout and then kills each worker)."""

    def __init__(self, loader: ResumableLoader, sampler):
        self.loader, self.sampler = weakref.ref(loader), sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator:
        loader = self.loader()  # None once the loader is gone (torch's iterator used on its own): no skip
        skip = 0 if loader is None else loader._skip
        if skip:
            loader._skip = 0
        del loader  # this generator lives for the whole pass: its frame must not hold the loader either
        order = iter(self.sampler)
        yield from itertools.islice(order, skip, None) if skip else order


def _epoch_sampler(loader: DataLoader):
    """The sampler that Lightning gives the epoch (``set_epoch``), where it looks for one."""
    for sampler in (getattr(loader, "sampler", None), getattr(loader.batch_sampler, "sampler", None)):
        if sampler is not None and hasattr(sampler, "set_epoch") and hasattr(sampler, "epoch"):
            return sampler
    return None


def sampler_epoch(loader: DataLoader) -> int | None:
    """The epoch whose order ``loader`` serves now; None where the order does not depend on one."""
    sampler = _epoch_sampler(loader)
    return None if sampler is None else int(sampler.epoch)


def _replicas(loader: DataLoader) -> int:
    """The processes that share each epoch (a ``DistributedSampler``'s ``num_replicas``; else 1)."""
    sampler = _epoch_sampler(loader)
    return int(getattr(sampler, "num_replicas", 1))


def random_state() -> dict[str, Any]:
    """The generators that dropout and augmentation draw from, as plain values and tensors (a
    checkpoint is read back with ``weights_only``, which refuses NumPy's state as NumPy gives it;
    hence not Lightning's own ``_collect_rng_states``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
             "python": _plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def random_states() -> list[dict[str, Any]]:
    """``random_state()`` of every process, in rank order: under DDP each rank draws from its own
    stream (``EpochSeed`` seeds each with its rank), and Lightning saves rank 0's loader state only.
    One collective there, so every rank must take each checkpoint of a fit: ``ModelCheckpoint``
    does (``trainer.save_checkpoint`` on all ranks); a ``save_checkpoint`` on one rank alone during
    a fit would wait here for the others."""
    mine = random_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def _this_process(states: list | None) -> dict[str, Any]:
    """This rank's entry of ``random_states()``; nothing where the checkpoint has another count."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    return states[rank] if isinstance(states, list) and len(states) == world else {}


def set_random_state(state: dict[str, Any]) -> None:
    """Puts back what ``random_state`` took (the CUDA generators where this process has as many)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in state:
        random.setstate(_tuples(state["python"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value
