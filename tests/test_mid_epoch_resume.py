"""A resume from a checkpoint taken within an epoch continues it as the uninterrupted run would.

The training loader's position (epoch, batches served) and the random state go into checkpoints
(``data/resumable_loader.py``); a resume used to restart the epoch's data at its first batch while
Lightning counted the batches already trained (some trained twice, the rest never), and a run cut
by ``trainer.max_steps`` within an epoch resumed at the next epoch.
"""

from __future__ import annotations

import csv
import json
import shutil

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from litlab.data.base import ClassificationData
from litlab.data.datasets import TensorSplit
from litlab.data.resumable_loader import ResumableLoader
from litlab.errors import LitlabError
from litlab.training import train

# 1,168 training digits in batches of 64: 19 batches an epoch, validated after the 9th and the 18th;
# model=mlp trains with dropout (model.net.dropout=0.1)
RUN = ["model=mlp", "trainer.max_epochs=2", "+trainer.val_check_interval=0.5"]


def _epoch_means(run_dir) -> list[tuple[int, int, float, float]]:
    """(epoch, step, train/acc, train/loss) of every row of the run's metrics.csv that has them."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [(int(float(r["epoch"])), int(r["step"]), float(r["train/acc"]), float(r["train/loss"]))
                for r in csv.DictReader(file) if r.get("train/acc")]


def _rows(run_dir, key: str) -> list[dict[str, str]]:
    """The rows of the run's metrics.csv that hold ``key``."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [r for r in csv.DictReader(file) if r.get(key)]


def _same_run(tmp_path, whole: str, resumed: str) -> None:
    """The final weights, step and figures of two runs' folders are the same, the training epochs'
    means in metrics.csv too: one row per epoch (the resumed epoch's over all its batches, not only
    those after the checkpoint, and no second row of the start that was cut within it)."""
    a, b = (torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True) for name in (whole, resumed))
    assert b["global_step"] == a["global_step"] == 38
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6)
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in (whole, resumed)]
    for key in ("val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], abs=1e-6), key
    expected, found = (_epoch_means(tmp_path / name) for name in (whole, resumed))
    assert [row[:2] for row in expected] == [(0, 18), (1, 37)]
    assert [row[:2] for row in found] == [row[:2] for row in expected]
    for got, want in zip(found, expected):
        assert got[2:] == pytest.approx(want[2:], abs=1e-6), got


@pytest.mark.parametrize("data", [[], ["data.in_memory=false", "data.num_workers=0", "data.augment.shift=1"]],
                         ids=["in_memory", "streamed_augmented"])
def test_a_run_cut_by_max_steps_within_an_epoch_resumes_as_the_uninterrupted_run(cfg_factory, tmp_path, data):
    """Cut after 12 of the first epoch's 19 batches (between its validations), then resumed from
    last.ckpt: the same weights as the run trained through. The resume used to go on with the
    second epoch (31 steps in all, the first epoch's last 7 batches never trained).

    The cut run records its 12 batches' means at the step it stopped, the checkpoint's, which the
    resume drops: metrics.csv had two rows of epoch 0 (one at step 11, one of the last 7 batches)."""
    train(cfg_factory([*RUN, *data], name="whole"))
    train(cfg_factory([*RUN, *data, "+trainer.max_steps=12"], name="cut"))
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (cut["epoch"], cut["global_step"]) == (0, 12)
    assert [row[:2] for row in _epoch_means(tmp_path / "cut")] == [(0, 12)]
    # the cut epoch's means and throughput at the checkpoint's step, with an integer epoch as every
    # other row (it read 0.0), where the resume drops them (the throughput's row stayed, at step 11)
    assert {key: [(r["epoch"], r["step"]) for r in _rows(tmp_path / "cut", key)]
            for key in ("train/acc", "perf/train_samples_per_s")} == {
        "train/acc": [("0", "12")], "perf/train_samples_per_s": [("0", "12")]}
    train(cfg_factory([*RUN, *data, "ckpt_path=last"], name="cut"))
    _same_run(tmp_path, "whole", "cut")
    _plausible_throughput(tmp_path / "whole", tmp_path / "cut")


def _plausible_throughput(whole, resumed) -> None:
    """One throughput row per epoch, and the resumed epoch's and run's rates of the same order as
    the uninterrupted run's: the resumed epoch's timer was never started (Lightning skips
    on_train_epoch_start there), and it logged ~60,000 s and 0.01 samples/s, in metrics.json too."""
    expected, found = (_rows(run, "perf/train_samples_per_s") for run in (whole, resumed))
    assert [(r["epoch"], r["step"]) for r in found] == [(r["epoch"], r["step"]) for r in expected] == [
        ("0", "18"), ("1", "37")]
    typical = sorted(float(r["perf/train_samples_per_s"]) for r in expected)[0]
    rates = [float(r["perf/train_samples_per_s"]) for r in found]
    rates.append(json.loads((resumed / "metrics.json").read_text())["train_samples_per_s"])
    for rate in rates:
        assert typical / 20 < rate < typical * 20, (rates, typical)
    assert all(0 < float(r["perf/epoch_time_s"]) < 60 for r in found), found


class CopyLastAt(L.Callback):
    """Copies last.ckpt as it is at the start of training step ``step`` to ``to``."""

    def __init__(self, last, to, step: int):
        self.last, self.to, self.step = last, to, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            shutil.copy(self.last, self.to)


def test_last_checkpoint_of_a_validation_within_an_epoch_resumes_as_the_uninterrupted_run(
        cfg_factory, tmp_path, monkeypatch):
    """last.ckpt as the validation after the 9th batch left it (a run killed during the 10th),
    resumed: the same weights as the run that went on."""
    from litlab import build

    real = build.build_callbacks
    copy = tmp_path / "at_9.ckpt"
    probe = CopyLastAt(tmp_path / "whole" / "checkpoints" / "last.ckpt", copy, step=10)
    monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), probe])
    train(cfg_factory(RUN, name="whole"))
    monkeypatch.setattr("litlab.training.build_callbacks", real)
    mid = torch.load(copy, weights_only=True)
    assert (mid["epoch"], mid["global_step"]) == (0, 9)
    train(cfg_factory([*RUN, f"ckpt_path={copy}"], name="resumed"))
    _same_run(tmp_path, "whole", "resumed")
    _plausible_throughput(tmp_path / "whole", tmp_path / "resumed")


