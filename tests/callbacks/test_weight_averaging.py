"""Weight averaging (``averaging=ema``, ``averaging=swa``): the average's numbers against hand
computations, which weights validation, the checkpoints and the test use, exact resumes, and the
settings that are refused before anything is written."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.averaging_checks import check_averaging
from litlab.build import build_model
from litlab.callbacks.checkpoints import checkpoint_callback
from litlab.callbacks.group import find_callback
from litlab.callbacks.weight_averaging import Averaging, ema, swa
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.training import train
from tests.conftest import make_cfg

# 1,168 training digits in batches of 64: 19 optimizer steps an epoch, 38 in all, validated after
# the 9th and the 18th batch of each epoch (last.ckpt also at each epoch's end)
RUN = ["model=mlp", "+trainer.val_check_interval=0.5"]
RUNS = {"none": [], "ema": ["averaging=ema"], "swa": ["averaging=swa", "averaging.start_epoch=0"]}
# the hooks that must reach the averaging callback (counted in the EMA run)
HOOKS = ("on_train_batch_end", "on_validation_start", "on_validation_end", "on_fit_end")


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m: f"{key}: {m}")


# --- the average's numbers, on a tiny module under a plain Lightning Trainer ---


class Tiny(L.LightningModule):
    """Linear layers around a batch norm: parameters, float buffers and an integer buffer."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class Snapshots(L.Callback):
    """The live weights and buffers after every training batch and at every epoch's end."""

    def __init__(self):
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(_state(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append(_state(pl_module))


def _fit(averaging: Averaging, epochs: int, batches: int) -> tuple[Tiny, Snapshots]:
    """``epochs`` epochs of ``batches`` batches of 4; the module holds the average afterwards."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(4 * batches, 3), torch.randint(0, 2, (4 * batches,)))
    module, snapshots = Tiny(), Snapshots()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[averaging, snapshots], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(data, batch_size=4))
    return module, snapshots


@pytest.mark.parametrize("warmup,decays", [(True, (2 / 11, 3 / 12)), (False, (0.9, 0.9))], ids=["warmup", "plain"])
def test_ema_of_three_steps_is_the_hand_computed_one(warmup, decays):
    """The first update copies the weights; after n updates the decay is min(0.9, (1+n)/(10+n))
    with warm-up, 0.9 without. Integer buffers (num_batches_tracked) are the live counts."""
    module, snapshots = _fit(ema(decay=0.9, warmup=warmup), epochs=1, batches=3)
    (w1, w2, w3), (d1, d2) = snapshots.steps, decays
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            want = d2 * (d1 * w1[key] + (1 - d1) * w2[key]) + (1 - d2) * w3[key]
            torch.testing.assert_close(value, want, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
        else:
            assert value.item() == w3[key].item() == 3
    assert not torch.allclose(module.state_dict()["net.0.weight"], w3["net.0.weight"])


@pytest.mark.parametrize("every,updates", [(1, 5), (2, 3)], ids=["every-step", "every-2nd-step"])
def test_a_decay_the_warm_up_never_reaches_is_named_and_changes_nothing(caplog, every, updates):
    """README's ``averaging.decay=0.998`` "shorter average" trained the same weights as 0.999 on the
    default run: the warm-up's min(decay, (1+n)/(10+n)) stays below both. The last of U updates uses
    U/(9+U); any decay above it gives the same average bit for bit, and is named in a warning."""
    last = updates / (9 + updates)  # 5 updates: 5/14 = 0.357; 3 (after steps 1, 3, 5): 3/12 = 0.25
    averages = {}
    for decay in (0.998, 0.999, last + 0.01, last, last - 0.05):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="litlab.callbacks.weight_averaging"):
            module, _ = _fit(ema(decay=decay, update_every_n_steps=every), epochs=1, batches=5)
        averages[decay] = _state(module)
        warned = [r.getMessage() for r in caplog.records if "is never reached" in r.getMessage()]
        assert len(warned) == (1 if decay > last else 0), (decay, warned)
        if warned:
            assert warned[0].startswith(f"averaging.decay={decay:g} is never reached: with the warm-up")
            assert f"this run's 5 optimizer steps make {updates} updates" in warned[0]
            assert f"the last of which uses {last:.3f}" in warned[0]
            assert "Set a lower averaging.decay for a shorter average, or averaging.warmup=false" in warned[0]
    for decay in (0.999, last + 0.01, last):  # the warm-up's decays at every update: the same average
        _assert_same(averages[decay], averages[0.998])
    assert not torch.equal(averages[last - 0.05]["net.0.weight"], averages[0.998]["net.0.weight"])
    # the updates 0.998 needs: (1+n)/(10+n) >= 0.998 from n = 4,490 others on, the 4,491st update
    assert "(0.998 would take 4,491 updates)" in ema(decay=0.998)._unreached_decay(380)
    assert "make 380 updates, the last of which uses 0.977" in ema(decay=0.998)._unreached_decay(380)
    assert ema(decay=0.998, warmup=False)._unreached_decay(380) is None
    assert ema(decay=0.998)._unreached_decay(float("inf")) is None  # no end: not known


@pytest.mark.parametrize("overrides, level", [
    (["averaging=ema"], logging.INFO),  # ema.yaml's default 0.999: told, not warned about on every run
    (["averaging=ema", "averaging.decay=0.999"], logging.WARNING),  # the same decay, given by the user
])
def test_an_unreached_decay_is_a_warning_only_where_the_command_gave_it(tmp_path, monkeypatch, caplog, overrides,
                                                                         level):
    """Every default ``averaging=ema`` run warned "averaging.decay=0.999 is never reached", a decay
    the user never chose; the command's own ``averaging.decay=...`` is still warned about."""
    from hydra.core.hydra_config import HydraConfig

    cfg = make_cfg(overrides, tmp_path / "run", tmp_path, fast=False)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # put back afterwards
    HydraConfig.instance().set_config(cfg)  # as inside the Hydra job the command starts
    with caplog.at_level(logging.INFO, logger="litlab.callbacks.weight_averaging"):
        _fit(ema(decay=cfg.averaging.decay), epochs=1, batches=5)
    told = [r for r in caplog.records if "averaging.decay=0.999 is never reached" in r.getMessage()]
    assert [r.levelno for r in told] == [level]


@pytest.mark.parametrize("start_epoch,averaged", [(1, (1, 2, 3)), (0.5, (2, 3))], ids=["epoch", "fraction"])
def test_swa_is_the_mean_of_the_epochs_last_weights_from_its_start(start_epoch, averaged):
    """start_epoch=0.5 of 4 epochs is epoch 2, as Lightning's swa_epoch_start."""
    module, snapshots = _fit(swa(start_epoch=start_epoch), epochs=4, batches=2)
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            want = sum(snapshots.epochs[e][key] for e in averaged) / len(averaged)
            torch.testing.assert_close(value, want, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
        else:
            assert value.item() == snapshots.epochs[3][key].item() == 8


def test_a_bfloat16_module_is_averaged_in_float32():
    """At decay 0.999 an update moves a weight by 0.1 % of its distance to the live one, less than
    half a bfloat16 step: an average kept in bfloat16 (trainer.precision=bf16-true) never moved."""
    module, averaging = Tiny().to(torch.bfloat16), ema(decay=0.999, warmup=False)
    averaging.setup(SimpleNamespace(strategy=object(), max_epochs=1), module, "fit")
    averaging.on_fit_start(None, module)
    with torch.no_grad():
        module.net[0].weight.fill_(1.0)
        averaging._update(module)
        module.net[0].weight.fill_(1.0078125)  # one bfloat16 step above 1
        averaging._update(module)
    weight = averaging._average_model.module.net[0].weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, torch.full_like(weight, 1 + 0.001 * 0.0078125), rtol=0, atol=1e-7)


class Scored(Tiny):
    """Tiny whose validation logs the epoch's score from ``scores`` as val/acc: which checkpoint is
    best is then known in advance."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.scores = scores

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", self.scores[self.current_epoch])


def _fit_checkpointed(averaging: Averaging, epochs: int, dirpath, snapshots: Snapshots, scores: list[float],
                      ckpt_path=None) -> tuple[Scored, L.Trainer]:
    """``epochs`` epochs of 2 batches of 4 (in the same order each epoch) with litlab's checkpoint
    callback writing best.ckpt (by val/acc) and last.ckpt to ``dirpath``, resumed from ``ckpt_path``."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    module = Scored(scores)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[averaging, snapshots, checkpoint_callback(str(dirpath))])
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return module, trainer


@pytest.mark.parametrize("start_epoch", [1, 3], ids=["started", "never-started"])
def test_swa_best_checkpoint_is_the_best_validation_of_the_average(tmp_path, caplog, start_epoch):
    """Scores 0.9, 0.5, 0.7 over 3 epochs: SWA from epoch 1 validates the live weights at epoch 0
    (0.9), then the average (0.5, 0.7). best.ckpt is the best average's (epoch 2), not the live
    weights' 0.9 (which Lightning kept to the end: the test and export then used weights never
    averaged). A run that ends before the start (epoch 3 of 3) keeps the best live checkpoint and
    says that nothing was averaged, in a warning and in its record."""
    averaging, snapshots = swa(start_epoch=start_epoch), Snapshots()
    with caplog.at_level(logging.WARNING, logger="litlab.callbacks.weight_averaging"):
        _, trainer = _fit_checkpointed(averaging, 3, tmp_path, snapshots, [0.9, 0.5, 0.7])
    best, last = (torch.load(tmp_path / f"{name}.ckpt", weights_only=True) for name in ("best", "last"))
    assert last["global_step"] == 6 and last["averaging_state"]["n_averaged"].item() == (2 if start_epoch == 1 else 0)
    if start_epoch == 1:
        assert best["epoch"] == 2 and best["averaging_state"]["n_averaged"].item() == 2
        assert trainer.checkpoint_callback.best_model_score.item() == pytest.approx(0.7)
        first, second = snapshots.epochs[1:]
        for key, value in best["state_dict"].items():
            if value.is_floating_point():
                torch.testing.assert_close(value, (first[key] + second[key]) / 2, rtol=0, atol=1e-6)
        assert averaging.describe() == "swa(from epoch 2)" and "never" not in caplog.text
    else:
        assert best["epoch"] == 0 and best["averaging_state"]["n_averaged"].item() == 0
        assert trainer.checkpoint_callback.best_model_score.item() == pytest.approx(0.9)
        _assert_same(best["state_dict"], snapshots.epochs[0])
        assert averaging.describe() == "swa(start_epoch=3, never reached: trained weights)"
        assert caplog.text.count("averaging=swa never updated: start_epoch=3 (epoch 4) was not reached") == 1
        assert "the run's weights, best.ckpt's and the test's, are the trained ones" in caplog.text


def test_under_swa_a_later_average_with_the_same_score_replaces_best(tmp_path):
    """Scores 0.9, 0.7, 0.7: the averages of epochs 2 and 2-3 tie. best.ckpt was the first (one
    epoch's weights, Lightning's strict rule); the later average, of two epochs, replaces it."""
    _fit_checkpointed(swa(start_epoch=1), 3, tmp_path, Snapshots(), [0.9, 0.7, 0.7])
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert (best["epoch"], best["averaging_state"]["n_averaged"].item()) == (2, 2)


def test_a_fractional_swa_start_stays_the_runs_on_a_resume_with_more_epochs(tmp_path):
    """0.75 of 4 epochs is epoch 3. Resumed from last.ckpt with 8 epochs, the average goes on from
    it (epochs 3 to 7, 1-based 4 to 8), not from 0.75 of 8 (epoch 6): before, the resume re-resolved
    the fraction, averaged epochs 3, 6 and 7 and recorded "from epoch 6"."""
    snapshots, averaging = Snapshots(), swa(start_epoch=0.75)
    _fit_checkpointed(swa(start_epoch=0.75), 4, tmp_path, snapshots, [0.5] * 8)
    module, _ = _fit_checkpointed(averaging, 8, tmp_path, snapshots, [0.5] * 8, ckpt_path=tmp_path / "last.ckpt")
    assert len(snapshots.epochs) == 8
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["averaging_state"]["n_averaged"].item() == 5
    assert averaging.describe() == "swa(from epoch 4)"
    # every score ties: the resumed run keeps letting later averages replace best.ckpt (state restored)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 7
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            want = sum(snapshots.epochs[e][key] for e in range(3, 8)) / 5
            torch.testing.assert_close(value, want, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_a_channels_last_net_is_copied_and_swapped_in_place(cfg_factory):
    """model.channels_last=true stores the 4-D weights channels-last: the deep copy keeps that, and
    validation's swap writes into the same tensors (which a net compiled in place by model.compile
    keeps reading; torch.compile itself is left out here: its import alone takes seconds)."""
    cfg = cfg_factory(["model.channels_last=true"])
    model = build_model(cfg.model, (1, 8, 8), 10)
    averaging = ema()
    averaging.setup(SimpleNamespace(strategy=object(), max_epochs=2), model, "fit")
    averaging.on_fit_start(None, model)
    copy = averaging._average_model.module
    conv = next(m for m in copy.modules() if isinstance(m, nn.Conv2d)).weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert copy.net is not model.net
    averaging._update(model)
    pointers = [p.data_ptr() for p in model.parameters()]
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1.0)
    before = _state(model)
    averaging.on_validation_start(None, model)
    assert [p.data_ptr() for p in model.parameters()] == pointers
    _assert_same(_state(model), _state(copy))
    averaging.on_validation_end(None, model)
    _assert_same(_state(model), before)


# --- litlab runs: none, ema and swa on the same seed ---


class Recorder(L.Callback):
    """The average at every validation's end and at training's end, the live weights at every
    epoch's end, the weights the test runs on, and the trainer's callbacks."""

    def __init__(self):
        self.averages, self.epoch_ends, self.final, self.tested, self.callbacks = [], [], None, None, None
        self.calls = Counter()  # calls of the averaging callback's HOOKS (see _count_hooks)

    def on_validation_end(self, trainer, pl_module):
        averaging = find_callback(trainer, Averaging)
        if averaging is not None and not trainer.sanity_checking:
            self.averages.append((trainer.global_step, _state(averaging._average_model.module)))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_ends.append(_state(pl_module))

    def on_train_end(self, trainer, pl_module):
        averaging = find_callback(trainer, Averaging)
        if averaging is not None:
            self.final = _state(averaging._average_model.module)

    def on_test_start(self, trainer, pl_module):
        self.tested = _state(pl_module)
        self.callbacks = list(trainer.callbacks)


def _count_hooks(mp, calls: Counter) -> None:
    """Counts in ``calls`` each call of Averaging's ``HOOKS`` (wrapped on the class: the run builds
    its own instance). A hook set to None on the instance (``skip_idle_step_hooks``) is not called."""
    for hook in HOOKS:
        def counted(self, *args, _real=getattr(Averaging, hook), _hook=hook, **kwargs):
            calls[_hook] += 1
            return _real(self, *args, **kwargs)
        mp.setattr(Averaging, hook, counted)


def _train(mp, cfg, *extra: L.Callback) -> None:
    """``train(cfg)`` with ``extra`` callbacks added to the run's."""
    from litlab import build

    real = build.build_callbacks
    mp.setattr("litlab.training.build_callbacks", lambda c: [*real(c), *extra])
    train(cfg)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """``{name: (run_dir, recorder)}`` of the 2-epoch MLP runs of ``RUNS``."""
    out = {}
    for name, overrides in RUNS.items():
        run_dir, recorder = tmp_path_factory.mktemp(name) / "run", Recorder()
        with pytest.MonkeyPatch.context() as mp:
            if name == "ema":
                _count_hooks(mp, recorder.calls)
            _train(mp, make_cfg([*RUN, *overrides], run_dir, data_dir), recorder)
        out[name] = (run_dir, recorder)
    return out


def _ckpt(run_dir, name: str = "last") -> dict:
    return torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=True)


def _validations(run_dir) -> list[tuple[int, float, float]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [(int(r["step"]), float(r["val/acc"]), float(r["val/loss"])) for r in csv.DictReader(file)
                if r.get("val/acc")]


def test_an_ema_run_validates_saves_and_tests_the_average(runs):
    """The live weights train as without averaging (bit for bit); checkpoints hold the average of
    their validation in state_dict and the live weights in current_model_state; the test after fit
    runs on best.ckpt's average; test/acc is in the range of the run without averaging."""
    (none_dir, _), (ema_dir, recorder) = runs["none"], runs["ema"]
    last, best = _ckpt(ema_dir), _ckpt(ema_dir, "best")
    _assert_same(last["current_model_state"], _ckpt(none_dir)["state_dict"])
    assert last["averaging_state"]["n_averaged"].item() == last["global_step"] == 38
    averages = dict(recorder.averages)
    assert sorted(averages) == [9, 18, 28, 37]
    _assert_same(last["state_dict"], recorder.final)
    _assert_same(best["state_dict"], averages[best["global_step"]])
    _assert_same(recorder.tested, best["state_dict"])
    key = "net.layers.1.weight"
    assert not torch.equal(best["state_dict"][key], best["current_model_state"][key])
    # validation measured the average: other figures than the run without it
    assert _validations(ema_dir) != _validations(none_dir)
    metrics = {name: json.loads((runs[name][0] / "metrics.json").read_text()) for name in ("none", "ema")}
    assert metrics["ema"]["test/acc"] > 0.85 and abs(metrics["ema"]["test/acc"] - metrics["none"]["test/acc"]) < 0.05
    # its own callback in the trainer's list (stateful: never grouped), its hooks not skipped as idle:
    # called at each of the 38 steps, the 4 validations (no sanity check) and the fit's end
    assert len([c for c in recorder.callbacks if isinstance(c, Averaging)]) == 1
    assert recorder.calls == {"on_train_batch_end": 38, "on_validation_start": 4, "on_validation_end": 4,
                              "on_fit_end": 1}


def test_swa_validates_the_live_weights_before_its_first_update(runs):
    """SWA from epoch 0 first averages at that epoch's last (19th) batch: the validations after the
    9th and 18th batch measure the live weights (Lightning swapped in the untrained initial copy),
    those of the second epoch the average of the first epoch's end, and only they compete for
    best.ckpt; last.ckpt holds the mean of both epochs' ends."""
    (none_dir, _), (swa_dir, recorder) = runs["none"], runs["swa"]
    with_swa, without = _validations(swa_dir), _validations(none_dir)
    assert with_swa[:2] == without[:2] and with_swa[2:] != without[2:]
    last = _ckpt(swa_dir)
    assert last["averaging_state"]["n_averaged"].item() == 2
    first, second = recorder.epoch_ends
    for key, value in last["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[key] + second[key]) / 2, rtol=0, atol=1e-6)
    _assert_same(last["current_model_state"], _ckpt(none_dir)["state_dict"])
    best = _ckpt(swa_dir, "best")
    assert best["global_step"] in (28, 37) and best["averaging_state"]["n_averaged"].item() == 1
    _assert_same(best["state_dict"], first)  # the average of one update: the first epoch's end
    metrics = json.loads((swa_dir / "metrics.json").read_text())
    assert metrics["val/acc"] == pytest.approx(max(acc for _, acc, _ in with_swa[2:]))
    assert metrics["averaging"] == "swa(from epoch 1)"


@pytest.mark.parametrize("name", ["ema", "swa"])
def test_a_run_cut_within_an_epoch_resumes_to_the_same_average_bit_for_bit(runs, cfg_factory, tmp_path, name):
    """Cut after 12 of the first epoch's 19 batches (between validations), resumed from last.ckpt:
    the same average, live weights and update count as the run trained through. Lightning's SWA
    averaged the cut epoch's weights at its end hooks, which a cut run runs, and again when the
    resumed epoch ended."""
    run = [*RUN, *RUNS[name]]
    train(cfg_factory([*run, "+trainer.max_steps=12"], name="cut"))
    cut = _ckpt(tmp_path / "cut")
    assert cut["global_step"] == 12 and cut["averaging_state"]["n_averaged"].item() == (12 if name == "ema" else 0)
    recorded = {"ema": "ema(decay=0.999, warmup)", "swa": "swa(start_epoch=0, never reached: trained weights)"}
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["averaging"] == recorded[name]
    train(cfg_factory([*run, "ckpt_path=last"], name="cut"))
    recorded["swa"] = "swa(from epoch 1)"
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["averaging"] == recorded[name]
    whole, resumed = _ckpt(runs[name][0]), _ckpt(tmp_path / "cut")
    assert resumed["global_step"] == whole["global_step"] == 38
    for part in ("state_dict", "current_model_state", "averaging_state"):
        _assert_same(resumed[part], whole[part])


@pytest.mark.parametrize("run,command,message", [
    ("ema", ["averaging=none"],
     r"was trained with averaging=ema averaging.decay=0.999 averaging.warmup=true averaging.update_every_n_steps=1, "
     r"and this command has averaging=none: its state_dict holds the average and its current_model_state the "
     r"trained weights, and without averaging the resume would go on training from the average as if it were "
     r"the trained weights. Resume with the run's own averaging \(averaging=ema .*\), or train a new run "
     r"without averaging, in a new folder"),
    ("none", ["averaging=ema"],
     r"was trained with averaging=none, and this command has averaging=ema .*: it holds no average, and the "
     r"resume would start one partway through the run.* or train a new run with this averaging, in a new folder: "
     r"python -m litlab.train .*averaging=ema"),
    ("ema", ["averaging=ema", "averaging.decay=0.99"],
     r"was trained with averaging=ema averaging.decay=0.999 .*, and this command has averaging=ema "
     r"averaging.decay=0.99 averaging.warmup=true averaging.update_every_n_steps=1: its average so far was taken "
     r"with those settings, and the resume would go on with these"),
])
def test_a_resume_with_other_averaging_is_refused_before_anything_is_written(runs, cfg_factory, tmp_path, run,
                                                                            command, message):
    last = runs[run][0] / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(LitlabError, match=rf"ckpt_path={last} {message}") as info:
        train(cfg_factory([*RUN, *command, f"ckpt_path={last}"], name="refused"))
    assert "\n" not in str(info.value)
    assert last.read_bytes() == before
    assert list((tmp_path / "refused").iterdir()) == []


@pytest.mark.parametrize("overrides,message", [
    (["trainer=fsdp"], "averaging=ema/swa cannot run with trainer.strategy=fsdp: weight averaging keeps a whole copy "
                       "of the model in every process, and a sharded strategy (FSDP, DeepSpeed) gives each process "
                       "a part of the weights only. Use averaging=none with this strategy"),
    (["+trainer.strategy=deepspeed_stage_2"], "cannot run with trainer.strategy=deepspeed_stage_2"),
    (["averaging.decay=1.0"], "averaging.decay must be a number in (0, 1), got 1.0"),
    (["averaging.update_every_n_steps=0"], "averaging.update_every_n_steps must be an integer >= 1, got 0"),
])
def test_settings_ema_cannot_run_are_refused_before_the_run_folder_is_made(overrides, message, tmp_path):
    """By the command line's check, before Hydra makes the folder (the callback checks its settings
    when it is built, and the trainer's strategy when it is set up)."""
    with pytest.raises(LitlabError) as info:
        check_overrides(["averaging=ema", *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy,name", [("FSDPStrategy", "fsdp"), ("DeepSpeedStrategy", "deepspeed")])
def test_the_callback_refuses_a_sharded_strategy_when_it_is_set_up(strategy, name):
    """For configs that reach training without the command line's check: the live strategy, named as
    on the command line."""
    cls = getattr(L.strategies, strategy)
    with pytest.raises(LitlabError, match=rf"averaging=ema/swa cannot run with trainer.strategy={name}: "):
        ema().setup(SimpleNamespace(strategy=cls.__new__(cls), max_epochs=2), Tiny(), "fit")


@pytest.mark.parametrize("overrides,message", [
    (["averaging.start_epoch=2"], "averaging.start_epoch=2 starts averaging at the end of epoch 3 (as the log counts), but the run "
                                  "has trainer.max_epochs=2, so nothing would be averaged"),
    (["trainer.max_epochs=-1", "+trainer.max_steps=10"], "averaging.start_epoch=0.75 is a fraction of "
                                                        "trainer.max_epochs, which is unlimited here (-1)"),
    (["averaging.start_epoch=-1"], "averaging.start_epoch must be an epoch number (0 is the first) or a fraction"),
])
def test_swa_starts_that_average_nothing_are_refused(cfg_factory, overrides, message):
    with pytest.raises(LitlabError) as info:
        check_averaging(cfg_factory(["averaging=swa", *overrides]))
    assert message in str(info.value)


def test_every_averaging_file_builds_its_callback(cfg_factory):
    from litlab.build import build_callbacks

    built = {name: [c for c in build_callbacks(cfg_factory([f"averaging={name}"])) if isinstance(c, Averaging)]
             for name in ("none", "ema", "swa")}
    assert built["none"] == []
    assert built["ema"][0].describe() == "ema(decay=0.999, warmup)"
    assert built["swa"][0].describe() == "swa(start_epoch=0.75)"
