"""torchvision classification models, adapted to any channel count and small images."""

from __future__ import annotations

import re

import torchvision
from torch import Tensor, nn

from litlab.errors import LitlabError, check_positive_int


def _image_only(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3:
        raise LitlabError(
            f"model {name} is a torchvision image model; the data gives sequences of shape {tuple(input_shape)} "
            f"(L, F). Use model=mlp, cnn, lstm or gru for sequences."
        )


def _no_pretrained(name: str, weights, pretrained) -> None:
    """torchvision's own ``weights``/``pretrained`` keys, which users try first, refused in one paragraph."""
    for key, value in (("weights", weights), ("pretrained", pretrained)):
        if value not in (None, False):
            raise LitlabError(
                f"model.net.{key}={value}: litlab trains {name} from random weights; it neither downloads pretrained "
                f"weights (nothing is fetched at run time) nor loads them from a file. Leave model.net.{key} out.")


def resnet18_small(input_shape: tuple[int, ...], num_classes: int, weights=None, pretrained=None) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max pool, so 8x8 to 32x32
    images keep enough resolution through the four stages; random init (no downloads)."""
    _no_pretrained("resnet18", weights, pretrained)
    _image_only("resnet18", input_shape)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class TorchvisionNet(nn.Module):
    """Any torchvision classification model by name (random init).

    Inputs with other than 3 channels go through a learned 1x1 convolution to 3 channels;
    inputs smaller than ``min_size`` are upsampled bilinearly first.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: outputs.
        name: a model name from ``torchvision.models.list_models(torchvision.models)``.
        min_size: smallest spatial size fed to the model.
        bn_momentum: the momentum of every batch-norm layer's running statistics, or None to keep
            torchvision's. MobileNetV3 and EfficientNet set 0.01, made for ImageNet's hundreds of
            thousands of steps: over a short run from scratch their statistics lag far behind the
            weights, and evaluation is at chance (mobilenet_v3_small on digits: test/acc 0.10 after
            5 epochs with 0.01, 0.96 with PyTorch's default 0.1).
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, name: str = "resnet18", min_size: int = 32,
                 bn_momentum: float | None = 0.1, weights=None, pretrained=None):
        super().__init__()
        _no_pretrained(name, weights, pretrained)
        _image_only(name, input_shape)
        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise LitlabError(
                f"model.net.name={name!r} is not a torchvision classification model. Available: {', '.join(available)}."
            )
        self.adapt = nn.Identity() if input_shape[0] == 3 else nn.Conv2d(input_shape[0], 3, kernel_size=1)
        self.min_size = check_positive_int("model.net.min_size", min_size)
        # the size small inputs are upsampled to, fixed by the input shape (plain ints, so that
        # tracing for TorchScript or ONNX export records constants, not arithmetic on shapes)
        h, w = input_shape[1:]
        scale = min_size / min(h, w)
        self.upsample_to = (round(h * scale), round(w * scale)) if min(h, w) < min_size else None
        kwargs = {"aux_logits": False, "init_weights": True} if name in ("inception_v3", "googlenet") else {}
        self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        if bn_momentum is not None:
            if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) or not 0 < bn_momentum <= 1:
                raise LitlabError(f"model.net.bn_momentum must be a number in (0, 1] or null, got {bn_momentum!r}.")
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = float(bn_momentum)
        self.name = name

    def unrunnable(self, error: Exception, input_shape: tuple[int, ...]) -> str:
        """What ``litlab.build.check_runs`` says when a sample of ``input_shape`` does not go
        through: several torchvision nets need larger images than ``min_size`` gives them."""
        size = self.upsample_to or tuple(input_shape[1:])
        fixed = re.search(r"Expected (\d+) but got", str(error))  # ViTs take one size only
        if fixed:
            side = fixed.group(1)
            return (f"model.net.name={self.name} takes {side}x{side} images only and would get {size[0]}x{size[1]} "
                    f"({type(error).__name__}: {str(error).splitlines()[0][:160]}). Give it square images: "
                    f"data.image_size={side} for an image folder, data.shape=[C,{side},{side}] for synthetic images, or "
                    f"model.net.min_size={side} for square images smaller than that; or pick another net.")
        return (f"model.net.name={self.name} cannot take {size[0]}x{size[1]} images ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:160]}). Raise model.net.min_size (the size smaller inputs are upsampled "
                f"to; ViTs and MaxViT need 224, Inception 75, AlexNet 63) or pick another net.")

    def forward(self, x: Tensor) -> Tensor:
        x = self.adapt(x)
        if self.upsample_to is not None:
            x = nn.functional.interpolate(x, size=self.upsample_to, mode="bilinear", align_corners=False)
        return self.net(x)
