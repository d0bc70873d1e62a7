"""Learning-rate schedules stepped after every optimizer step, and a linear warm-up before any schedule.

A schedule's periods stay in epochs in the config (timm's convention), so ``T_max:
${trainer.max_epochs}`` means one decay over the run whether the schedule steps once per epoch
(``model.scheduler_interval=epoch``) or after every optimizer step (``step``). For ``step`` the
periods of torch's schedulers are converted to optimizer steps once, when training starts: only
then, after a resume's checkpoint is restored, does the run know its steps per epoch. Reading them
earlier (``trainer.estimated_stepping_batches`` in ``configure_optimizers``) builds the training
loader before the restore, which drops the loader's position (Lightning #20550): a mid-epoch resume
would restart its epoch. A converted schedule keeps its steps per epoch in its state, so a resume
continues it in steps and never converts twice; one whose epoch has another count is refused.

Warm-up (``model.warmup_epochs``) scales the rate by ``(step + 1) / warmup_steps`` over the first
optimizer steps. Between steps the optimizer's groups hold the rate the next step applies: what the
learning-rate monitor logs and a checkpoint stores. While the schedule steps, its own rate is put
back, so torch's chainable formulas (cosine's recursion, the plateau's reductions) never see a
warmed value. The factor depends on the global step alone, so a resume continues it exactly. Its
length in steps is counted in the run's steps per epoch when the run starts, and saved with
checkpoints: a resume keeps the checkpoint's length, so a run past its warm-up stays past it
whatever its epochs count now, and a resume within it whose epochs have another count is refused
(``check_same_warmup``): the warm-up would end at another point of the run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import lightning.pytorch as L
from torch.optim import lr_scheduler as torch_schedulers

from litlab.callbacks.group import skip_idle_step_hooks
from litlab.errors import LitlabError
from litlab.tasks.optimizers import STEPS_PER_EPOCH_KEY, built_class
from litlab.tasks.schedule_values import changes_per_step, check_scheduler_interval, check_warmup_epochs



def _times(key: str) -> Callable[[object, int], dict]:
    return lambda schedule, steps: {key: getattr(schedule, key) * steps}


# torch's schedules whose periods count epochs in the config, and those periods in optimizer steps
# (``steps`` per epoch), read from the built schedule so that defaults count too (LinearLR's
# total_iters=5); OneCycleLR's total_steps is also there when built from its epochs and steps_per_epoch
_IN_STEPS: dict[type, Callable[[object, int], dict]] = {
    torch_schedulers.CosineAnnealingLR: _times("T_max"),
    torch_schedulers.OneCycleLR: _times("total_steps"),
    torch_schedulers.StepLR: _times("step_size"),
    torch_schedulers.MultiStepLR: lambda s, steps: {"milestones": sorted(m * steps for m in s.milestones.elements())},
    torch_schedulers.LinearLR: _times("total_iters"),
    torch_schedulers.ConstantLR: _times("total_iters"),
    torch_schedulers.PolynomialLR: _times("total_iters"),
    torch_schedulers.ExponentialLR: lambda s, steps: {"gamma": s.gamma ** (1 / steps)},
    torch_schedulers.CosineAnnealingWarmRestarts: _times("T_0"),
}


def check_steppable(cls: type | None, interval: str) -> None:
    """Under ``step`` the schedule is one of torch's whose periods litlab converts to optimizer
    steps: for any other class it cannot know which arguments count epochs."""
    if interval != "step" or cls is None:
        return
    name = f"{cls.__module__}.{cls.__qualname__}"
    if issubclass(cls, torch_schedulers.ReduceLROnPlateau):
        raise LitlabError(f"model.scheduler._target_={name} cannot step with model.scheduler_interval=step: it steps "
                          f"on val/loss after each validation, not after optimizer steps. Leave "
                          f"model.scheduler_interval=epoch for it (model.warmup_epochs works with either).")
    if cls not in _IN_STEPS:
        known = ", ".join(c.__name__ for c in _IN_STEPS)
        raise LitlabError(f"model.scheduler._target_={name} cannot step with model.scheduler_interval=step: litlab "
                          f"converts the periods of torch's {known} from epochs to optimizer steps, and cannot tell "
                          f"which arguments of this one count epochs. Use one of those, or "
                          f"model.scheduler_interval=epoch to step it once per epoch.")


def check_schedule_settings(interval, warmup_epochs, scheduler_class: type | None = None) -> None:
    """``model.scheduler_interval``, ``model.warmup_epochs`` and whether the schedule's class can step
    by optimizer steps; before any data is prepared (``build.check_task_settings``) and when the
    task is built."""
    check_scheduler_interval(interval)
    check_warmup_epochs(warmup_epochs)
    check_steppable(scheduler_class, interval)


def optimizer_steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one training epoch: its batches over ``accumulate_grad_batches``, the
    last partial group stepping too (as Lightning does). Read when training starts, never before."""
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise LitlabError("model.scheduler_interval=step and model.warmup_epochs count epochs in optimizer steps, "
                          "but this training data has no length (an iterable loader). Use "
                          "model.scheduler_interval=epoch and model.warmup_epochs=0 with it.")
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


