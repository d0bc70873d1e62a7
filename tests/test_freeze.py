"""``model.freeze``: frozen parameters are not trained (AdamW's weight decay included), the modules
they fill run in eval mode (BatchNorm statistics stay), the run records and logs the counts, a
resume may unfreeze, the range test trains what the run trains, and bad values are refused naming
the key before anything is written."""

from __future__ import annotations

import json
import logging

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import OmegaConf

from litlab.errors import LitlabError
from litlab.models.cnn import CNN
from litlab.tasks.frozen_layers import FrozenLayers, check_freeze_config, freeze_prefixes
from litlab.training import train
from tests.conftest import make_cfg, refused_before_torch, run_cli

SHORT = ["model=cnn", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "test=false"]
CAPTURE = "+callbacks.capture._target_=tests.test_freeze.Capture"


class Capture(L.Callback):
    """The net's state as training starts, and the modes of its parts at each training batch."""

    weights: dict[str, torch.Tensor] = {}
    modes: list[tuple[int, bool, bool, bool]] = []
    model: L.LightningModule | None = None

    def on_train_start(self, trainer, pl_module):
        Capture.weights = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        Capture.modes, Capture.model = [], pl_module

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        net = pl_module.net
        Capture.modes.append((trainer.current_epoch, net.features.training, net.features[0][1].training,
                              net.head.training))


