"""The terminal's live bar is redrawn at most refresh_rate times a second and always ends full."""

from __future__ import annotations

import io

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar

from litlab.callbacks.progress import EpochLines, LiveBar, progress_bar
from litlab.errors import LitlabError
from tests.helpers import tiny_lightning_module


def test_batches_between_redraws_skip_lightnings_update(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("litlab.callbacks.progress.time.monotonic", lambda: clock[0])
    monkeypatch.setattr(LiveBar, "total_train_batches", property(lambda self: 25))
    seen = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, t, m, o, b, i: seen.append(i))
    bar = LiveBar(refresh_rate=10)
    for i in range(25):
        bar.on_train_batch_end(None, None, None, None, i)
        clock[0] += 0.03  # 30 ms a batch: one redraw every 4 batches at 10 a second
    assert seen == [0, 4, 8, 12, 16, 20, 24]  # the first, every 0.1 s, and the last


def test_bars_end_at_their_full_count_even_when_no_time_passes(monkeypatch):
    monkeypatch.setattr("litlab.callbacks.progress.time.monotonic", lambda: 5.0)  # never due by time
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(24, 4)), batch_size=2)
    bar = LiveBar(refresh_rate=10, leave=True, console_kwargs={"file": io.StringIO(), "force_terminal": True})
    updates = []
    real = RichProgressBar.on_train_batch_end
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, t, m, o, b, i: (updates.append(i), real(self, t, m, o, b, i)))
    trainer = L.Trainer(max_epochs=1, callbacks=[bar], logger=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(tiny_lightning_module(), data, data)
    assert updates == [0, 11]  # 12 batches: the first and the last reach Lightning's update
    train_task = bar.progress.tasks[bar.train_progress_bar_id]
    assert train_task.completed == train_task.total == 12


@pytest.mark.parametrize("rate", [-1, 2.5, True, "10"])
def test_refresh_rate_must_be_a_positive_whole_number(rate):
    with pytest.raises(LitlabError, match="callbacks.progress_bar.refresh_rate"):
        progress_bar(refresh_rate=rate)


def test_a_log_file_gets_epoch_lines(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal
    assert isinstance(progress_bar(refresh_rate=10), EpochLines)


def test_a_terminal_gets_the_live_bar_unless_the_rate_is_zero(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert isinstance(progress_bar(refresh_rate=10), LiveBar)
    assert isinstance(progress_bar(refresh_rate=0), EpochLines)


def test_epoch_lines_show_validation_only_for_epochs_that_validated(cfg_factory, capsys):
    """Epoch 3 of a run validating every 2nd epoch used to repeat epoch 2's figures unmarked."""
    from litlab.training import train

    train(cfg_factory(["model=mlp", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", "test=false"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3
    assert ["val/acc" in line for line in lines] == [False, True, False]
    assert all("train/loss" in line for line in lines)


@pytest.mark.parametrize("bar", ["lines", "live"])
def test_the_run_log_file_gets_each_epochs_line_whatever_the_display(cfg_factory, caplog, monkeypatch, bar):
    """train.log held the start-up lines only: each epoch's figures went to the console alone (and
    a terminal's live bar leaves none behind)."""
    from litlab.training import train

    monkeypatch.setattr("sys.stdout.isatty", lambda: bar == "live", raising=False)
    with caplog.at_level("INFO", logger="litlab.callbacks.progress"):
        train(cfg_factory(["model=mlp", "trainer.max_epochs=2", "test=false", "logger=none"]))
    lines = [r for r in caplog.records if r.name == "litlab.callbacks.progress"]
    assert [r.getMessage().split("  ")[0] for r in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all(getattr(r, "file_only", False) and "val/acc" in r.getMessage() for r in lines)