# the settings that fix how many optimizer steps an epoch has, each with the value it has when absent
# or null (Lightning's default; None: no default): the advice of a resume's refusals names them, and
# resume_settings.check_same_steps_per_epoch compares them before anything is written
EPOCH_STEP_SETTINGS = {"data.batch_size": None, "trainer.devices": "auto", "trainer.num_nodes": 1,
                       "trainer.accumulate_grad_batches": 1, "trainer.limit_train_batches": 1.0}


def other_epoch_steps(source: str, counted: int | None, other: str,
                      warmup: tuple[int, int] | None = None) -> LitlabError:
    """The refusal of a resume whose epochs would have ``other`` optimizer steps, where the
    checkpoint (``source``) counts ``counted`` per epoch (None: an older one does not say) in the
    periods of its schedule stepped per optimizer step, or, given ``warmup`` (its optimizer step,
    the warm-up's length), in the length of its warm-up. One wording for the check of the settings
    before anything is written (``resume_settings.check_same_steps_per_epoch``; ``other`` names them) and
    those of the counts when training starts (``check_same_steps_per_epoch``,
    ``check_same_warmup``), which also see another size of the data."""
    epochs = f"the run's epochs of {counted} optimizer steps" if counted else "the optimizer steps of the run's epochs"
    if warmup is None:
        holds, ends, past = (f"holds a learning-rate schedule stepped per optimizer step (model.scheduler_interval="
                             f"step), whose periods count {epochs}", "the schedule would end", "")
    else:
        holds, ends, past = (f"was taken at optimizer step {warmup[0]} of the run's learning-rate warm-up of "
                             f"{warmup[1]} steps (model.warmup_epochs), whose length counts {epochs}",
                             "the warm-up would end", " (from a checkpoint past the warm-up they may change)")
    keys = list(EPOCH_STEP_SETTINGS)
    return LitlabError(f"{source} {holds}; here an epoch would have {other}, so {ends} at another point of the "
                       f"run. Resume with the run's own {', '.join(keys[:-1])} and {keys[-1]}, on the same "
                       f"data{past}, or train a new run.")


def check_same_steps_per_epoch(stored: int, steps: int, source: str = "The checkpoint") -> None:
    """A schedule converted to optimizer steps resumes only where an epoch has as many steps as in
    the checkpoint (``source``): its periods were fixed in those steps, and a resume whose epoch had
    another count (another batch size, device count, accumulation, batch limit or data size) ended
    its cosine mid-run and climbed again. Refused rather than rescaled: the resumed run would follow
    neither curve exactly."""
    if stored != steps:
        raise other_epoch_steps(source, stored, f"{steps} optimizer steps")


