"""NetLogits, the forward-hook capture shared by the evaluation report and eval's temperature
callbacks: the hook lives only for its epoch (also when the epoch fails), a caught output that
is not the batch's ``(B, C)`` logits is not taken, and the report takes a step's returned logits
first. The callbacks that never see the task call the net: ``tests/test_uncalled_net.py``."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.callbacks import eval_report
from litlab.callbacks.eval_report import EvalReport
from litlab.callbacks.net_logits import NetLogits
from litlab.callbacks.split_logits import SplitLogits
from litlab.temperature_scaling import UnscaledFigures, scale_net

BATCHES, BATCH, FEATURES, CLASSES = 3, 5, 4, 3


class Task(L.LightningModule):
    """Validation and test steps that call ``self.net`` on ``x[:call]`` (all of ``x`` by default),
    return ``returned(logits)`` and raise at batch ``fail_at``."""

    def __init__(self, call: int | None = None, returned=None, fail_at: int | None = None):
        super().__init__()
        self.net = nn.Linear(FEATURES, CLASSES)
        self.call, self.returned, self.fail_at = call, returned, fail_at

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("step failed")
        x = batch[0]
        logits = self.net(x[:self.call])  # (call, C)
        return None if self.returned is None else self.returned(logits)

    validation_step = test_step = _step


class NoNet(L.LightningModule):
    """A task without a ``net`` attribute, whose steps return nothing."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(FEATURES, CLASSES)

    def forward(self, x):
        return self.layer(x)

    def validation_step(self, batch, batch_idx):
        return None


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCHES * BATCH, FEATURES, generator=g), torch.randint(0, CLASSES, (BATCHES * BATCH,), generator=g)


def run(stage: str, model: L.LightningModule, callback: L.Callback) -> None:
    loader = DataLoader(TensorDataset(*data()), batch_size=BATCH)  # in order: batch i is x[5i:5i+5]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    getattr(trainer, stage)(model, dataloaders=loader, verbose=False)


def recorded_report_logits(monkeypatch) -> list[torch.Tensor]:
    """The logits EvalReport adds to its tally, batch by batch."""
    seen = []
    add = eval_report._Tally.add

    def recording_add(self, logits, y, x):
        seen.append(logits.clone())
        add(self, logits, y, x)

    monkeypatch.setattr(eval_report._Tally, "add", recording_add)
    return seen


# (stage, callback, the module whose forward the callback watches)
CASES = {
    "validation_logits": ("validate", lambda: SplitLogits("validate"), lambda model: model.net),
    "test_logits": ("test", lambda: SplitLogits("test"), lambda model: model.net),
    "eval_report": ("validate", lambda: EvalReport(misclassified=0), lambda model: model.net),
    "unscaled_figures": ("test", lambda: UnscaledFigures(bins=15), lambda model: model.net.net),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fail_at", [None, 1])
def test_the_hook_is_on_the_net_during_the_epoch_only(case, fail_at):
    stage, make, watched = CASES[case]
    model = Task(fail_at=fail_at)
    if case == "unscaled_figures":
        scale_net(model, 2.0)
    callback = make()
    assert isinstance(callback, NetLogits)
    hooks_during = []
    original = callback._capture

    def capture(module, args, output):
        hooks_during.append(len(watched(model)._forward_hooks))
        original(module, args, output)

    callback._capture = capture  # the bound method the hook is registered with
    if fail_at is None:
        run(stage, model, callback)
    else:
        with pytest.raises(RuntimeError, match="step failed"):
            run(stage, model, callback)
    assert hooks_during and set(hooks_during) == {1}  # the task's calls were caught by one hook
    assert len(watched(model)._forward_hooks) == 0  # removed at the epoch's end, or on the exception
    assert callback._hook is None and callback._last is None


@pytest.mark.parametrize("case", ["validation_logits", "eval_report"])
def test_a_caught_output_of_another_batch_size_is_not_taken(case, monkeypatch):
    torch.manual_seed(0)
    model = Task(call=2)  # the task calls the net on 2 of each batch's 5 samples
    seen = recorded_report_logits(monkeypatch)
    callback = SplitLogits("validate") if case == "validation_logits" else EvalReport(misclassified=0)
    run("validate", model, callback)
    got = callback.result()[0].float() if case == "validation_logits" else torch.cat(seen)
    with torch.no_grad():
        expected = model.net(data()[0])  # (15, 3): every sample's, run by the callback
    assert got.shape == (BATCHES * BATCH, CLASSES)
    torch.testing.assert_close(got, expected)


def test_the_report_takes_a_steps_returned_logits_and_the_fit_the_nets(monkeypatch):
    torch.manual_seed(0)
    shifted = Task(returned=lambda logits: logits + 100.0)  # (5, 3) returned, not the net's own
    seen = recorded_report_logits(monkeypatch)
    run("validate", shifted, EvalReport(misclassified=0))
    kept = SplitLogits("validate")
    run("validate", shifted, kept)
    with torch.no_grad():
        own = shifted.net(data()[0])  # (15, 3)
    torch.testing.assert_close(torch.cat(seen), own + 100.0)
    torch.testing.assert_close(kept.result()[0].float(), own)


def test_the_report_runs_a_task_without_a_net(monkeypatch):
    torch.manual_seed(0)
    model = NoNet()
    seen = recorded_report_logits(monkeypatch)
    run("validate", model, EvalReport(misclassified=0))
    with torch.no_grad():
        expected = model(data()[0])  # (15, 3): pl_module(x), batch by batch
    torch.testing.assert_close(torch.cat(seen), expected)
