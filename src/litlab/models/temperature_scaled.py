"""A net whose logits are divided by a temperature (post-hoc calibration; see
``litlab.tuning.temperature_fit``)."""

from __future__ import annotations

from torch import Tensor, nn


class TemperatureScaled(nn.Module):
    """``net(x) / temperature``: the same class ranking, softer (T > 1) or sharper (T < 1)
    probabilities. Wrapping the net (rather than scaling inside a task or callback) means every
    consumer of ``pl_module.net`` -- the task's loss and accuracy, the evaluation report's forward
    hook (ECE, reliability diagram), predict's CSV -- sees the scaled logits."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.net = net
        self.temperature = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) / self.temperature  # (N, num_classes)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"
