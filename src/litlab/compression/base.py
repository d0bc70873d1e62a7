"""The interface every compression method implements; ``conf/compress/<name>.yaml`` builds one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from litlab.compression.finetune import FineTune
from litlab.compression.measure import Measure


@dataclass
class Context:
    """What a method may need besides the net and the data.

    Attributes:
        run_dir: the run directory (methods write nothing there themselves; ``run.py`` does).
        seed: the run's seed; fine-tuning is seeded with it.
        net_cfg: the run's ``model.net`` config as plain dicts (to build a net of the same kind).
        input_shape: one sample's shape.
        num_classes: outputs of the net.
        extra: facts a method adds to the report (e.g. the student trained alone).
    """

    run_dir: Path
    seed: int
    net_cfg: dict
    input_shape: tuple[int, ...]
    num_classes: int
    extra: dict = field(default_factory=dict)


class Compressor:
    """A compression method: ``check`` before training, ``apply`` after it.

    Subclasses set ``name`` and implement ``apply``; they override ``check``, ``reference``,
    ``recipe`` and ``rebuild`` when they need to. Adding a method is one subclass plus one YAML.

    Args:
        finetune: fine-tuning settings (``compress.finetune.*``), or None for methods that do not train.
        measure: latency measurement settings (``compress.measure.*``).
    """

    name = "compressor"
    #: int8 models run on the CPU only and are never trained further
    cpu_only = False

    def __init__(self, finetune: FineTune | None = None, measure: Measure | None = None):
        self.finetune = finetune
        self.measure = measure or Measure()

    def check(self, net: nn.Module, dm) -> None:
        """Raises a LitlabError naming the ``compress.*`` key when the method cannot apply to ``net``
        and this data. Called right after the model is built, before any training."""

    def settings(self) -> dict:
        """The method's settings for compression.json (plain values)."""
        return {}

    def reference(self, net: nn.Module, dm, ctx: Context) -> tuple[nn.Module, dict]:
        """The "before" net of the report and its net config: the trained net, or e.g. a teacher
        loaded from a file."""
        return net, ctx.net_cfg

    def stored_reference(self, net: nn.Module, record: dict) -> tuple[nn.Module, dict]:
        """The "before" net as ``compressed/dense.pt`` stores it, with the run record (normalization,
        classes) it answers to: the run's own, unless the reference came from elsewhere."""
        return net, record

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        """Returns the compressed net (a new module or ``net`` changed in place), fine-tuned if needed."""
        raise NotImplementedError

    def recipe(self, compressed: nn.Module, ctx: Context) -> dict:
        """Plain facts ``rebuild`` needs to recreate the compressed structure from a fresh net.

        ``recipe["net"]``, when given, replaces the run's ``model.net`` config for that fresh net.
        """
        return {}

    @classmethod
    def rebuild(cls, net: nn.Module, recipe: dict, example: Tensor) -> nn.Module:
        """Turns a freshly built float net into the compressed structure (weights loaded afterwards)."""
        return net


class Uncompressed(Compressor):
    """The float net as trained: how the "before" artifact is stored and rebuilt."""

    name = "none"

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        return net
