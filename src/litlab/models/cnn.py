"""Small convolutional net: 2-D convolutions for images, 1-D for sequences."""

from __future__ import annotations

from torch import Tensor, nn

from litlab.errors import LitlabError, check_positive_int


def _block(conv: type[nn.Module], bn: type[nn.Module], pool: nn.Module | None, c_in: int, c_out: int) -> nn.Sequential:
    layers = [conv(c_in, c_out, kernel_size=3, padding=1, bias=False), bn(c_out), nn.ReLU(inplace=True)]
    if pool is not None:
        layers.append(pool)
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks (conv -> batch norm -> ReLU -> max pool while the size allows), global
    average pooling, then a small fully-connected head.

    Args:
        input_shape: ``(C, H, W)`` for images or ``(L, F)`` for sequences (F becomes channels).
        num_classes: outputs.
        channels: output channels of each conv block.
        hidden_size: width of the hidden head layer (0 for a linear head).
        dropout: dropout before the last layer.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels=(32, 64), hidden_size: int = 128,
                 dropout: float = 0.2):
        super().__init__()
        self.is_sequence = len(input_shape) == 2
        if self.is_sequence:
            length, c_in = input_shape
            sizes = [length]
            conv, bn, pool_t, gap = nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d(1)
        else:
            c_in, h, w = input_shape
            sizes = [min(h, w)]
            conv, bn, pool_t, gap = nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d(1)
        if not channels:
            raise LitlabError("model.net.channels is empty: the net would average each input channel over the whole "
                              "image before any convolution, leaving one number per channel to classify. Give one "
                              "or more conv blocks, e.g. model.net.channels=[32,64].")
        blocks, size = [], sizes[0]
        for c_out in channels:
            check_positive_int("model.net.channels (each)", c_out)
            pool = pool_t(2) if size >= 4 else None  # keep at least 2 positions for the next block
            blocks.append(_block(conv, bn, pool, c_in, c_out))
            size = size // 2 if pool is not None else size
            c_in = c_out
        self.features = nn.Sequential(*blocks, gap, nn.Flatten())
        head: list[nn.Module] = []
        if hidden_size:
            head += [nn.Linear(c_in, hidden_size), nn.ReLU(inplace=True)]
            c_in = hidden_size
        head += [nn.Dropout(dropout), nn.Linear(c_in, num_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        if self.is_sequence:
            x = x.transpose(1, 2)  # (B, L, F) -> (B, F, L): features are the conv channels
        return self.head(self.features(x))  # -> (B, num_classes)