# the warm-up's length in optimizer steps, in LearningRateClock's state in checkpoints (with
# STEPS_PER_EPOCH_KEY, the steps per epoch it was counted in): a resume whose epochs have another
# count is refused while the warm-up lasts (resume_settings.check_same_steps_per_epoch, check_same_warmup)
WARMUP_STEPS_KEY = "litlab_warmup_steps"


def check_same_warmup(stored: dict, step: int, steps: int, source: str = "The checkpoint") -> None:
    """A warm-up counts ``model.warmup_epochs`` in the optimizer steps of the run's epochs when the
    run starts, and a resume keeps that length (``LearningRateClock.warmup_length``), so within the
    warm-up a resume whose epoch has another count (another batch size, device count, accumulation,
    batch limit or data size) would end it at another point of the run than its warmup_epochs.
    Refused while the checkpoint's warm-up (``stored``, its saved state; ``source`` names the
    checkpoint) lasts at optimizer step ``step``; once over, another count (``steps`` per epoch here)
    changes nothing for it: the run stays past it."""
    length, counted = stored.get(WARMUP_STEPS_KEY), stored.get(STEPS_PER_EPOCH_KEY)
    if length is None or counted is None or step >= length or counted == steps:
        return
    raise other_epoch_steps(source, counted, f"{steps} optimizer steps", (step, length))


