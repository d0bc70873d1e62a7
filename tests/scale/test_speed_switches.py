"""Speed switches (channels-last, torch.compile, precision) change speed, not results."""

import json
import time

import pytest
import torch

from litlab.training import train

from .tiny_run import TINY

CNN = [o for o in TINY if o != "model=mlp"] + ["model=cnn", "callbacks.progress_bar=null", "test=false"]


def _fit(cfg_factory, name, *extra):
    cfg = cfg_factory([*CNN, *extra], name=name)
    train(cfg)
    ckpt = torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    return json.loads(open(f"{cfg.paths.output_dir}/metrics.json").read()), ckpt["state_dict"]


def _same_weights(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].contiguous(), b[key].contiguous(), rtol=tol, atol=tol, msg=key)


SLOW_PATHS = ["model.channels_last=false", "model.fused_optimizer=false"]


def test_automatic_fast_paths_train_the_same_model(cfg_factory):
    # the defaults (channels_last=auto and fused_optimizer=auto: both on for this CNN on the CPU)
    # against both switched off
    plain, w_plain = _fit(cfg_factory, "plain", *SLOW_PATHS)
    fast, w_fast = _fit(cfg_factory, "fast")
    assert fast["val/acc"] == pytest.approx(plain["val/acc"], abs=1 / 64)
    _same_weights(w_plain, w_fast, 1e-4)


def test_auto_switches_resolve_per_net(cfg_factory):
    from litlab.build import build_data, build_model
    from litlab.models.speed_switches import wants_channels_last

    cfg = cfg_factory(CNN)
    dm = build_data(cfg)
    cnn = build_model(cfg.model, dm.input_shape, dm.num_classes).net
    assert wants_channels_last(cnn, "auto") and cnn.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    mlp = build_model(cfg_factory(TINY, name="mlp").model, dm.input_shape, dm.num_classes).net
    assert not wants_channels_last(mlp, "auto")
    with pytest.raises(Exception, match="model.channels_last must be true, false or auto"):
        wants_channels_last(mlp, "sometimes")


@pytest.mark.slow
def test_compile_trains_the_same_model(cfg_factory):
    start = time.perf_counter()
    compiled, w_compiled = _fit(cfg_factory, "compiled", "++model.compile={backend: aot_eager}")
    if time.perf_counter() - start > 60:
        pytest.skip("torch.compile took over a minute on this machine")
    plain, w_plain = _fit(cfg_factory, "plain")
    assert compiled["val/acc"] == pytest.approx(plain["val/acc"], abs=1 / 64)
    _same_weights(w_plain, w_compiled, 1e-4)


def test_bf16_mixed_trains_on_the_cpu(cfg_factory):
    metrics, _ = _fit(cfg_factory, "bf16", "trainer.precision=bf16-mixed")
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.15  # 10 classes: chance is 0.1


@pytest.mark.parametrize("precision,dtype", [("64", torch.float64), ("bf16-true", torch.bfloat16)])
def test_a_precision_with_its_own_dtype_trains_on_the_cpu(cfg_factory, precision, dtype):
    # digits are uint8 images until the batched preprocessing makes them float32: they must reach
    # the net in its dtype
    cfg = cfg_factory(["model=cnn", "trainer.max_epochs=1", "logger=csv", "callbacks.progress_bar=null",
                       "test=false", f"trainer.precision={precision}"], name=precision)
    train(cfg)
    metrics = json.loads(open(f"{cfg.paths.output_dir}/metrics.json").read())
    weights = torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.3  # 10 classes: chance is 0.1
    assert weights["net.features.0.0.weight"].dtype == dtype
