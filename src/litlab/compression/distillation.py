"""Knowledge distillation: a smaller student net learns from the trained (or a saved) teacher."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn

from litlab.build import check_runs
from litlab.checkpoint_files import load_checkpoint
from litlab.compression.artifacts import build_net
from litlab.compression.base import Compressor, Context
from litlab.compression.finetune import FineTune, class_weight_tensor, train_loop
from litlab.compression.measure import evaluate
from litlab.data.preprocess import Normalize, Preprocess
from litlab.errors import LitlabError, check_fraction


def partial_config(make: functools.partial) -> dict:
    """The ``_partial_`` config that built ``make`` (to store with the student's weights)."""
    plain = {k: OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v
             for k, v in make.keywords.items()}
    return {"_target_": f"{make.func.__module__}.{make.func.__qualname__}", "_partial_": True, **plain}


def distill_loss(teacher: nn.Module, alpha: float, temperature: float, weight: Tensor | None = None):
    """``alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T)`` with T-softened logits; the
    hard-label CE weighted per class by ``weight`` (``(K,)``, ``compress.finetune.class_weights``),
    the teacher's soft targets unweighted."""

    def loss(student: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = student(x)
        with torch.no_grad():
            soft = F.log_softmax(teacher(x) / temperature, dim=1)  # (B, K)
        kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean", log_target=True)
        # T^2 keeps the soft-target gradients on the scale of the hard-label ones
        return alpha * F.cross_entropy(logits, y, weight=weight) + (1 - alpha) * temperature ** 2 * kl

    return loss



class RenormalizedTeacher(nn.Module):
    """A saved teacher fed this run's batches: they come normalized with this run's statistics
    (``run``: mean, std), which it maps to the teacher's own (``own``) before the teacher sees
    them, ``x * run_std / own_std + (run_mean - own_mean) / own_std``, per channel or feature."""

    def __init__(self, net: nn.Module, kind: str, run: tuple[list, list], own: tuple[list, list]):
        super().__init__()
        self.net = net
        # the statistics shaped to broadcast over a batch, as the run's normalization holds them
        ran, trained = Normalize(kind, *run), Normalize(kind, *own)
        self.register_buffer("scale", ran.std / trained.std)
        self.register_buffer("shift", (ran.mean - trained.mean) / trained.std)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * self.scale + self.shift)

class Distill(Compressor):
    """Trains ``student`` on the training split with the teacher's softened outputs.

    Args:
        student: partial net builder like ``model.net`` (``compress.student``).
        teacher_ckpt: a litlab checkpoint of the teacher, or None for the net just trained
            (``compress.teacher_ckpt``).
        alpha: weight of the hard-label loss (``compress.alpha``), in [0, 1).
        temperature: softening temperature T (``compress.temperature``).
        baseline: also train the same student alone (same init, batches, epochs, optimizer and LR
            schedule) and report both accuracies (``extra`` in compression.json).
        finetune: the student's training settings.
    """

    name = "distill"

    def __init__(self, student: functools.partial, teacher_ckpt: str | None = None, alpha: float = 0.3,
                 temperature: float = 4.0, baseline: bool = True, finetune: FineTune | None = None, **kwargs):
        super().__init__(finetune=finetune or FineTune(epochs=20, lr=3e-3), **kwargs)
        if not isinstance(student, functools.partial):
            raise LitlabError("compress.student must be a partial net config (_partial_: true) like model.net.")
        self.student = student
        self.teacher_ckpt = teacher_ckpt
        self.alpha = check_fraction("compress.alpha", alpha)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise LitlabError(f"compress.temperature must be a positive number, got {temperature!r}.")
        self.temperature = float(temperature)
        self.baseline = bool(baseline)

    def settings(self) -> dict:
        return {"student": partial_config(self.student), "teacher_ckpt": self.teacher_ckpt, "alpha": self.alpha,
                "temperature": self.temperature, **vars(self.finetune)}

    def _teacher_from_file(self, dm) -> tuple[nn.Module, dict]:
        """The saved teacher, checked against this data, behind this run's normalization
        (``RenormalizedTeacher``) where its own differs."""
        key = "compress.teacher_ckpt"
        ckpt = load_checkpoint(self.teacher_ckpt, key=key, compressed_ok=False)
        data = ckpt["litlab"].get("data", {})
        if list(data.get("input_shape", [])) != list(dm.input_shape) or data.get("num_classes") != dm.num_classes:
            raise LitlabError(
                f"{key}={self.teacher_ckpt} was trained on inputs {data.get('input_shape')} with "
                f"{data.get('num_classes')} classes; this data gives {list(dm.input_shape)} and {dm.num_classes}. "
                f"Use a teacher trained on the same data.")
        theirs = [str(c) for c in data.get("class_names", dm.class_names)]
        if theirs != [str(c) for c in dm.class_names]:
            raise LitlabError(
                f"{key}={self.teacher_ckpt} was trained on the classes {', '.join(theirs[:12])} and this data has "
                f"{', '.join(map(str, dm.class_names[:12]))}: its answers would teach other classes. Use a teacher "
                f"trained on the same data.")
        own = Preprocess.from_dict(data["preprocess"]) if "preprocess" in data else None
        run = dm.preprocess
        if own is not None and None not in (own.pixels, run.pixels) and own.pixels != run.pixels:
            scale = {True: "8-bit pixels", False: "values used as they are"}
            raise LitlabError(
                f"{key}={self.teacher_ckpt} was trained on {scale[own.pixels]} and this data gives "
                f"{scale[run.pixels]}: it was trained on other data. Use a teacher trained on the same data.")
        self._teacher_record = ckpt["litlab"]
        net_cfg = ckpt["litlab"]["config"]["model"]["net"]
        teacher = build_net(net_cfg, dm.input_shape, dm.num_classes)
        state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        try:
            teacher.load_state_dict(state)
        except RuntimeError as e:
            raise LitlabError(f"{key}={self.teacher_ckpt}: its weights do not fit its own model config "
                              f"({str(e).splitlines()[0][:160]}).") from None
        if own is not None and (own.mean, own.std) != (run.mean, run.std):
            teacher = RenormalizedTeacher(teacher, run.kind, (run.mean, run.std), (own.mean, own.std))
        return teacher.eval(), net_cfg

    def stored_reference(self, net: nn.Module, record: dict) -> tuple[nn.Module, dict]:
        if self.teacher_ckpt is None:
            return net, record
        # the teacher as it was trained: its own net and record (normalization), which eval reads
        return (net.net if isinstance(net, RenormalizedTeacher) else net), self._teacher_record

    def check(self, net: nn.Module, dm) -> None:
        if self.teacher_ckpt is not None:
            if not Path(str(self.teacher_ckpt)).exists():  # a folder gets load_checkpoint's message
                raise LitlabError(f"compress.teacher_ckpt={self.teacher_ckpt} does not exist. Give a litlab "
                                  f"checkpoint (outputs/runs/<run>/checkpoints/best.ckpt) or leave it null to "
                                  f"distill the model this run trains.")
            self._teacher_from_file(dm)
        try:
            student = self.student(input_shape=tuple(dm.input_shape), num_classes=dm.num_classes)
        except LitlabError:
            raise
        except Exception as e:
            raise LitlabError(f"compress.student could not be built: {type(e).__name__}: {e}. "
                              f"Check the compress.student.* keys.") from None
        check_runs(student, tuple(dm.input_shape), "compress.student")  # before training, not after it

    def reference(self, net: nn.Module, dm, ctx: Context) -> tuple[nn.Module, dict]:
        return self._teacher_from_file(dm) if self.teacher_ckpt is not None else (net, ctx.net_cfg)

    def _new_student(self, ctx: Context) -> nn.Module:
        torch.manual_seed(ctx.seed)  # the distilled and the lone student start from the same weights
        return self.student(input_shape=ctx.input_shape, num_classes=ctx.num_classes)

    def apply(self, net: nn.Module, dm, ctx: Context) -> nn.Module:
        # the teacher answers in eval mode (no dropout, batch-norm running statistics) on exactly the
        # batch the student sees; it draws no random numbers, so both students get the same batches
        teacher = net.eval().requires_grad_(False)
        if self.baseline:
            alone = train_loop(self._new_student(ctx), dm, self.finetune, ctx.seed)
            ctx.extra["student_alone_test_acc"] = evaluate(alone, dm)["acc"]
        loss = distill_loss(teacher, self.alpha, self.temperature, class_weight_tensor(self.finetune, dm))
        student = train_loop(self._new_student(ctx), dm, self.finetune, ctx.seed, loss_fn=loss)
        if self.baseline:
            ctx.extra["student_distilled_test_acc"] = evaluate(student, dm)["acc"]
            ctx.extra["distill_gain"] = ctx.extra["student_distilled_test_acc"] - ctx.extra["student_alone_test_acc"]
        return student

    def recipe(self, compressed: nn.Module, ctx: Context) -> dict:
        return {"net": partial_config(self.student)}
