"""Up-front checks of ``trainer.*`` values, before any work starts: what this machine can run."""

from __future__ import annotations

import logging
import os

import torch
from omegaconf import DictConfig

from litlab.device_counts import read_devices
from litlab.errors import LitlabError
from litlab.monitor_checks import check_monitored
from litlab.strategies import strategy_name
from litlab.trainer_values import check_precision_name, int_key, too_many_devices

log = logging.getLogger(__name__)


def accelerator_of(trainer: DictConfig) -> str:
    """``cpu``, ``cuda`` or ``mps``: where this run will train."""
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise LitlabError(f"trainer.accelerator must be auto, cpu, gpu, cuda or mps, got {accelerator!r}.")
    has_cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_cuda:
        raise LitlabError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU. "
                          f"Use trainer=cpu (or trainer=ddp_cpu for several CPU processes).")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise LitlabError("trainer.accelerator=mps but this machine has no Apple GPU. Use trainer=cpu.")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_cuda):
        return "cuda"
    if accelerator == "auto" and torch.backends.mps.is_available():
        return "mps"
    return accelerator if accelerator == "mps" else "cpu"


def check_precision(precision: str, device: str) -> None:
    """``trainer.precision`` must be one this device computes in."""
    check_precision_name(precision)
    if device == "cpu" and precision.startswith("16"):
        raise LitlabError(f"trainer.precision={precision} needs a CUDA GPU; this run is on the CPU. "
                          f"Use trainer.precision=32 or bf16-mixed.")
    if device == "cuda" and precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        raise LitlabError(f"trainer.precision={precision}: this GPU ({torch.cuda.get_device_name()}) has no bfloat16. "
                          f"Use trainer.precision=16-mixed.")
    if device == "mps" and precision.startswith("64"):
        raise LitlabError("trainer.precision=64: Apple GPUs have no float64. Use trainer.precision=32.")


def check_devices(devices: object, device: str) -> int | None:
    """``trainer.devices`` must exist on this machine; returns the count when it is known. Read as
    Lightning reads it (``device_counts.read_devices``): on a GPU also as ids, ``[0, 1]`` or ``"0,1"``."""
    try:
        setting = read_devices(devices)
    except ValueError:
        raise LitlabError(f"trainer.devices must be an integer, a list of device ids or auto, "
                          f"got {devices!r}.") from None
    if setting is None:  # auto
        return None
    available = {"cuda": torch.cuda.device_count(), "mps": 1, "cpu": os.cpu_count() or 1}[device]
    shown = f'"{devices}"' if isinstance(devices, str) and isinstance(setting, list) else setting
    if device == "cpu" and not (isinstance(setting, int) and setting >= 1):
        # Lightning's CPU accelerator takes a process count only: -1 and id lists fail in it later
        raise LitlabError(f"trainer.devices={shown}: on the CPU, trainer.devices is the number of processes, from 1 "
                          f"to {available} on this machine (e.g. trainer=ddp_cpu trainer.devices=2).")
    if isinstance(setting, int):
        if setting < 1 and setting != -1:
            raise LitlabError(f"trainer.devices must be a positive integer, -1 (all) or auto, got {setting}.")
        if setting > available:
            raise too_many_devices(setting, available, device)
        return available if setting == -1 else setting
    if any(not 0 <= i < available for i in setting):
        raise LitlabError(f"trainer.devices={shown} names GPUs this machine lacks: it has ids 0..{available - 1}.")
    if len(set(setting)) < len(setting):
        raise LitlabError(f"trainer.devices={shown} names a GPU twice; give each id once.")
    return len(setting)


def processes(trainer: DictConfig) -> int | None:
    """The processes this run trains in (``trainer.devices`` x ``trainer.num_nodes``) on this
    machine, with ``auto`` (also an absent ``trainer.devices``, Lightning's default) and -1 counted
    as Lightning counts them: every GPU, one process on the CPU or an Apple GPU. None where the
    values cannot run here (``check_trainer_config`` says why)."""
    try:
        device = accelerator_of(trainer)
        devices = check_devices(trainer.get("devices", "auto"), device)
    except LitlabError:
        return None
    if devices is None:  # auto
        devices = torch.cuda.device_count() if device == "cuda" else 1
    nodes = trainer.get("num_nodes", 1) or 1
    return devices * nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else None


def check_strategy(trainer: DictConfig, device: str) -> None:
    """The strategy must run on this accelerator with this backend."""
    strategy = trainer.get("strategy", "auto")
    name = strategy_name(strategy)
    if name.startswith("fsdp") and device != "cuda":
        raise LitlabError(f"trainer.strategy: FSDP shards the model over CUDA GPUs; this run is on the {device}. "
                          f"Use trainer=ddp_cpu to test several processes on the CPU, or run trainer=fsdp on GPUs.")
    if name.startswith("deepspeed") and device != "cuda":
        raise LitlabError(f"trainer.strategy: DeepSpeed needs CUDA GPUs; this run is on the {device}.")
    backend = strategy.get("process_group_backend") if isinstance(strategy, DictConfig) else None
    if backend is None:
        return
    if backend == "nccl" and device != "cuda":
        raise LitlabError(f"trainer.strategy.process_group_backend=nccl needs CUDA GPUs; this run is on the {device}. "
                          f"Use gloo (trainer=ddp_cpu does).")
    import torch.distributed as dist

    if not isinstance(backend, str) or not dist.is_backend_available(backend):
        usable = [b for b in ("gloo", "nccl", "mpi", "ucc") if dist.is_backend_available(b)]
        raise LitlabError(f"trainer.strategy.process_group_backend={backend}: this torch build has no such "
                          f"process-group backend; it has {', '.join(usable)} (gloo on CPUs, nccl on CUDA GPUs).")


