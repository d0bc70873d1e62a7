"""CallbackGroup: litlab's stateless callbacks answer Lightning's hooks through one callback."""

from __future__ import annotations

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary

from litlab.build import build_callbacks, build_loggers, build_trainer
from litlab.callbacks.checkpoints import _Checkpoints
from litlab.callbacks.group import (HOOKS, STEP_HOOKS, CallbackGroup, find_callback, group_callbacks,
                                   skip_idle_step_hooks)
from litlab.callbacks.throughput import Throughput
from tests.helpers import tiny_lightning_module


def _recorder(name: str, hooks: tuple[str, ...], calls: list, state: bool = False) -> L.Callback:
    """A callback of a class defined "in litlab" that records (name, hook, args) for ``hooks``."""
    def make(hook):
        return lambda self, *args, **kwargs: calls.append((name, hook, args, kwargs))
    body = {h: make(h) for h in hooks}
    if state:
        body["state_dict"] = lambda self: {"n": 1}
    return type(f"Rec_{name}", (L.Callback,), {"__module__": "litlab.fake", **body})()


class Foreign(L.Callback):  # a user's callback: defined outside litlab
    def on_train_batch_end(self, *args):
        pass


def test_grouping_keeps_order_and_leaves_lookups_and_state_alone(tmp_path):
    calls = []
    a = _recorder("a", ("on_train_batch_end",), calls)
    ckpt = _Checkpoints(dirpath=tmp_path)
    b = _recorder("b", ("on_train_batch_end", "on_fit_start"), calls)
    stateful = _recorder("s", ("on_train_batch_end",), calls, state=True)
    foreign, lrm = Foreign(), LearningRateMonitor()
    out = group_callbacks([foreign, a, ckpt, b, stateful, lrm])
    assert [type(c) for c in out] == [Foreign, CallbackGroup, _Checkpoints, type(stateful)]
    assert out[1].members == [a, b, lrm]
    # fewer than two groupable callbacks: nothing to gain, the list is unchanged
    assert group_callbacks([foreign, a, ckpt]) == [foreign, a, ckpt]


def test_each_hook_reaches_exactly_the_members_that_define_it_in_order():
    calls = []
    a = _recorder("a", ("on_train_batch_end", "on_before_backward"), calls)
    b = _recorder("b", ("on_train_batch_end",), calls)
    c = _recorder("c", ("on_fit_start",), calls)
    group = CallbackGroup([a, b, c])
    answered = [hook for hook in HOOKS if hook in vars(group)]
    assert answered == ["on_fit_start", "on_train_batch_end", "on_before_backward"]
    for hook in answered:
        getattr(group, hook)("trainer", "module", 7, key="v")
    assert [(n, h) for n, h, *_ in calls] == [
        ("c", "on_fit_start"), ("a", "on_train_batch_end"), ("b", "on_train_batch_end"), ("a", "on_before_backward")]
    assert all(args == ("trainer", "module", 7) and kwargs == {"key": "v"} for *_, args, kwargs in calls)
    # one definer: its own bound method, no wrapper; no definer: Callback's no-op; no state
    assert group.on_fit_start == c.on_fit_start
    assert type(group).on_validation_end is L.Callback.on_validation_end
    assert group.state_dict() == {}


def test_a_group_survives_pickling_with_its_routing():
    import pickle

    # spawn-based strategies pickle the trainer's callbacks
    group = pickle.loads(pickle.dumps(CallbackGroup([Throughput(), Throughput(), LearningRateMonitor()])))
    group.on_train_batch_end("trainer", "module", None, (torch.zeros(3, 2), torch.zeros(3)), 0)
    assert [m._epoch_samples for m in group.members[:2]] == [3, 3]


def test_default_run_groups_litlab_callbacks_and_a_profiler_does_not(cfg_factory):
    def callbacks_of(overrides):
        cfg = cfg_factory(overrides)
        return build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))

    trainer = callbacks_of(["logger=tensorboard"])
    groups = [c for c in trainer.callbacks if isinstance(c, CallbackGroup)]
    assert len(groups) == 1
    names = [type(m).__name__ for m in groups[0].members]
    assert names == ["LearningRateMonitor", "EvalReport", "GradNorm", "WeightHistograms", "EpochSeed",
                     "Interruption", "StopOnNonFiniteLoss"]
    assert trainer.checkpoint_callback is not None and trainer.progress_bar_callback is not None
    assert isinstance(find_callback(trainer, Throughput), Throughput)

    profiled = callbacks_of(["logger=tensorboard", "+trainer.profiler=simple"])
    assert not any(isinstance(c, CallbackGroup) for c in profiled.callbacks)
    assert isinstance(find_callback(profiled, Throughput), Throughput)
    # a checkpoint holds the same callback states, grouped or not
    from lightning.pytorch.trainer.call import _call_callbacks_state_dict

    states = _call_callbacks_state_dict(trainer)
    assert states.keys() == _call_callbacks_state_dict(profiled).keys() and states


def test_checkpoints_every_n_steps_still_save_on_those_steps(tmp_path):
    # litlab's checkpoint callback skips Lightning's per-batch check only when nothing is saved per batch
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=2)
    ckpt = _Checkpoints(dirpath=tmp_path, filename="{step}", every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(max_epochs=1, callbacks=[ckpt], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(tiny_lightning_module(), data)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["step=2.ckpt", "step=4.ckpt", "step=6.ckpt"]


def test_idle_step_hooks_are_skipped_and_the_others_still_run(tmp_path):
    class Counts(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen.append(batch_idx)

    counts = Counts()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=2)
    trainer = L.Trainer(max_epochs=1, callbacks=[counts], logger=False, enable_progress_bar=False,
                        enable_model_summary=True, accelerator="cpu", enable_checkpointing=False)
    skip_idle_step_hooks(trainer.callbacks)
    summary = next(c for c in trainer.callbacks if isinstance(c, ModelSummary))
    assert all(getattr(summary, hook) is None for hook in STEP_HOOKS)
    assert counts.on_train_batch_start is None and callable(counts.on_train_batch_end)
    assert callable(summary.on_fit_start)  # hooks called once per run are left alone
    trainer.fit(tiny_lightning_module(), data)
    assert counts.seen == [0, 1, 2, 3, 4, 5]


def test_litlab_trainer_skips_idle_step_hooks_unless_profiled(cfg_factory):
    def trainer_of(overrides):
        cfg = cfg_factory(overrides)
        return build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))

    trainer = trainer_of(["logger=tensorboard", "trainer.enable_model_summary=true"])
    summary = next(c for c in trainer.callbacks if isinstance(c, ModelSummary))  # added by Lightning
    assert summary.on_train_batch_end is None and trainer.checkpoint_callback.on_before_backward is None
    assert callable(trainer.checkpoint_callback.on_train_batch_end)
    group = next(c for c in trainer.callbacks if isinstance(c, CallbackGroup))
    assert group.on_before_backward is None and callable(group.on_train_batch_end)
    profiled = trainer_of(["logger=tensorboard", "+trainer.profiler=simple"])
    assert all(callable(getattr(c, hook)) for c in profiled.callbacks for hook in STEP_HOOKS)
