"""Mixup and CutMix (``mixing=...``, ``tasks/batch_mixing.py``): the mixed batches and loss against
hand-computed values (timm's formulas), training batches only, exact resumes, and the refusals."""

from __future__ import annotations

import json
from functools import partial

import lightning.pytorch as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from litlab.build import build_mixing, check_takes_mixing
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.mixing_checks import check_mixing
from litlab.tasks.batch_mixing import CutMix, MixedBatch, Mixup, MixupOrCutMix, cutmix_box
from litlab.tasks.classification import Classifier
from litlab.training import train

MIXERS = [Mixup(), CutMix(), MixupOrCutMix()]


def _batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_mixup_is_the_blend_of_the_batch_and_its_permutation():
    x, y = _batch()
    before, perm = x.clone(), torch.tensor([3, 0, 5, 1, 2, 4])
    mixed = Mixup.mix(x, y, 0.3, perm)
    assert torch.equal(mixed.x, 0.3 * before + 0.7 * before[perm])
    assert torch.equal(mixed.y, y) and torch.equal(mixed.y_other, y[perm]) and mixed.lam == 0.3
    assert torch.equal(x, before)  # the batch's own tensor is left as it came


def test_cutmix_pastes_timms_box_and_counts_the_pixels_pasted():
    # sides sqrt(1 - 0.75) = 0.5 of 8: a 4x4 box around the center; at an edge it is clipped
    assert cutmix_box(8, 8, 0.75, 4, 4) == (2, 6, 2, 6)
    assert cutmix_box(8, 8, 0.75, 0, 7) == (0, 2, 5, 8)
    assert cutmix_box(8, 8, 0.99, 4, 4) == (4, 4, 4, 4)  # int(8 * 0.1) // 2 = 0: nothing pasted
    x, y = _batch()
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    mixed = CutMix.paste(x, y, (0, 2, 5, 8), perm)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[0:2, 5:8] = True
    assert torch.equal(mixed.x[..., inside], x[perm][..., inside])
    assert torch.equal(mixed.x[..., ~inside], x[..., ~inside])
    assert mixed.lam == 1 - 6 / 64 and torch.equal(mixed.y_other, y[perm])
    assert CutMix.paste(x, y, (4, 4, 4, 4), perm).x is x  # an empty box leaves the batch unmixed

    np.random.seed(3)  # a drawn box: lam is the share of pixels outside the pasted ones
    mixed = CutMix(alpha=1.0)(x, y)
    changed = (mixed.x != x).any(dim=0)[0]
    assert 0 < mixed.lam < 1 and mixed.lam == pytest.approx(1 - changed.sum().item() / 64)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_mixed_loss_is_timms_soft_target_cross_entropy(smoothing):
    """``lam * CE(y) + (1 - lam) * CE(y_other)`` with label smoothing on both equals timm's
    cross-entropy against mixed smoothed one-hot targets; ``correct`` weighs each share."""
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    y, other = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 0, 3, 2, 4])
    mixed = MixedBatch(torch.zeros(6), y, other, 0.7)
    by_terms = 0.7 * F.cross_entropy(logits, y, label_smoothing=smoothing) + 0.3 * F.cross_entropy(
        logits, other, label_smoothing=smoothing)
    off, on = smoothing / 5, 1 - smoothing + smoothing / 5  # timm's mixup_target
    target = 0.7 * F.one_hot(y, 5) * (on - off) + 0.3 * F.one_hot(other, 5) * (on - off) + off
    soft = (-target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss = mixed.loss(logits, smoothing)
    assert loss.item() == pytest.approx(by_terms.item(), abs=1e-6) == pytest.approx(soft.item(), abs=1e-6)
    predicted = logits.argmax(dim=1)
    expected = sum(0.7 * (p == a) + 0.3 * (p == b) for p, a, b in zip(predicted.tolist(), y.tolist(), other.tolist()))
    assert mixed.correct(logits).item() == pytest.approx(expected)
    plain = MixedBatch(torch.zeros(6), y, y, 1.0)
    assert torch.equal(plain.loss(logits, smoothing), F.cross_entropy(logits, y, label_smoothing=smoothing))
    assert plain.correct(logits).item() == (predicted == y).sum().item()


@pytest.mark.parametrize("mixer", [Mixup(prob=0), CutMix(prob=0), MixupOrCutMix(prob=0)], ids=repr)
def test_prob_0_leaves_every_batch_as_it_came_and_draws_nothing(mixer):
    x, y = _batch()
    state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    for _ in range(5):
        mixed = mixer(x, y)
        assert mixed.x is x and mixed.y_other is y and mixed.lam == 1.0
    # dropout and augmentation after it draw what they drew unmixed
    assert torch.equal(torch.get_rng_state(), state) and (np.random.get_state()[1] == numpy_state).all()


def test_prob_is_the_share_of_batches_mixed():
    x, y = _batch()
    np.random.seed(0)
    mixer = Mixup(alpha=1.0, prob=0.25)
    mixed = sum(mixer(x, y).lam != 1.0 for _ in range(400))
    assert 70 < mixed < 130


class _Fixed(Mixup):
    """Mixup with lam 0.3 and the batch reversed as partners; counts its batches."""

    calls = 0

    def __call__(self, x, y):
        self.calls += 1
        return self.mix(x, y, 0.3, torch.arange(len(y) - 1, -1, -1))


class _Losses(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_the_task_trains_on_the_mixed_loss_and_never_mixes_validation_or_test(tmp_path):
    """With a learning rate of 0 the weights stay put: each training batch's loss is the mixed one
    with the task's label smoothing, train/acc the lam-weighted count, and val/test are unmixed."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    mixer, losses = _Fixed(), _Losses()
    model = Classifier(nn.Linear(4, 3), partial(torch.optim.SGD, lr=0.0), label_smoothing=0.1, num_classes=3,
                       fused_optimizer=False, mixing=mixer)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[losses],
                        num_sanity_val_steps=0)
    trainer.fit(model, loader, loader)
    assert mixer.calls == 4  # the 4 training batches; the 4 validation batches were not mixed
    expected, correct = [], 0.0
    with torch.no_grad():
        for xb, yb in zip(x.split(8), y.split(8)):
            mixed = 0.3 * xb + 0.7 * xb.flip(0)
            logits = model.net(mixed)
            expected.append((0.3 * F.cross_entropy(logits, yb, label_smoothing=0.1)
                             + 0.7 * F.cross_entropy(logits, yb.flip(0), label_smoothing=0.1)).item())
            predicted = logits.argmax(dim=1)
            correct += (0.3 * (predicted == yb) + 0.7 * (predicted == yb.flip(0))).sum().item()
        plain = model.net(x)
    assert losses.losses == pytest.approx(expected, abs=1e-6)
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(correct / 32, abs=1e-6)
    assert float(trainer.callback_metrics["val/loss"]) == pytest.approx(F.cross_entropy(plain, y).item(), abs=1e-6)
    trainer.test(model, loader, verbose=False)
    assert mixer.calls == 4
    assert float(trainer.callback_metrics["test/acc"]) == pytest.approx(
        (plain.argmax(dim=1) == y).float().mean().item(), abs=1e-6)


def test_a_cutmix_run_trains_mixes_training_batches_only_and_records_the_mixing(cfg_factory, tmp_path, monkeypatch,
                                                                               caplog):
    caplog.set_level("INFO", logger="litlab.training")
    calls = []
    real = CutMix.__call__
    monkeypatch.setattr(CutMix, "__call__", lambda self, x, y: calls.append(tuple(x.shape)) or real(self, x, y))
    cfg = cfg_factory(["model=mlp", "mixing=cutmix", "mixing.alpha=0.5", "+trainer.limit_train_batches=6",
                       "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2", "logger=none"])
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["mixing"] == "cutmix(alpha=0.5)"
    assert metrics["global_step"] == 12 and calls == [(64, 1, 8, 8)] * 12  # no validation or test batch
    assert 0 <= metrics["train/acc"] <= 1 and metrics["test/acc"] > 0.3
    unmixed = cfg_factory(["model=mlp", "trainer.max_epochs=0", "logger=none", "test=false"], name="plain")
    train(unmixed)
    assert "mixing" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    # train.log names the mixing at the start, once a run
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("mixing:")] == [
        "mixing: cutmix(alpha=0.5)", "mixing: none"]


# 1,168 training digits in batches of 64: 19 batches an epoch; mixup or CutMix, and 1 batch in 5 not
# mixed, so that every draw of the mixers (prob, switch, lam, box, partners) is exercised
RESUMED = ["model=mlp", "mixing=mixup_cutmix", "mixing.prob=0.8", "logger=none", "test=false"]


def test_a_mixed_run_cut_within_an_epoch_resumes_bit_for_bit_as_the_uninterrupted_run(cfg_factory, tmp_path):
    """The mixers draw from the generators that EpochSeed seeds per epoch and the checkpoint saves
    within an epoch (NumPy's and torch's): the resumed run ends with the same weights, to the bit."""
    train(cfg_factory(RESUMED, name="whole"))
    train(cfg_factory([*RESUMED, "+trainer.max_steps=12"], name="cut"))
    train(cfg_factory([*RESUMED, "ckpt_path=last"], name="cut"))
    a, b = (torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True) for name in ("whole", "cut"))
    assert a["global_step"] == b["global_step"] == 38
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    whole, cut = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "cut"))
    assert cut["mixing"] == whole["mixing"] == ("mixup_cutmix(mixup_alpha=0.8, cutmix_alpha=1, switch_prob=0.5, "
                                                "prob=0.8)")
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert cut[key] == pytest.approx(whole[key], abs=1e-6), key


@pytest.mark.parametrize("overrides,message", [
    (["mixing=mixup", "mixing.alpha=0"], r"mixing.alpha must be a number > 0, got 0: .* Beta\(alpha, alpha\)"),
    (["mixing=cutmix", "mixing.alpha=-1"], r"mixing.alpha must be a number > 0, got -1"),
    (["mixing=mixup", "mixing.prob=1.5"], r"mixing.prob must be a number in \[0, 1\] \(the share of training batches "),
    (["mixing=mixup_cutmix", "mixing.switch_prob=-0.1"], r"mixing.switch_prob must be a number in \[0, 1\]"),
    (["mixing=cutmix", "data=synthetic_seq"], r"mixing=cutmix and mixing=mixup_cutmix paste a box of one image .* "
                                             r"samples are sequences \(data.kind=sequence\). Use mixing=mixup"),
])
def test_bad_settings_are_refused_before_the_run_folder_is_made(overrides, message, cfg_factory, tmp_path):
    with pytest.raises(LitlabError, match=message):
        check_mixing(cfg_factory(overrides))
    folder = tmp_path / "cli"
    with pytest.raises(LitlabError, match=message):
        check_overrides([*overrides, f"hydra.run.dir={folder}"])
    assert not folder.exists()


def test_mixers_refuse_bad_settings_and_cutmix_data_that_is_not_images_when_built():
    with pytest.raises(LitlabError, match=r"mixing.alpha must be a number > 0, got 0"):
        Mixup(alpha=0)
    with pytest.raises(LitlabError, match=r"mixing.prob must be a number in \[0, 1\]"):
        CutMix(prob=2)
    with pytest.raises(LitlabError, match=r"mixing.cutmix_alpha must be a number > 0"):
        MixupOrCutMix(cutmix_alpha=0.0)
    cutmix = OmegaConf.create({"_target_": "litlab.tasks.batch_mixing.CutMix", "alpha": 1.0, "prob": 1.0})
    assert isinstance(build_mixing(cutmix, (1, 8, 8)), CutMix)
    # an .npz of sequences: known only once the data is read
    with pytest.raises(LitlabError, match=r"samples are of shape \(32, 4\). Use mixing=mixup"):
        build_mixing(cutmix, (32, 4))
    mixup = OmegaConf.create({"_target_": "litlab.tasks.batch_mixing.Mixup", "alpha": 0.2, "prob": 1.0})
    assert repr(build_mixing(mixup, (32, 4))) == "mixup(alpha=0.2)"
    assert build_mixing(OmegaConf.create({}), (1, 8, 8)) is None
    # a task of the user's own that takes no mixer
    check_takes_mixing(OmegaConf.create({"_target_": "litlab.tasks.classification.Classifier"}))
    with pytest.raises(LitlabError, match=r"model._target_=torch.nn.Linear has no mixing argument. Use mixing=none"):
        check_takes_mixing(OmegaConf.create({"_target_": "torch.nn.Linear"}))


def test_a_task_built_by_a_function_is_left_to_instantiate_without_an_error_line(caplog):
    """hydra.utils.get_class logged "[hydra.utils][ERROR] Error getting class ..." for a builder
    function (the check then went on quietly): a run that worked showed an error."""
    import logging

    with caplog.at_level(logging.DEBUG):
        check_takes_mixing(OmegaConf.create({"_target_": "litlab.build.build_mixing"}))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---- review fixes (mixing=none with keys, lr_find's checks, the log, hparams, the box list) --------

@pytest.mark.parametrize("overrides,message", [
    # Hydra's own hint for mixing.prob=0.5 under the default mixing=none: it trained unmixed
    (["+mixing.prob=0.5"], r"^mixing.prob=0.5 sets a key of mixing=none \(the default\), which has no settings: "
                           r"nothing would read it\. The choices of mixing are cutmix, mixup, mixup_cutmix, none; "
                           r"choose one that has prob first: mixing=cutmix\|mixup\|mixup_cutmix \(python -m "
                           r"litlab.train hydra.run.dir=\S+ mixing=mixup mixing.prob=0.5\)\.$"),
    # without the +: Hydra's "not a key", which suggested +mixing.prob
    (["mixing.prob=0.5"], r"^mixing.prob=0.5 sets a key of mixing=none \(the default\), which has no settings: "
                          r"nothing would read it\. .* \(python -m litlab.train hydra.run.dir=\S+ mixing=mixup "
                          r"mixing.prob=0.5\)\.$"),
])
def test_a_mixing_key_under_mixing_none_is_refused_naming_a_mixer(overrides, message, tmp_path):
    folder = tmp_path / "cli"
    with pytest.raises(LitlabError, match=message):
        check_overrides([*overrides, f"hydra.run.dir={folder}"])
    assert not folder.exists()


def test_a_sweep_whose_other_jobs_mix_lets_the_none_job_carry_the_key(tmp_path):
    assert check_overrides(["-m", "mixing=none,mixup", "++mixing.alpha=0.5", f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    with pytest.raises(LitlabError, match=r"^mixing.alpha=0.5,0.3 sets a key of mixing=none, which has no settings"):
        check_overrides(["-m", "mixing=none", "++mixing.alpha=0.5,0.3", f"hydra.sweep.dir={tmp_path / 't'}"])


def test_hparams_record_none_for_no_mixing_and_no_averaging(cfg_factory):
    from litlab.reporting.hparams import hparams_of

    # the none job's hparams: none, not its unused key (and not a blank for empty nodes)
    assert hparams_of(cfg_factory(["++mixing.alpha=0.5"]))["mixing"] == "none"
    plain = hparams_of(cfg_factory([]))
    assert plain["mixing"] == "none" and plain["averaging"] == "none"
    mixed = hparams_of(cfg_factory(["mixing=mixup", "averaging=ema"]))
    assert mixed["mixing"] == {"_target_": "litlab.tasks.batch_mixing.Mixup", "alpha": 0.2, "prob": 1.0}
    assert mixed["averaging"]["_target_"] == "litlab.callbacks.weight_averaging.ema"


def test_lr_find_refuses_cutmix_on_sequences_before_the_run_folder_is_made(tmp_path):
    folder = tmp_path / "lrf"
    with pytest.raises(LitlabError, match=r"mixing=cutmix and mixing=mixup_cutmix paste a box .* samples are "
                                          r"sequences \(data.kind=sequence\)"):
        check_overrides(["model=gru", "data=synthetic_seq", "mixing=cutmix", f"hydra.run.dir={folder}"], "lr_find")
    assert not folder.exists()


def test_cutmix_on_images_without_a_channel_axis_says_how_to_store_them():
    cutmix = OmegaConf.create({"_target_": "litlab.tasks.batch_mixing.CutMix", "alpha": 1.0, "prob": 1.0})
    # an .npz of (N, 8, 8) images is read as sequences of 8 rows
    with pytest.raises(LitlabError, match=r"samples are of shape \(8, 8\)\. Use mixing=mixup, which blends any input, "
                                          r"or mixing=none\. For CutMix, store images as \(N, C, H, W\) .*x\[:, None\]"):
        build_mixing(cutmix, (8, 8))


def test_the_command_lines_list_of_box_pasting_mixers_is_the_classes_own():
    from litlab.mixing_checks import PASTES_BOXES
    from litlab.tasks import batch_mixing

    classes = {f"{c.__module__}.{c.__name__}" for c in vars(batch_mixing).values()
               if isinstance(c, type) and c.__module__ == batch_mixing.__name__ and getattr(c, "pastes_boxes", False)}
    assert set(PASTES_BOXES) == classes == {"litlab.tasks.batch_mixing.CutMix",
                                            "litlab.tasks.batch_mixing.MixupOrCutMix"}


def test_a_resume_with_other_mixing_says_so_in_the_log(cfg_factory, caplog):
    import logging

    from litlab.resume_settings import log_mixing_change

    stored = OmegaConf.to_container(cfg_factory([]), resolve=False)
    stored.pop("hydra", None)
    ckpt = {"litlab": {"config": stored}}
    with caplog.at_level(logging.INFO, logger="litlab.resume"):
        log_mixing_change(cfg_factory([]), ckpt, "run/checkpoints/last.ckpt")
        assert not [r for r in caplog.records if "mixing" in r.getMessage()]
        log_mixing_change(cfg_factory(["mixing=mixup"]), ckpt, "run/checkpoints/last.ckpt")
    (line,) = [r.getMessage() for r in caplog.records if "mixing" in r.getMessage()]
    assert line == ("resuming with mixing Mixup(alpha=0.2, prob=1.0), and ckpt_path=run/checkpoints/last.ckpt was "
                    "trained with mixing none: the steps from here train with the new mixing")