class LearningRateClock(L.Callback):
    """Steps the schedule by epochs or optimizer steps and puts the warm-up in front of it.

    The task calls ``bind`` when it builds the optimizer, ``apply`` around each optimizer step and
    ``scheduling`` around each step of the schedule; as a callback (returned by the task's
    ``configure_callbacks``) it starts when training does, after a resume's restore. Per epoch
    without warm-up (the default) it does nothing: Lightning steps the schedule.

    Args:
        interval: ``epoch`` or ``step`` (``model.scheduler_interval``).
        warmup_epochs: epochs of linear warm-up, 0 for none (``model.warmup_epochs``).
        factory: the partial schedule (``model.scheduler``), rebuilt with its periods in steps.
    """

    def __init__(self, interval: str = "epoch", warmup_epochs: float = 0.0, factory: Callable | None = None):
        check_schedule_settings(interval, warmup_epochs, built_class(factory) if factory is not None else None)
        self.interval, self.warmup_epochs, self.factory = interval, float(warmup_epochs), factory
        self.optimizer = self.scheduler = None
        # each group's rate as the schedule has it, without the warm-up factor
        self.rates: list = []
        # optimizer steps of warm-up, known when training starts (0: none), and the optimizer steps
        # per epoch they were counted in (a resume's: the checkpoint's)
        self.warmup_steps = self.steps_per_epoch = 0
        self.restored: dict = {}  # the checkpoint's state of a resumed warm-up (state_dict)
        skip_idle_step_hooks([self])  # it acts once per run: Lightning passes over its per-batch hooks

    @property
    def active(self) -> bool:
        """Whether the clock changes anything (the default, per-epoch without warm-up, is Lightning's own)."""
        return changes_per_step(self.interval, self.warmup_epochs)

    def bind(self, optimizer, scheduler) -> None:
        """The optimizer and the schedule built on it (None for a constant rate), before any restore."""
        if scheduler is not None:
            check_steppable(type(scheduler), self.interval)  # factories that are functions, not classes
            if self.warmup_epochs and not callable(getattr(scheduler, "get_last_lr", None)):
                raise LitlabError(f"model.warmup_epochs={self.warmup_epochs:g} needs a schedule that tells its rate "
                                  f"(get_last_lr(), as torch's have); {type(scheduler).__name__} does not. Set "
                                  f"model.warmup_epochs=0 or use a torch.optim.lr_scheduler class.")
        self.optimizer, self.scheduler = optimizer, scheduler
        self.rates = [group["lr"] for group in optimizer.param_groups]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a resume with the other interval was refused before any data was prepared
        # (resume_settings.check_same_optimization)
        if self.optimizer is None or not self.active:
            return
        steps = optimizer_steps_per_epoch(trainer)
        source = f"ckpt_path={trainer.ckpt_path}" if trainer.ckpt_path else "The checkpoint"
        if self.scheduler is not None:
            if self.interval == "step":
                stored = getattr(self.scheduler, STEPS_PER_EPOCH_KEY, None)
                if stored is None:
                    self._count_steps(steps)
                else:
                    check_same_steps_per_epoch(stored, steps, source)
            self.rates = list(self.scheduler.get_last_lr())
        check_same_warmup(self.restored, trainer.global_step, steps, source)
        self.warmup_steps, self.steps_per_epoch = self.warmup_length(steps)
        if self.warming(trainer.global_step):
            self.apply(trainer.global_step)

    def state_dict(self) -> dict:
        """The warm-up's length and the steps per epoch it counts, saved with checkpoints (nothing
        without a warm-up), for a resume's checks (``check_same_warmup``)."""
        if not self.warmup_steps:
            return {}
        return {WARMUP_STEPS_KEY: self.warmup_steps, STEPS_PER_EPOCH_KEY: self.steps_per_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = dict(state_dict)

    def warmup_length(self, steps: int) -> tuple[int, int]:
        """The warm-up's length in optimizer steps and the steps per epoch it counts: the
        checkpoint's on a resume, else ``model.warmup_epochs`` in this run's ``steps`` per epoch.
        Counted again on a resume, a run past its warm-up whose epochs now have more steps (a
        smaller ``data.batch_size``) went back into it, its rate dropping and climbing again. A
        checkpoint's length that ``model.warmup_epochs`` does not give in its steps per epoch was
        another warm-up setting, which this command changes: counted anew, as asked."""
        if not self.warmup_epochs:
            return 0, steps
        length, counted = self.restored.get(WARMUP_STEPS_KEY), self.restored.get(STEPS_PER_EPOCH_KEY)
        if isinstance(counted, int) and length == self._in_steps(counted):
            return length, counted
        return self._in_steps(steps), steps

    def _in_steps(self, steps: int) -> int:
        """``model.warmup_epochs`` in optimizer steps, at ``steps`` per epoch (one at least)."""
        return max(1, round(self.warmup_epochs * steps))

    def _count_steps(self, steps: int) -> None:
        """The schedule rebuilt from its config with its periods in optimizer steps, once per run: the
        converted schedule keeps ``steps`` in its state, which a resume restores."""
        in_steps = _IN_STEPS[type(self.scheduler)](self.scheduler, steps)
        self.scheduler.load_state_dict(self.factory(optimizer=self.optimizer, **in_steps).state_dict())
        setattr(self.scheduler, STEPS_PER_EPOCH_KEY, steps)  # in its state_dict: saved with checkpoints

    def factor(self, step: int) -> float:
        """The warm-up's factor at optimizer step ``step`` (0-based): a linear rise to 1."""
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    def warming(self, step: int) -> bool:
        """Whether optimizer step ``step`` is within the warm-up."""
        return step < self.warmup_steps

    def apply(self, step: int) -> None:
        """Sets each group's rate to the one optimizer step ``step`` applies: the schedule's, warmed."""
        factor = self.factor(step)
        for group, rate in zip(self.optimizer.param_groups, self.rates):
            group["lr"] = rate * factor

    @contextlib.contextmanager
    def scheduling(self, next_step: int) -> Iterator[None]:
        """Around a step of the schedule: it sees and updates its own rates, not warmed ones; then the
        groups hold the rate of optimizer step ``next_step``. From the warm-up's last step on, the
        groups hold the schedule's rates as they are."""
        if self.optimizer is None or not self.warming(next_step):
            yield
            return
        for group, rate in zip(self.optimizer.param_groups, self.rates):
            group["lr"] = rate
        yield
        self.rates = [group["lr"] for group in self.optimizer.param_groups]
        self.apply(next_step)