class CountedSplit(TensorSplit):
    """A split in memory that notes every sample read."""

    def __init__(self, n: int):
        super().__init__(torch.zeros(n, 1), torch.arange(n))
        self.read: list[int] = []

    def __getitem__(self, i):
        self.read.extend(torch.as_tensor(i).reshape(-1).tolist())
        return super().__getitem__(i)


class CountedFiles(Dataset):
    """A streamed split (one sample per ``__getitem__``) that notes every sample read."""

    def __init__(self, n: int):
        self.n, self.read = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.read.append(i)
        return torch.zeros(1), i


def _labels(loader) -> list[list[int]]:
    return [batch[1].tolist() for batch in loader]


@pytest.mark.parametrize("make", [CountedSplit, CountedFiles], ids=["in_memory", "streamed"])
def test_the_loader_leaves_out_the_batches_served_without_reading_them(make):
    """After a checkpoint's state, the epoch goes on after the batches served before it, which are
    not read (no sample of them is fetched); the epochs after it are whole."""
    data = ClassificationData(batch_size=4, num_workers=0)
    loader = data._loader(make(22), shuffle=True)  # 6 batches, the last of 2
    assert isinstance(loader, ResumableLoader) and loader.resumable
    loader.sampler.set_epoch(1)
    whole = iter(loader)
    served = [next(whole)[1].tolist() for _ in range(4)]
    state = loader.state_dict()
    assert {k: state[k] for k in ("epoch", "served", "batches", "world_size")} == {
        "epoch": 1, "served": 4, "batches": 6, "world_size": 1}
    rest = [b[1].tolist() for b in whole]

    ds = make(22)
    again = ClassificationData(batch_size=4, num_workers=0)._loader(ds, shuffle=True)
    again.load_state_dict(state)
    again.sampler.set_epoch(1)  # as Lightning does before the resumed epoch's first batch
    assert _labels(again) == rest
    assert sorted(ds.read) == sorted(i for batch in rest for i in batch)  # the 16 served never read
    assert again.state_dict()["served"] == 6
    again.sampler.set_epoch(2)
    next_epoch = _labels(again)
    assert len(next_epoch) == 6 and sorted(i for b in next_epoch for i in b) == list(range(22))
    assert served + rest != next_epoch


