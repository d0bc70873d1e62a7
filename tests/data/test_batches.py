"""Batches from memory: normalization, transfer and fetching keep the caller's data intact."""

from __future__ import annotations

import json

import pytest
import torch

from litlab.data.datasets import TensorSplit
from litlab.data.preprocess import Normalize, normalize
from litlab.data.synthetic import SyntheticDataModule


def test_normalize_matches_the_module_and_leaves_float_input_alone():
    x8 = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]
    expected = Normalize("image", mean, std)(x8)
    torch.testing.assert_close(normalize(x8, "image", mean, std), expected)
    xf = x8.float() / 255.0
    before = xf.clone()
    torch.testing.assert_close(normalize(xf, "image", mean, std), expected)
    assert torch.equal(xf, before)  # float input is the caller's: never changed in place
    seq = torch.randn(2, 7, 3)
    torch.testing.assert_close(normalize(seq, "sequence", mean, std),
                               (seq - torch.tensor(mean)) / torch.tensor(std))


def test_tensor_split_fetches_a_batch_in_index_order():
    x, y = torch.arange(20).view(10, 2), torch.arange(10) * 3
    bx, by = TensorSplit(x, y).__getitems__([7, 2, 2, 0])
    assert bx.tolist() == [[14, 15], [4, 5], [4, 5], [0, 1]] and by.tolist() == [21, 6, 6, 0]


def test_transfer_keeps_pairs_and_other_batches():
    dm = SyntheticDataModule.__new__(SyntheticDataModule)
    pair = (torch.ones(2, 3), torch.zeros(2, dtype=torch.long))
    moved = dm.transfer_batch_to_device(pair, torch.device("cpu"), 0)
    assert isinstance(moved, tuple) and moved[0] is pair[0] and moved[1] is pair[1]
    other = {"x": torch.ones(1)}
    assert torch.equal(dm.transfer_batch_to_device(other, torch.device("cpu"), 0)["x"], other["x"])


def test_shuffled_batches_are_the_standard_loaders_batches_in_a_seed_and_epoch_order():
    from torch.utils.data import DataLoader, DistributedSampler

    from litlab.data.datasets import collate_batch
    from litlab.data.shuffled_batches import EpochShuffle, ShuffledBatches

    x, y = torch.randn(103, 3), torch.arange(103)
    split = TensorSplit(x, y)
    standard = DataLoader(split, batch_size=16, sampler=EpochShuffle(split, seed=5), collate_fn=collate_batch)
    fast = DataLoader(split, batch_size=None, sampler=ShuffledBatches(103, 16, seed=5), collate_fn=collate_batch)
    # the order torch's DistributedSampler gives one process with the same seed (Lightning's under DDP)
    distributed = DistributedSampler(split, num_replicas=1, rank=0, shuffle=True, seed=5)
    assert len(fast) == len(standard) == 7
    orders = []
    for epoch in range(3):
        for loader in (standard, fast):
            loader.sampler.set_epoch(epoch)
        distributed.set_epoch(epoch)
        torch.manual_seed(100 + epoch)  # the global generator has no say
        a = list(standard)
        torch.manual_seed(999)
        b = list(fast)
        assert [len(by) for _, by in b] == [16] * 6 + [7]
        assert all(torch.equal(ax, bx) and torch.equal(ay, by) for (ax, ay), (bx, by) in zip(a, b))
        order = torch.cat([by for _, by in b]).tolist()
        assert order == list(distributed) and sorted(order) == list(range(103))
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]  # a new order every epoch


def test_training_loader_leaves_the_global_generator_alone(cfg_factory):
    from litlab.build import build_data

    for overrides in ([], ["data.in_memory=false", "data.num_workers=0"]):
        dm = build_data(cfg_factory(["seed=3", *overrides]))
        loader = dm.train_dataloader()
        torch.manual_seed(0)
        state = torch.get_rng_state()
        next(iter(loader))  # making an iterator and drawing the epoch's order
        assert torch.equal(torch.get_rng_state(), state), overrides


def test_training_loader_is_standard_where_lightning_rebuilds_it(cfg_factory):
    from litlab.build import build_callbacks, build_data, build_loggers, build_trainer
    from litlab.data.shuffled_batches import ShuffledBatches

    def train_sampler(overrides):
        cfg = cfg_factory(overrides)
        dm = build_data(cfg)
        trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
        dm.trainer = trainer
        dm.setup("fit")
        return dm.train_dataloader()

    assert isinstance(train_sampler([]).sampler, ShuffledBatches)
    # overfit_batches: Lightning swaps in a sequential sampler, which needs the batch_size form
    standard = train_sampler(["+trainer.overfit_batches=2"])
    assert not isinstance(standard.sampler, ShuffledBatches)
    # Lightning sees a shuffled loader there, so its distributed sampler (DDP) shuffles too
    from lightning.pytorch.utilities.data import _is_dataloader_shuffled

    assert _is_dataloader_shuffled(standard)


@pytest.mark.parametrize("in_memory_fast_path", [True, False])
def test_a_last_training_batch_of_one_sample_is_left_out(cfg_factory, tmp_path, monkeypatch, in_memory_fast_path):
    """65 samples in batches of 64 ended each epoch with one sample, which batch normalization
    cannot normalize on 1x1 features: the run crashed after its first batch."""
    from litlab.data.base import ClassificationData
    from litlab.training import train

    if not in_memory_fast_path:  # the DataLoader that DDP and overfit_batches get
        monkeypatch.setattr(ClassificationData, "_one_process_plain_training", lambda self: False)
    cfg = cfg_factory(["model=cnn", "data=synthetic_seq", "data.shape=[1,4]", "data.num_train=65", "data.num_val=16",
                       "data.num_test=16", "data.batch_size=64", "trainer.max_epochs=2"])
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed" and m["global_step"] == 2  # one batch of 64 per epoch


def test_shuffled_batches_leave_out_a_short_last_batch_when_asked():
    from litlab.data.shuffled_batches import ShuffledBatches

    kept = ShuffledBatches(65, 64, seed=1)
    dropped = ShuffledBatches(65, 64, seed=1, drop_last=True)
    assert [len(b) for b in kept] == [64, 1] and len(kept) == 2
    assert [len(b) for b in dropped] == [64] and len(dropped) == 1
    assert torch.equal(next(iter(kept)), next(iter(dropped)))  # the same order, cut shorter
