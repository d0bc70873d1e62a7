"""Batches from memory: normalization, transfer and fetching keep the caller's data intact."""

from __future__ import annotations

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


def test_shuffled_batches_are_the_standard_loaders_batches():
    from torch.utils.data import DataLoader

    from litlab.data.datasets import collate_batch
    from litlab.data.shuffled_batches import ShuffledBatches

    x, y = torch.randn(103, 3), torch.arange(103)
    split = TensorSplit(x, y)
    standard = DataLoader(split, batch_size=16, shuffle=True, collate_fn=collate_batch)
    fast = DataLoader(split, batch_size=None, sampler=ShuffledBatches(103, 16), collate_fn=collate_batch)
    assert len(fast) == len(standard) == 7
    for epoch in range(2):  # the same global seed gives the same order, epoch after epoch
        torch.manual_seed(epoch)
        a = list(standard)
        torch.manual_seed(epoch)
        b = list(fast)
        assert [len(by) for _, by in b] == [16] * 6 + [7]
        assert all(torch.equal(ax, bx) and torch.equal(ay, by) for (ax, ay), (bx, by) in zip(a, b))
    assert sorted(torch.cat([by for _, by in b]).tolist()) == list(range(103))


def test_training_loader_is_standard_where_lightning_rebuilds_it(cfg_factory):
    from litlab.build import build_callbacks, build_data, build_loggers, build_trainer
    from litlab.data.shuffled_batches import ShuffledBatches

    def train_sampler(overrides):
        cfg = cfg_factory(overrides)
        dm = build_data(cfg)
        trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
        dm.trainer = trainer
        dm.setup("fit")
        return dm.train_dataloader().sampler

    assert isinstance(train_sampler([]), ShuffledBatches)
    # overfit_batches: Lightning swaps in a sequential sampler, which needs the batch_size form
    assert not isinstance(train_sampler(["+trainer.overfit_batches=2"]), ShuffledBatches)
