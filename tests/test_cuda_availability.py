"""Lightning's NVML-based CUDA check is dropped where no CUDA device is visible, and only there."""

from __future__ import annotations

import torch

from litlab.cuda_availability import drop_nvml_check_without_gpus

VAR = "PYTORCH_NVML_BASED_CUDA_CHECK"


def test_dropped_without_devices(monkeypatch):
    monkeypatch.setenv(VAR, "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert drop_nvml_check_without_gpus() is True
    import os

    assert VAR not in os.environ


def test_kept_with_a_device_or_when_unset(monkeypatch):
    import os

    monkeypatch.setenv(VAR, "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert drop_nvml_check_without_gpus() is False and os.environ[VAR] == "1"
    monkeypatch.delenv(VAR)
    assert drop_nvml_check_without_gpus() is False and VAR not in os.environ
