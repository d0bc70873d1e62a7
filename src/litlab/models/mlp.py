"""Multi-layer perceptron over flattened inputs."""

from __future__ import annotations

import math

from torch import Tensor, nn

from litlab.errors import check_positive_int


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU -> Dropout] * len(hidden_sizes) -> Linear.

    Args:
        input_shape: shape of one sample; any rank, flattened.
        num_classes: outputs.
        hidden_sizes: width of each hidden layer.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden_sizes=(256, 128), dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden_sizes:
            check_positive_int("model.net.hidden_sizes (each)", h)
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, ...) -> (B, num_classes)
