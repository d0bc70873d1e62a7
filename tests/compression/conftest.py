"""Tiny runs for the compression tests: small synthetic data, one or two epochs everywhere."""

from __future__ import annotations

import pytest

# 1x8x8 synthetic images, 4 classes, a few hundred samples; latency timed only a few times
TINY = ["data=synthetic", "data.shape=[1,8,8]", "data.num_classes=4", "data.num_train=256", "data.num_val=64",
        "data.num_test=128", "data.noise=0.5", "trainer.max_epochs=2", "callbacks.progress_bar=null"]
QUICK_MEASURE = ["compress.measure.warmup=1", "compress.measure.repeats=3"]


@pytest.fixture
def tiny_cfg(cfg_factory):
    """``tiny_cfg(overrides, name)``: a tiny run's config with compression overrides on top."""

    def factory(overrides=(), name: str = "run"):
        compress = any(o.startswith("compress=") and o != "compress=none" for o in overrides)
        return cfg_factory([*TINY, *overrides, *(QUICK_MEASURE if compress else [])], name=name)

    return factory