def test_the_loader_resumes_with_workers_in_the_epoch_lightning_sets_after_iter():
    """Lightning calls iter() on the training loader before it gives a resumed run's sampler its
    epoch; workers drew their first indices at once, so a resumed epoch was served in epoch 0's order."""
    data = ClassificationData(batch_size=4, num_workers=2)
    loader = data._loader(CountedFiles(22), shuffle=True)
    loader.sampler.set_epoch(3)
    expected = _labels(loader)
    fresh = data._loader(CountedFiles(22), shuffle=True)
    fresh.load_state_dict({"epoch": 3, "served": 2, "batches": 6, "world_size": 1})
    batches = iter(fresh)
    fresh.sampler.set_epoch(3)
    assert [b[1].tolist() for b in batches] == expected[2:]


def test_under_ddp_each_rank_goes_on_after_its_own_batches():
    """Lightning rebuilds the training loader around its DistributedSampler under DDP: it stays a
    ResumableLoader, and each rank leaves out the batches of its shard served before the checkpoint."""
    from lightning.pytorch.utilities.data import _update_dataloader

    data = ClassificationData(batch_size=3, num_workers=0)
    for rank in (0, 1):
        def ddp_loader(ds):
            sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
            return _update_dataloader(data._loader(ds, shuffle=True), sampler)

        loader = ddp_loader(CountedFiles(20))  # 10 samples a rank: 4 batches
        assert isinstance(loader, ResumableLoader) and loader.resumable
        loader.sampler.set_epoch(1)
        whole = iter(loader)
        next(whole)
        state = loader.state_dict()
        assert (state["served"], state["batches"], state["world_size"]) == (1, 4, 2)
        rest = [b[1].tolist() for b in whole]
        ds = CountedFiles(20)
        resumed = ddp_loader(ds)
        resumed.load_state_dict(state)
        resumed.sampler.set_epoch(1)
        assert _labels(resumed) == rest
        assert sorted(ds.read) == sorted(i for b in rest for i in b)


def test_a_resume_within_an_epoch_with_another_batch_size_is_refused():
    """The batches served are counted in the checkpoint's batch size and processes."""
    loader = ClassificationData(batch_size=5, num_workers=0)._loader(CountedFiles(22), shuffle=True)
    loader.load_state_dict({"epoch": 0, "served": 2, "batches": 6, "world_size": 1})
    with pytest.raises(LitlabError, match=r"after 2 of the 6 training batches of epoch 0 per process, with 1 "
                                          r"process\(es\); here an epoch has 5 batches per process with 1 "
                                          r"process\(es\).*Resume with the run's data.batch_size"):
        next(iter(loader))
    # an epoch's end: the next epoch starts whole, in any batch size
    loader.load_state_dict({"epoch": 0, "served": 6, "batches": 6, "world_size": 1})
    loader.sampler.set_epoch(1)
    assert len(_labels(loader)) == 5