def launched_world_size(num_nodes: int) -> int | None:
    """The number of processes torchrun or SLURM started, None where Lightning starts them itself.

    On one node only torchrun counts: there Lightning takes torchrun's processes as they are and
    fails late, with a traceback, when their number differs from trainer.devices. A SLURM task
    count on one node is left to Lightning, which starts its own processes where it differs from
    trainer.devices (a plain ``python`` in a batch script) and takes SLURM's tasks where it matches.
    """
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        return int(env["WORLD_SIZE"]) if "WORLD_SIZE" in env else None
    if num_nodes > 1 and "SLURM_NTASKS" in env:
        return int(env["SLURM_NTASKS"])
    return None


def _launcher_hint() -> str:
    """The values that match torchrun's processes, which it announces per node (LOCAL_WORLD_SIZE)."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" not in env or "LOCAL_WORLD_SIZE" not in env or "WORLD_SIZE" not in env:
        return ""
    per_node, world = int(env["LOCAL_WORLD_SIZE"]), int(env["WORLD_SIZE"])
    if per_node < 1 or world % per_node:
        return ""
    return f" Here that is trainer.devices={per_node} trainer.num_nodes={world // per_node}."


def check_nodes(trainer: DictConfig, devices: int | None) -> None:
    """Processes started by torchrun or SLURM must be as many as nodes x devices; several nodes
    need such a launcher (Lightning starts the processes of one node only)."""
    num_nodes = trainer.get("num_nodes", 1) or 1
    world = launched_world_size(num_nodes)
    if world is None and num_nodes > 1:
        raise LitlabError(
            f"trainer.num_nodes={num_nodes} but this process was not started by torchrun or SLURM, so no other "
            f"node will join and the run would wait forever. Start one process per device on every node with "
            f"torchrun or srun (docs/scaling.md), or use trainer.num_nodes=1.")
    if world is not None and devices is not None and world != num_nodes * devices:
        raise LitlabError(
            f"trainer.num_nodes={num_nodes} x trainer.devices={devices} = {num_nodes * devices} process(es), "
            f"but the launcher started {world}. Make trainer.devices equal the processes per node "
            f"(torchrun --nproc-per-node, SLURM --ntasks-per-node) and trainer.num_nodes the node count."
            f"{_launcher_hint()}")


def check_trainer_config(trainer: DictConfig) -> None:
    """Types and values of the Trainer keys people change, and what this machine can run."""
    int_key(trainer, "max_epochs", -1, allow_none=True)
    int_key(trainer, "num_nodes", 1, allow_none=True)
    int_key(trainer, "log_every_n_steps", 1, allow_none=True)
    int_key(trainer, "check_val_every_n_epoch", 1, allow_none=True)
    if "accumulate_grad_batches" in trainer:
        int_key(trainer, "accumulate_grad_batches", 1)
    if "max_steps" in trainer:
        int_key(trainer, "max_steps", -1)
    if "min_epochs" in trainer:
        int_key(trainer, "min_epochs", 0, allow_none=True)
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0):
        # Lightning takes a negative value as "off", without a word
        raise LitlabError(f"trainer.gradient_clip_val must be a number >= 0 (0 or null: no clipping), got {clip!r}.")
    algorithm = trainer.get("gradient_clip_algorithm")
    if algorithm is not None and algorithm not in ("norm", "value"):
        raise LitlabError(f"trainer.gradient_clip_algorithm must be norm or value, got {algorithm!r}.")
    device = accelerator_of(trainer)
    check_precision(str(trainer.get("precision", 32)), device)
    devices = check_devices(trainer.get("devices", 1), device)
    check_strategy(trainer, device)
    check_nodes(trainer, devices)


def check_validation_runs(cfg: DictConfig) -> None:
    """What checkpointing and early stopping monitor is logged by this run (``monitor_checks``:
    ``val/acc_top5`` needs ``callbacks.eval_report`` with ``top_k=5``), and
    ``trainer.limit_val_batches=0`` runs no validation: early stopping on a validation metric
    then failed after the first epoch with Lightning's traceback, and the best checkpoint is never
    written (the test takes the last epoch's weights)."""
    check_monitored(cfg)
    limit = cfg.trainer.get("limit_val_batches")
    if limit is None or isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit != 0:
        return
    callbacks = cfg.get("callbacks") or {}
    stopping = callbacks.get("early_stopping") if isinstance(callbacks, DictConfig) else None
    if isinstance(stopping, DictConfig) and str(stopping.get("monitor", "")).startswith("val/"):
        raise LitlabError(
            f"callbacks.early_stopping watches {stopping.monitor}, but trainer.limit_val_batches=0 runs no "
            f"validation, so it would never get a value. Leave limit_val_batches out, or train without early "
            f"stopping (callbacks=default).")
    checkpoint = callbacks.get("model_checkpoint") if isinstance(callbacks, DictConfig) else None
    if isinstance(checkpoint, DictConfig) and str(checkpoint.get("monitor", "")).startswith("val/"):
        log.warning("trainer.limit_val_batches=0 runs no validation: no best checkpoint by %s is written, and the "
                    "test (and any compression) takes the last epoch's weights", checkpoint.monitor)
