"""``trainer.devices`` counted once, without torch (``litlab.device_counts``), as Lightning reads it,
and where it is read: the trainer checks, a resume's process count, eval's ``temperature=auto``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from litlab.errors import LitlabError
from litlab.trainer_checks import check_devices, check_trainer_config, processes


@pytest.mark.parametrize("value,count", [
    (2, 2), ("2", 2), (" 3 ", 3), ("0,1", 2), ("1,", 1), (" 0, 2 ", 2), ([0, 1], 2), ([1], 1),
    (OmegaConf.create([0, 1, 2]), 3), ("auto", None), (None, None), (-1, None), ("-1", None),
])
def test_device_count_reads_counts_and_ids(value, count):
    from litlab.device_counts import device_count

    assert device_count(value) == count


@pytest.mark.parametrize("value", [True, "abc", 1.5, 0, "0", -2, ",", "", ["a"], [True], {"n": 2}])
def test_device_count_refuses_what_lightning_refuses(value):
    from litlab.device_counts import device_count

    with pytest.raises(ValueError):
        device_count(value)


def test_the_count_imports_no_torch():
    code = "import sys, litlab.device_counts as d; assert d.device_count('0,1') == 2; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA GPUs, as torch sees it (the checks ask nothing else of the GPUs)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for var in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_gpu_ids_as_a_string_are_accepted_on_cuda(two_gpus):
    """Lightning takes trainer.devices="0,1" (GPU ids); the check refused it as no integer."""
    assert check_devices("0,1", "cuda") == 2
    assert check_devices("1,", "cuda") == 1
    trainer = OmegaConf.create({"accelerator": "gpu", "devices": "0,1", "precision": "32"})
    check_trainer_config(trainer)
    assert processes(trainer) == 2


@pytest.mark.parametrize("value,message", [
    ("0,2", 'trainer.devices="0,2" names GPUs this machine lacks: it has ids 0..1.'),
    ([0, 2], "trainer.devices=[0, 2] names GPUs this machine lacks: it has ids 0..1."),
    ("0,0", 'trainer.devices="0,0" names a GPU twice'),
    ("3", "trainer.devices=3 but this machine has 2 CUDA GPU(s)."),
    ("abc", "trainer.devices must be an integer, a list of device ids or auto, got 'abc'."),
    ("0", "trainer.devices must be a positive integer, -1 (all) or auto, got 0."),
])
def test_gpu_settings_this_machine_cannot_run_are_refused(two_gpus, value, message):
    with pytest.raises(LitlabError) as error:
        check_devices(value, "cuda")
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("value,shown", [("0,1", 'trainer.devices="0,1"'), ("-1", "trainer.devices=-1"),
                                         ([0], "trainer.devices=[0]")])
def test_ids_on_the_cpu_are_refused_as_before(value, shown):
    """Lightning's CPU accelerator takes a number of processes only."""
    with pytest.raises(LitlabError) as error:
        check_devices(value, "cpu")
    assert str(error.value).startswith(f"{shown}: on the CPU, trainer.devices is the number of processes, from 1 to ")


def test_a_stored_id_string_counts_its_ids_in_a_resume(cfg_factory):
    """An older checkpoint (no data position) with trainer.devices "0,1" was compared as written
    ("0,1 in the checkpoint, 2 here", refused); it is 2 processes, as "2" is."""
    from litlab.resume_settings import check_same_steps_per_epoch
    from tests.test_resume_checks import _warmup_checkpoint

    two = cfg_factory(["model.warmup_epochs=1", "trainer=ddp_cpu", "trainer.devices=2"])
    ckpt = _warmup_checkpoint(two)
    ckpt["litlab"]["config"]["trainer"]["devices"] = "0,1"
    check_same_steps_per_epoch(two, ckpt, "a.ckpt")
    one = cfg_factory(["model.warmup_epochs=1", "trainer.devices=1"], name="one")
    with pytest.raises(LitlabError, match=r"another number of optimizer steps \(trainer\.devices x trainer\.num_nodes "
                                          r"= 2 process\(es\) in the checkpoint, 1 here\)"):
        check_same_steps_per_epoch(one, ckpt, "a.ckpt")


@pytest.mark.parametrize("devices", ["2", "0,1", [0, 1], -1, "auto"])
def test_temperature_auto_takes_any_device_setting(devices):
    """temperature=auto was refused on several devices; each rank now fits on every rank's logits."""
    from litlab.tuning.temperature_setting import AUTO, eval_temperature

    cfg = OmegaConf.create({"temperature": "auto", "split": "test", "trainer": {"devices": devices, "num_nodes": 2}})
    assert eval_temperature(cfg) == AUTO