def test_a_resume_within_an_epoch_with_other_batches_is_refused_before_anything_is_written(cfg_factory, tmp_path):
    """Another data.batch_size (or process count) makes other batches of the epoch's rest: the
    loader refused it only once the run had started, and the run's record was rewritten as failed."""
    train(cfg_factory([*RUN, "+trainer.max_steps=12"], name="cut"))
    record = (tmp_path / "cut" / "metrics.json").read_bytes()
    last = (tmp_path / "cut" / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(LitlabError, match=r"was taken after 12 of the 19 training batches of epoch 0 per process, "
                                          r"and a resume goes on with the batches left; here they would be other "
                                          r"batches \(data\.batch_size=64 in the checkpoint, 32 here\)"):
        train(cfg_factory([*RUN, "data.batch_size=32", "ckpt_path=last"], name="cut"))
    assert (tmp_path / "cut" / "metrics.json").read_bytes() == record
    assert (tmp_path / "cut" / "checkpoints" / "last.ckpt").read_bytes() == last


def test_a_run_cut_within_an_epoch_without_the_loaders_position_resumes_at_the_next_epoch(cfg_factory, tmp_path):
    """trainer.overfit_batches serves a fixed loader whose position is not saved: its run cut by
    max_steps wrote a last.ckpt that was refused as "written at a validation within epoch 1"."""
    overfit = ["model=mlp", "trainer.max_epochs=10", "+trainer.overfit_batches=2"]
    train(cfg_factory([*overfit, "+trainer.max_steps=3"], name="cut"))
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert cut["global_step"] == 3
    train(cfg_factory([*overfit, "+trainer.max_steps=5", "ckpt_path=last"], name="cut"))
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5


class LoaderPositions(L.Callback):
    """Notes (batch index, batches the training loader has served) after each training batch.
    ``early``: reads ``trainer.estimated_stepping_batches`` in ``setup``, which builds the training
    loader before the checkpoint is restored (Lightning bug #20550); ``peek``: takes one batch of
    the training loader at ``on_train_start``."""

    def __init__(self, early: bool = False, peek: bool = False):
        self.early, self.peek, self.seen = early, peek, []

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.early:
            trainer.estimated_stepping_batches  # noqa: B018

    def on_train_start(self, trainer, pl_module) -> None:
        if self.peek:
            next(iter(trainer.train_dataloader))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((batch_idx, trainer.fit_loop._combined_loader.flattened[0]._served))


def test_a_training_loader_built_before_the_restore_still_starts_at_the_checkpoints_batch(
        cfg_factory, tmp_path, monkeypatch):
    """Lightning gives the loader its checkpoint position only where it builds the loader after the
    restore; one built before (estimated_stepping_batches in setup) served the resumed epoch from
    its first batch while Lightning counted from the 13th: batches 1-7 trained twice, 13-19 never.
    A loader that has already served its position before training is refused, before any batch."""
    from litlab import build

    one_epoch = ["model=mlp", "trainer.max_epochs=1", "logger=none"]
    train(cfg_factory([*one_epoch, "+trainer.max_steps=12"], name="cut"))
    at_12 = tmp_path / "at_12.ckpt"
    shutil.copy(tmp_path / "cut" / "checkpoints" / "last.ckpt", at_12)
    real = build.build_callbacks

    def resume(probe: LoaderPositions, name: str) -> None:
        monkeypatch.setattr("litlab.training.build_callbacks", lambda c: [*real(c), probe])
        train(cfg_factory([*one_epoch, f"ckpt_path={at_12}"], name=name))

    early = LoaderPositions(early=True)
    resume(early, "early")
    assert early.seen == [(i, i + 1) for i in range(12, 19)]
    with pytest.raises(LitlabError, match=r"resumes within epoch 0 after 12 of its training batches, but the "
                                          r"training loader would start at its first batch.*#20550.*Nothing was "
                                          r"trained"):
        resume(LoaderPositions(peek=True), "peek")
    assert not (tmp_path / "peek" / "checkpoints").exists()


def test_a_bare_lightning_module_resumed_with_an_early_loader_starts_at_the_checkpoints_batch(tmp_path):
    """The repair of a loader built before the restore is EpochSeed's, the callback every litlab
    run keeps: a LightningModule of the user's own (not litlab's task) gets it too. Without it the
    resumed epoch was served from its first batch (batch 2 as the loader's first)."""
    from litlab.callbacks.checkpoints import checkpoint_callback
    from litlab.callbacks.interruption import EpochSeed

    class Bare(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):  # 22 samples in batches of 4: 6 batches
            return ClassificationData(batch_size=4, num_workers=0)._loader(CountedFiles(22), shuffle=True)

    def fit(callbacks: list, ckpt_path=None, **kwargs) -> None:
        L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  limit_val_batches=0, callbacks=callbacks, **kwargs).fit(Bare(), ckpt_path=ckpt_path)

    fit([EpochSeed(0), checkpoint_callback(str(tmp_path / "cut"), monitor=None)], max_steps=2)
    early = LoaderPositions(early=True)
    fit([EpochSeed(0), early], ckpt_path=tmp_path / "cut" / "last.ckpt", enable_checkpointing=False)
    assert early.seen == [(i, i + 1) for i in range(2, 6)]
