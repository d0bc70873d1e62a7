"""The training loader (``data/resumable_loader.py``) with persistent worker processes, outside
Lightning (which shuts a loader's workers down itself): a dropped loader ends its workers at once,
and a resume still leaves out the batches served before the checkpoint, in its first epoch only.
"""

from __future__ import annotations

import gc
import time

import torch
from torch.utils.data import Dataset

from litlab.data.base import ClassificationData
from litlab.data.resumable_loader import ResumableLoader


class Numbers(Dataset):
    """Sample i is (i as a float, i as the label): a batch's labels name its samples."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(i)]), i


def _loader() -> ResumableLoader:
    """The training loader litlab builds for files: shuffled by epoch, one persistent worker."""
    loader = ClassificationData(batch_size=4, num_workers=1)._loader(Numbers(), shuffle=True)
    assert isinstance(loader, ResumableLoader) and loader.persistent_workers and loader.num_workers == 1
    return loader


def _epoch(loader: ResumableLoader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [labels.tolist() for _, labels in loader]


def test_a_dropped_loader_ends_its_workers_without_a_garbage_collection():
    """The loader's index sampler held the loader, which holds its persistent iterator, which holds
    the sampler: a cycle, so the workers outlived ``del`` until a garbage collection, which then
    stalled 5 s per worker. Collections are off here: only reference counting may end them."""
    loader = _loader()
    assert sorted(i for batch in _epoch(loader, 0) for i in batch) == list(range(12))
    workers = list(loader._iterator._workers)
    assert [w.is_alive() for w in workers] == [True]  # persistent: kept for the next epoch
    gc.disable()
    try:
        del loader
        deadline = time.monotonic() + 10  # at once when it works; without the fix they never end here
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [w.is_alive() for w in workers] == [False], "the loader's worker outlived the loader"
        assert [w.exitcode for w in workers] == [0]  # stopped by the loader's shutdown, not killed
    finally:
        gc.enable()


def test_a_resume_with_persistent_workers_leaves_out_the_served_batches_of_its_first_epoch_only():
    """The count to leave out is read through the loader's weak reference at each pass of its
    persistent iterator: epoch 1 goes on after the checkpoint's 2 batches, epoch 2 is whole."""
    whole = _loader()
    expected = [_epoch(whole, 1), _epoch(whole, 2)]
    resumed = _loader()
    resumed.load_state_dict({"epoch": 1, "served": 2, "batches": 3, "world_size": 1})
    assert _epoch(resumed, 1) == expected[0][2:]
    assert resumed.state_dict()["served"] == 3
    assert _epoch(resumed, 2) == expected[1]
    assert expected[0] != expected[1]
