"""``trainer.devices`` counted once, without torch (``litlab.device_counts``), as Lightning reads it,
and where it is read: the trainer checks, a resume's process count, eval's ``temperature=auto``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("value", [True, "abc", 1.5, 0, "0", -2, ",", "", ["a"], [True], {"n": 2},
                                   " auto ", "auto ", "0, ", "0,1, ", [], OmegaConf.create([])])
def test_device_count_refuses_what_lightning_refuses(value):
    """Also " auto " (Lightning compares "auto" as it is; its CPU accelerator refuses the spaced
    word), an id string with a blank part ("0, ": Lightning's _parse_gpu_ids skips only empty
    parts, and int("") raises) and an empty list (Lightning: "devices=[] is not a valid input")."""
    from litlab.device_counts import device_count

    with pytest.raises(ValueError):
        device_count(value)


def test_the_refusals_are_lightnings():
    """The values refused above that only spacing or emptiness tells apart are refused by Lightning too."""
    from lightning.fabric.accelerators.cpu import _parse_cpu_cores
    from lightning.fabric.utilities.device_parser import _normalize_parse_gpu_string_input
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    with pytest.raises(TypeError):
        _parse_cpu_cores(" auto ")
    with pytest.raises(ValueError):
        _normalize_parse_gpu_string_input("0, ")
    with pytest.raises(Exception, match="not a valid input"):
        _AcceleratorConnector(devices=[], accelerator="cpu")


def test_an_empty_device_list_is_refused_on_a_gpu(two_gpus):
    """check_devices([], "cuda") returned 0 and processes() counted 0 processes."""
    with pytest.raises(LitlabError, match=r"trainer.devices must be an integer, a list of device ids or auto, "
                                          r"got \[\]"):
        check_devices([], "cuda")
    with pytest.raises(LitlabError):
        check_devices("0, ", "cuda")
    trainer = OmegaConf.create({"accelerator": "gpu", "devices": [], "precision": "32"})
    assert processes(trainer) is None
    with pytest.raises(LitlabError):
        check_trainer_config(trainer)


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


def _cut_within_epoch(cfg_factory, tmp_path) -> tuple[list[str], Path]:
    """(the overrides of a one-process run stopped after 12 of its 19 batches of epoch 0, its last.ckpt)."""
    from litlab.training import train
    from tests.helpers import write_npz

    run = ["model=mlp", "data=npz", f"data.path={write_npz(tmp_path / 'a.npz', n=300)}", "data.batch_size=16",
           "logger=none", "test=false"]
    train(cfg_factory([*run, "+trainer.max_steps=12"], name="cut"))
    return run, tmp_path / "cut" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("devices", ["'2'", "'0,1'", "[0,1]"])
def test_a_resume_within_an_epoch_counts_any_spelling_of_two_devices(cfg_factory, tmp_path, devices):
    """check_same_batches compared an int trainer.devices only: 2 was refused before anything was
    written, "2", "0,1" and [0, 1] passed, and the loader refused them once the run had begun."""
    from litlab.resume import check_same_batches

    run, last = _cut_within_epoch(cfg_factory, tmp_path)
    ckpt = torch.load(last, weights_only=True)
    with pytest.raises(LitlabError, match=r"\(1 process\(es\) in the checkpoint, 2 here \(trainer.devices x "
                                          r"trainer.num_nodes\)\)"):
        check_same_batches(cfg_factory([*run, "trainer=ddp_cpu", f"trainer.devices={devices}"]), ckpt, last)
    check_same_batches(cfg_factory([*run, "trainer.devices='1'"]), ckpt, last)  # one process, as in the checkpoint


def test_a_resume_with_devices_2_as_a_string_is_refused_before_its_record_is_rewritten(cfg_factory, data_dir,
                                                                                      tmp_path):
    """The command a user types: trainer.devices='2' started both processes and rewrote the run's
    record before the loader refused the resume."""
    from tests.conftest import FAST, run_cli

    run, last = _cut_within_epoch(cfg_factory, tmp_path)
    record, before = (tmp_path / "cut" / "metrics.json").read_bytes(), last.read_bytes()
    done = run_cli("litlab.train", *FAST, f"paths.data_dir={data_dir}", *run, "trainer=ddp_cpu",
                   "trainer.devices='2'", "ckpt_path=last", f"hydra.run.dir={tmp_path / 'cut'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "(1 process(es) in the checkpoint, 2 here (trainer.devices x trainer.num_nodes))" in done.stderr
    assert done.stderr.count("Error:") == 1 and "Initializing distributed" not in done.stderr
    assert (tmp_path / "cut" / "metrics.json").read_bytes() == record and last.read_bytes() == before


@pytest.mark.parametrize("devices,shown", [("'2'", "trainer.devices='2' (2 devices)"),
                                           ("'0,1'", "trainer.devices='0,1' (2 devices)"),
                                           ("[0,1]", "trainer.devices=[0, 1] (2 devices)"),
                                           ("2", "trainer.devices=2")])
def test_slurm_tasks_per_node_are_compared_with_any_spelling_of_the_devices(cfg_factory, devices, shown):
    """check_slurm_tasks read an int or a list: "2" and "0,1" were let through to fail on the node."""
    from litlab.config_check import check_slurm_tasks

    cfg = cfg_factory(["hydra/launcher=submitit_slurm", f"trainer.devices={devices}"])
    OmegaConf.update(cfg, "hydra.runtime.choices", {"hydra/launcher": "submitit_slurm"}, force_add=True)
    with pytest.raises(LitlabError) as error:
        check_slurm_tasks(cfg)
    assert str(error.value).startswith(f"hydra.launcher.tasks_per_node=1 but {shown}: SLURM starts one process per "
                                       f"task")
    OmegaConf.update(cfg, "hydra.launcher.tasks_per_node", 2)
    check_slurm_tasks(cfg)


@pytest.mark.parametrize("devices,expected", [(2, "trainer.devices=2 = 4 processes"),
                                              ("2", "trainer.devices=2 = 4 processes"),
                                              ("0,1", "trainer.devices=0,1 = 4 processes"),
                                              ([0, 1], "trainer.devices=[0, 1] = 4 processes"),
                                              ("auto", "trainer.devices=auto processes")])
def test_ranks_that_never_joined_are_counted_from_any_spelling(devices, expected):
    """The paragraph of ranks that never joined counted an int trainer.devices only."""
    from litlab.distributed.rank_faults import ranks_never_joined_message

    trainer = OmegaConf.create({"num_nodes": 2, "devices": devices})
    message = ranks_never_joined_message(TimeoutError("timed out"), trainer)
    assert message.startswith(f"trainer.num_nodes=2 x {expected} were expected to start this run together")