def _net_tensors(ckpt_path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    return {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def _cnn() -> CNN:
    return CNN(input_shape=(1, 8, 8), num_classes=10)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory, data_dir):
    """Two short epochs of the CNN on the digits with its features frozen (AdamW, weight_decay 1e-3,
    validation after each epoch); the captured state and the log lines."""
    run = tmp_path_factory.mktemp("freeze") / "frozen"
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("litlab.tasks.classification")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        train(make_cfg([*SHORT, "model.freeze=[features]", "model.optimizer.weight_decay=1e-3", CAPTURE], run,
                       data_dir))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return run, dict(Capture.weights), list(Capture.modes), Capture.model, lines


def test_frozen_parameters_and_batch_norm_statistics_stay_bit_identical(frozen_run):
    """Every features.* tensor (conv weights, BatchNorm scales, running_mean/var, batch count) is the
    one training started with, after 2 epochs of AdamW with weight decay and a validation between
    them; the head trained."""
    run, start, _, _, _ = frozen_run
    after = _net_tensors(run / "checkpoints" / "last.ckpt")
    features = [k for k in start if k.startswith("features.")]
    assert "features.0.1.running_mean" in features and "features.0.1.num_batches_tracked" in features
    for name in features:
        assert torch.equal(after[name], start[name]), name
    assert not torch.equal(after["head.0.weight"], start["head.0.weight"])


def test_frozen_modules_run_in_eval_mode_across_epochs_and_validation(frozen_run):
    """At every training batch of both epochs (the second after a validation) the frozen features
    and their BatchNorm are in eval mode, the head (its dropout) in training mode."""
    _, _, modes, _, _ = frozen_run
    assert {m[0] for m in modes} == {0, 1}
    assert all(m[1:] == (False, False, True) for m in modes), modes


def test_the_counts_are_logged_recorded_and_agree_with_the_model_summary(frozen_run):
    run, _, _, model, lines = frozen_run
    net = _cnn()
    total = sum(p.numel() for p in net.parameters())
    frozen = sum(p.numel() for p in net.features.parameters())
    record = json.loads((run / "metrics.json").read_text())["freeze"]
    assert record == {"prefixes": ["features"], "frozen": frozen, "trainable": total - frozen}
    assert f"model.freeze: {frozen:,} of {total:,} parameters frozen (features); {total - frozen:,} trainable" in lines
    summary = ModelSummary(model)
    assert (summary.trainable_parameters, summary.total_parameters) == (total - frozen, total)


def test_a_resume_keeps_the_freeze_unless_told_and_may_unfreeze(tmp_path, data_dir, caplog):
    """One frozen epoch; a resume that does not set model.freeze goes on frozen (said in the log, and
    recorded); then ckpt_path=last model.freeze=[] (the optimizer's saved state loads) trains the
    features and their BatchNorm statistics."""
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    train(make_cfg([*SHORT, "model.freeze=[features]", "trainer.max_epochs=1"], run, data_dir))
    first = _net_tensors(last)
    with caplog.at_level(logging.INFO, logger="litlab.tasks.frozen_layers"):
        train(make_cfg([*SHORT, "ckpt_path=last", "trainer.max_epochs=2"], run, data_dir))
    second = _net_tensors(last)
    assert f"resuming with model.freeze=['features'], as ckpt_path={last} was trained (model.freeze=[] on the " \
           f"command line trains every parameter)" in caplog.messages
    assert torch.equal(first["features.0.0.weight"], second["features.0.0.weight"])
    assert torch.equal(first["features.0.1.running_mean"], second["features.0.1.running_mean"])
    assert not torch.equal(first["head.0.weight"], second["head.0.weight"])
    assert json.loads((run / "metrics.json").read_text())["freeze"]["prefixes"] == ["features"]
    # as docs/training.md says: the checkpoints store the freeze applied (a later resume keeps it), while
    # Hydra's .hydra/config.yaml, written from the command line before the run, has the default []
    assert torch.load(last, weights_only=False)["litlab"]["config"]["model"]["freeze"] == ["features"]
    train(make_cfg([*SHORT, "ckpt_path=last", "model.freeze=[]", "trainer.max_epochs=3"], run, data_dir))
    third = _net_tensors(last)
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert not torch.equal(second["features.0.0.weight"], third["features.0.0.weight"])
    assert not torch.equal(second["features.0.1.running_mean"], third["features.0.1.running_mean"])
    assert "freeze" not in json.loads((run / "metrics.json").read_text())


def test_the_range_test_trains_what_the_run_trains(tmp_path, data_dir, monkeypatch):
    """lr_find with model.freeze: the features (BatchNorm statistics too) are as they started when the
    sweep ends, before the range test puts the weights back, and got no gradient; the head was
    stepped; the record says what was frozen."""
    from litlab.tuning import lr_range

    seen: dict = {}
    sweep = lr_range.run_range_test

    def watched(model, *args, **kwargs):
        seen["start"] = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        restore = model.load_state_dict

        def load_state_dict(state, *a, **k):  # the range test's restore: the weights the sweep left
            seen["end"] = {k.removeprefix("net."): v.detach().clone() for k, v in model.state_dict().items()}
            seen["grads"] = {n: p.grad is None for n, p in model.net.named_parameters()}
            return restore(state, *a, **k)

        model.load_state_dict = load_state_dict
        return sweep(model, *args, **kwargs)

    monkeypatch.setattr(lr_range, "run_range_test", watched)
    run = tmp_path / "lrf"
    cfg = make_cfg(["model=cnn", "model.freeze=features", "lr_find.num_steps=20", "logger=none"], run, data_dir,
                   config_name="lr_find")
    record = lr_range.lr_find(cfg)
    assert record["freeze"]["prefixes"] == ["features"] and record["freeze"]["frozen"] > 0
    start, end = seen["start"], seen["end"]
    features = [k for k in start if k.startswith("features.")]
    assert "features.0.1.running_mean" in features
    for name in features:
        assert torch.equal(end[name], start[name]), name
    assert all(seen["grads"][n] for n in seen["grads"] if n.startswith("features.")), seen["grads"]
    assert not torch.equal(end["head.0.weight"], start["head.0.weight"])


@pytest.mark.parametrize("value, expected", [(None, []), ([], []), ("features", ["features"]),
                                             (["features.0", "head.0", "features.0"], ["features.0", "head.0"]),
                                             ([1], ["1"]), (3, ["3"]), ([0, "2.weight"], ["0", "2.weight"])])
def test_the_setting_takes_a_list_or_one_prefix(value, expected):
    """An int is its digits: Hydra reads model.freeze=[1] (the module 1 of an nn.Sequential) as one."""
    assert freeze_prefixes(value) == expected


@pytest.mark.parametrize("value", [{"a": 1}, [""], ["features "], True, [True], [None]])
def test_other_values_are_refused_naming_the_key(value):
    with pytest.raises(LitlabError, match=r"model\.freeze must be a list of parameter-name prefixes"):
        freeze_prefixes(value)


class Numbered(torch.nn.Sequential):
    """A user's nn.Sequential subclass: its parameters are named 0.weight, 1.weight, ..."""

    def __init__(self):
        super().__init__(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_an_integer_prefix_freezes_that_module_of_a_sequential(tmp_path):
    """model.freeze=[1] from the command line (an int in the composed config) freezes 1.weight and 1.bias;
    model.freeze=[1.10] (read as the float 1.1, its digits lost) is refused with the hint to quote."""
    cfg = OmegaConf.create({"model": {"freeze": [1]}})
    net = Numbered()
    frozen = FrozenLayers(net, cfg.model.freeze)
    assert sorted(n for n, p in net.named_parameters() if not p.requires_grad) == ["1.bias", "1.weight"]
    assert frozen.prefixes == ["1"] and frozen.modules == [net[1]]
    for value in ([1.1], 1.1):
        with pytest.raises(LitlabError, match=r"model\.freeze: 1\.1 was read as a number.* Quote a prefix made of "
                                              r"digits and dots: model\.freeze=\['1\.10'\]"):
            freeze_prefixes(value)
    assert freeze_prefixes(OmegaConf.create({"f": ["1.10"]}).f) == ["1.10"]


def test_one_sample_batches_pass_the_check_when_the_batch_norm_is_frozen():
    """data.batch_size=1 on a CNN whose features shrink to one position: refused without model.freeze
    (a training step normalizes one value per channel); with the features frozen their BatchNorm runs
    in eval mode while training, so the check (on a copy: the net's modes untouched) lets it train."""
    from litlab.build import check_batch_norm_batch

    shape = (1, 3)  # a sequence of 1 step of 3 features
    with pytest.raises(LitlabError, match=r"data\.batch_size=1: this net's batch normalization"):
        check_batch_norm_batch(CNN(input_shape=shape, num_classes=4), 1, shape)
    net = CNN(input_shape=shape, num_classes=4)
    frozen = FrozenLayers(net, ["features"])
    check_batch_norm_batch(net, 1, shape)
    assert all(m.training for m in net.modules())
    frozen.keep_eval()  # as training runs it: one step on one sample
    net(torch.zeros(1, *shape)).sum().backward()
    assert net.head[0].weight.grad is not None
    partly = CNN(input_shape=shape, num_classes=4)
    FrozenLayers(partly, ["features.0.0", "head"])  # the BatchNorm itself trains: still refused
    with pytest.raises(LitlabError, match=r"data\.batch_size=1"):
        check_batch_norm_batch(partly, 1, shape)


def test_a_prefix_matches_whole_names_only():
    """features.0 freezes features.0.* and not features.01 or a name that only starts alike."""
    net = _cnn()
    frozen = FrozenLayers(net, ["features.0", "head.3.weight"])
    off = sorted(n for n, p in net.named_parameters() if not p.requires_grad)
    assert off == ["features.0.0.weight", "features.0.1.bias", "features.0.1.weight", "head.3.weight"]
    assert frozen.modules == [net.features[0]]  # head.3 keeps a trainable bias: not put in eval


def test_a_prefix_that_matches_nothing_names_the_top_level_modules_and_the_closest():
    with pytest.raises(LitlabError, match=r"model\.freeze=\['featurs'\]: featurs matches no parameter of the net "
                                          r"\(CNN, whose top-level modules are features, head\)\. The closest name "
                                          r"is features\."):
        FrozenLayers(_cnn(), "featurs")
    with pytest.raises(LitlabError, match=r"features\.0\.0 matches no parameter|head\.0\.w matches no parameter"):
        FrozenLayers(_cnn(), ["features.0", "head.0.w"])


@pytest.mark.parametrize("prefix, name", [("features.", "features"), ("head.0.", "head.0"), ("head..", "head")])
def test_a_prefix_with_a_trailing_dot_is_told_to_drop_it(prefix, name):
    """features. names no parameter: the message says to write features (not "closest: features.1")."""
    with pytest.raises(LitlabError) as info:
        FrozenLayers(_cnn(), prefix)
    assert f'A prefix does not end with ".": write {name}, which matches {name} and every name under it.' in \
        str(info.value)
    assert "closest" not in str(info.value)


def test_freezing_everything_is_refused():
    with pytest.raises(LitlabError, match=r"model\.freeze=\['features', 'head'\] freezes every parameter of the net "
                                          r"\([\d,]+ in all\): nothing would train"):
        FrozenLayers(_cnn(), ["features", "head"])


def test_a_bad_prefix_is_refused_before_anything_is_written(cfg_factory, tmp_path):
    """The prefixes need the net (built for the data's shape): refused when the task is built, before
    the run's metrics.json, checkpoints or logs."""
    with pytest.raises(LitlabError, match=r"head\.9 matches no parameter"):
        train(cfg_factory([*SHORT, "model.freeze=[head.9]"], name="bad"))
    assert list((tmp_path / "bad").iterdir()) == []


def test_fsdp_without_original_parameters_is_refused_up_front():
    cfg = OmegaConf.create({"model": {"freeze": ["features"]}, "trainer": {"strategy": {
        "_target_": "lightning.pytorch.strategies.FSDPStrategy", "use_orig_params": False}}})
    with pytest.raises(LitlabError, match=r"trainer\.strategy\.use_orig_params=false"):
        check_freeze_config(cfg)
    cfg.trainer.strategy.use_orig_params = True
    check_freeze_config(cfg)
    cfg.model.freeze = True
    with pytest.raises(LitlabError, match=r"model\.freeze must be"):
        check_freeze_config(cfg)


def test_compression_fine_tunes_every_parameter():
    """The net compression works on (the trained one's copy) has every parameter trainable."""
    from litlab.compression.artifacts import trained_net

    net = _cnn()
    FrozenLayers(net, "features")
    copy = trained_net(type("Task", (), {"net": net})(), {})
    assert all(p.requires_grad for p in copy.parameters())
    assert not any(p.requires_grad for p in net.features.parameters())  # the run's own net as it was


def test_a_frozen_runs_compressed_model_evaluates(tmp_path, data_dir):
    """model.freeze is the trained net's: eval of a quantized file (whose head has no float parameters
    left to match the prefix) builds its task without it and gives the reported accuracy."""
    from litlab.evaluation import evaluate

    run = tmp_path / "q"
    train(make_cfg([*SHORT[:-1], "trainer.max_epochs=1", "model.net.channels=[8,16]", "model.net.hidden_size=16",
                    "model.freeze=[features,head.0]", "compress=quantize", "compress.calibration_batches=2"],
                   run, data_dir))
    report = json.loads((run / "compression.json").read_text())
    after = report["artifacts"]["after"]
    got = evaluate(make_cfg([f"ckpt_path={after}"], tmp_path / "eval", data_dir, config_name="eval"))
    assert got["test/acc"] == pytest.approx(report["after"]["test_acc"], abs=1e-6)


@pytest.mark.slow
def test_ddp_ranks_train_from_another_runs_weights_with_its_features_frozen(frozen_run, tmp_path, data_dir):
    """trainer=ddp_cpu (2 processes) with model.init_from and model.freeze: DDP wraps the net with the
    frozen set fixed; the features end as loaded (BatchNorm statistics too), the head trains, and
    the counts are logged once (rank 0)."""
    source = frozen_run[0] / "checkpoints" / "best.ckpt"
    run = tmp_path / "ddp"
    done = run_cli("litlab.train", "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1", "logger=none",
                   "test=false", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
                   f"paths.data_dir={data_dir}", f"model.init_from={source}", "model.freeze=[features]",
                   f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    start, after = _net_tensors(source), _net_tensors(run / "checkpoints" / "last.ckpt")
    for name in (k for k in start if k.startswith("features.")):
        assert torch.equal(after[name], start[name]), name
    assert not torch.equal(after["head.0.weight"], start["head.0.weight"])
    assert (run / "train.log").read_text().count("model.freeze: ") == 1


def test_weight_averaging_keeps_the_frozen_weights(tmp_path, data_dir):
    """averaging=ema: the averaged weights best.ckpt holds have the features training started with."""
    run = tmp_path / "ema"
    train(make_cfg([*SHORT, "averaging=ema", "model.freeze=[features]", CAPTURE], run, data_dir))
    start, best = dict(Capture.weights), _net_tensors(run / "checkpoints" / "best.ckpt")
    for name in (k for k in start if k.startswith("features.")):
        assert torch.equal(best[name], start[name]), name
    assert not torch.equal(best["head.0.weight"], start["head.0.weight"])


def test_the_names_are_those_of_the_channels_last_and_compiled_net():
    """model.channels_last and model.compile act in place before the task is built: the prefixes
    match the same names as on the plain net."""
    from litlab.models.speed_switches import apply_speed_switches

    plain, fast = _cnn(), _cnn()
    apply_speed_switches(fast, channels_last=True, compile=True)
    FrozenLayers(plain, "features")
    FrozenLayers(fast, "features")
    assert [(n, p.requires_grad) for n, p in fast.named_parameters()] == \
           [(n, p.requires_grad) for n, p in plain.named_parameters()]


@pytest.mark.parametrize("command, args", [("eval", ["model.freeze=[head]"]), ("eval", ["model.freeze=[features,head]"]),
                                           ("predict", ["input=in.png", "+model.freeze=[head]"])])
def test_eval_and_predict_refuse_freeze_before_torch(frozen_run, tmp_path, command, args):
    """eval and predict read the weights of ckpt_path as trained: model.freeze=[head] was accepted and did
    nothing, [features,head] refused as "nothing would train". One paragraph naming the key, before
    torch, no folder."""
    from PIL import Image

    best = frozen_run[0] / "checkpoints" / "best.ckpt"
    Image.new("L", (8, 8)).save(tmp_path / "in.png")
    stderr = refused_before_torch(f"litlab.{command}", [f"ckpt_path={best}", *args, "hydra.run.dir=run"], tmp_path)
    text = " ".join(stderr.split())
    assert "model.freeze=['" in text and f"{command} reads the weights of ckpt_path as they were trained and " \
           f"trains nothing" in text and "Remove model.freeze from the command." in text, stderr
    assert "nothing would train" not in text
    assert not (tmp_path / "run").exists()


def test_eval_takes_an_empty_freeze(frozen_run, tmp_path, data_dir):
    """model.freeze=[] (what eval does anyway) is not refused."""
    from litlab.eval import check_before_loading

    best = frozen_run[0] / "checkpoints" / "best.ckpt"
    cfg = make_cfg([f"ckpt_path={best}", "++model.freeze=[]"], tmp_path / "e", data_dir, config_name="eval")
    assert check_before_loading(cfg) == "test"


@pytest.mark.parametrize("args, message", [
    (["model.freeze=1.5"], "model.freeze: 1.5 was read as a number"),
    (["model.freeze=[true]"], "model.freeze must be a list of parameter-name prefixes"),
    (["-m", "model.freeze=[features],2.5"], "model.freeze: 2.5 was read as a number"),
])
def test_a_value_that_is_no_prefix_is_refused_before_torch_and_any_folder(tmp_path, args, message):
    """The value needs no net: refused on the command line (each swept value too), where it used to
    be refused once the run had made its folder."""
    stderr = refused_before_torch("litlab.train", [*args, f"hydra.run.dir={tmp_path / 'run'}",
                                                   f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert message in stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
    assert not (tmp_path / "outputs").exists()


def test_prefixes_pass_the_command_line_check():
    from litlab.config_check import check_overrides

    for value in ("[features]", "features", "[1]", "[]", "null"):
        assert check_overrides([f"model.freeze={value}"]) is not None, value
