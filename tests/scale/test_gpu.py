"""The GPU choices through the real entrypoint: skipped here, run where CUDA is present (`pytest -m gpu`)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import run_cli

from .tiny_run import TINY, metrics_of, run_dirs

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPUS = min(2, torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _run(tmp_path, *args) -> dict:
    proc = run_cli("litlab.train", *TINY, "model=cnn", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    return metrics_of(run_dir)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_one_gpu_trains_in_each_precision(tmp_path, precision):
    m = _run(tmp_path, "trainer=gpu", f"trainer.precision={precision}")
    assert m["status"] == "completed" and m["test/acc"] > 0.3


def test_channels_last_and_compile_on_gpu(tmp_path):
    m = _run(tmp_path, "trainer=gpu", "trainer.precision=bf16-mixed", "model.channels_last=true", "model.compile=true")
    assert m["status"] == "completed" and m["test/acc"] > 0.3


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_multi_gpu_strategies_write_one_run_dir(tmp_path, strategy):
    m = _run(tmp_path, f"trainer={strategy}", f"trainer.devices={GPUS}")
    assert m["status"] == "completed" and m["world_size"] == GPUS
    assert m["effective_batch_size"] == 32 * GPUS
