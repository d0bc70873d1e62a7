"""A checkpoint's model with the class names and preprocessing of the data it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from litlab.build import build_model, check_stored_net
from litlab.checkpoint_files import check_fits, load_checkpoint
from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError


@dataclass
class Predictor:
    """Raw inputs in (uint8 images or float arrays, as the training data), logits out."""

    net: nn.Module
    """The trained net in eval mode, on ``device``."""
    preprocess: Preprocess
    """Normalization (and, for image files, size and channels) saved with the checkpoint."""
    input_shape: tuple[int, ...]
    """One sample as the model takes it: ``(C, H, W)`` or ``(L, F)``."""
    class_names: list[str]
    device: torch.device

    @torch.inference_mode()
    def logits(self, x: Tensor) -> Tensor:
        """``(N, *input_shape)`` raw samples -> ``(N, num_classes)`` float32 logits on the CPU."""
        x = self.preprocess(x.to(self.device), train=False)
        return self.net(x).float().cpu()


def pick_device(name: str) -> torch.device:
    """``device``: ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise LitlabError(f"device={name} is not a device; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LitlabError(f"device={name} but this machine has no CUDA GPU; use device=cpu or device=auto.")
    return device


def load_predictor(ckpt_path: str, device: torch.device) -> Predictor:
    """Rebuilds the net of ``ckpt_path`` (a checkpoint or a compressed-model file) and loads its weights."""
    ckpt = load_checkpoint(ckpt_path)
    check_stored_net(ckpt, ckpt_path)
    record = ckpt["litlab"]
    data = record.get("data") or {}
    missing = [k for k in ("input_shape", "class_names", "preprocess") if k not in data]
    if missing or "config" not in record:
        raise LitlabError(f"ckpt_path={ckpt_path} lacks the data description ({', '.join(missing) or 'config'}) that "
                          f"predict needs; it was written by an older litlab. Retrain, or use litlab.eval.")
    input_shape = tuple(int(v) for v in data["input_shape"])
    class_names = [str(c) for c in data["class_names"]]
    if str(ckpt.get("format", "")).startswith("litlab-compressed/"):  # a compressed model (litlab.compression)
        from litlab.compression.artifacts import load_net

        net = load_net(ckpt, Path(ckpt_path))
        if ckpt["compression"].get("cpu_only"):
            device = torch.device("cpu")  # int8 kernels run on the CPU only
    else:
        model = build_model(OmegaConf.create(record["config"]).model, input_shape, len(class_names))
        check_fits(model, ckpt["state_dict"], ckpt_path)
        model.load_state_dict(ckpt["state_dict"])
        net = model.net
    return Predictor(net.to(device).eval(), Preprocess.from_dict(data["preprocess"]), input_shape, class_names, device)
