"""Weight averaging (``averaging=ema``, ``averaging=swa``): validation, checkpoints and everything
after training use an average of the weights, which usually generalizes better than the last ones.

Built on Lightning's ``WeightAveraging``, whose checkpoint layout it keeps: ``state_dict`` holds
the average (what eval, predict, compression and export load), ``current_model_state`` the live
weights and ``averaging_state`` the update count, from which a resume goes on. It changes what
that callback does in litlab's runs:

* nothing is swapped or copied before the first update: Lightning swapped the never-updated copy,
  the initial weights, into validation and checkpoints (SWA before its start epoch, EMA before its
  first step), so validation reported an untrained net and best.ckpt could hold it;
* the average is moved to the module's device when fitting starts (Lightning made it in ``setup``,
  before the module is moved to the GPU, and copied every weight to the CPU at each update) and
  kept in at least float32 (an EMA of bfloat16 weights rounds its small steps away);
* updates are ``_foreach`` kernels with the weight computed on the host from the update count, no
  host sync per step (``AveragedModel.update_parameters`` reads its device counter twice);
* SWA averages the weights at the last batch of each epoch, before that epoch's validation and
  checkpoint (Lightning's epoch-end update came after both, and after a run cut within an epoch
  it averaged the cut epoch's weights, which the uninterrupted run never does);
* under SWA, best.ckpt is chosen among validations of the average once there is one (Lightning
  kept a checkpoint of the weights from before the start whenever its score was higher, and that
  was tested and shipped), and early stopping's best and patience start over there as well; a run
  that stops before the start says so and keeps the trained weights;
* a fractional SWA start is resolved once: a resume with another ``trainer.max_epochs`` goes on
  averaging from the run's first averaged epoch;
* the average is copied over the trained weights when fitting ends, after the checkpoint callback's
  own train-end save (whose ``current_model_state`` must stay the live weights), and a test of
  best.ckpt after fit tests its ``state_dict`` (Lightning loaded ``current_model_state`` over it);
* an EMA decay that the warm-up never reaches in the run's optimizer steps is named when
  training starts: every decay above the last one the warm-up uses gives the same average, while
  the record says ``ema(decay=...)``. A warning where the decay was given (``averaging.decay=...``
  among the command's overrides, or the callback built in code), an info line for ema.yaml's
  default, which every default run would otherwise be warned about.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from litlab.averaging_checks import NOT_GIVEN, check_averaging_settings, check_averaging_strategy
from litlab.callbacks.checkpoints import _Checkpoints, epoch_finished
from litlab.callbacks.early_stopping import EarlyStopping
from litlab.resume_overrides import job_overrides
from litlab.run_commands import sets_key
from litlab.strategies import strategy_name

log = logging.getLogger(__name__)


def _tensors(module: nn.Module) -> list[Tensor]:
    """The parameters and buffers of ``module``, detached, in the order both copies share."""
    return [t.detach() for t in itertools.chain(module.parameters(), module.buffers())]


def _average_dtype(live: Tensor) -> torch.dtype:
    """Floating weights are averaged in at least float32: at decay 0.999 an EMA step moves a weight
    by 0.1 % of its distance to the live one, less than half a bfloat16 step, which rounds it away."""
    return torch.float32 if live.is_floating_point() and live.element_size() < 4 else live.dtype


class Averaging(WeightAveraging):
    """An average of the module's weights and buffers: an EMA after optimizer steps
    (``every="step"``) or SWA's equal-weight mean of epochs' last weights (``every="epoch"``).
    Build it with ``ema(...)`` or ``swa(...)`` (the ``_target_`` of ``conf/averaging/``).

    Args:
        every: ``step`` (EMA) or ``epoch`` (SWA).
        decay: the EMA's weight of the old average at each update.
        warmup: the EMA uses ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.
        update_every_n_steps: the EMA updates after every n-th optimizer step.
        start_epoch: SWA's first averaged epoch, or a fraction in (0, 1) of ``trainer.max_epochs``.
    """

    def __init__(self, every: str, decay: float = 0.999, warmup: bool = True, update_every_n_steps: int = 1,
                 start_epoch: int | float = 0):
        super().__init__(use_buffers=True)
        if every not in ("step", "epoch"):
            raise ValueError(f"every must be step (EMA) or epoch (SWA), got {every!r}")
        check_averaging_settings(decay=decay, warmup=warmup, update_every_n_steps=update_every_n_steps,
                                 start_epoch=start_epoch if every == "epoch" else NOT_GIVEN)
        self.every = every
        self.decay = float(decay)
        self.warmup = warmup
        self.update_every_n_steps = update_every_n_steps
        self.start_epoch = start_epoch
        # the first averaged epoch (0-based), once trainer.max_epochs is known (setup); a resume after
        # the first update keeps the run's own (load_state_dict), whatever its trainer.max_epochs
        self._first_epoch = start_epoch
        self._updates = 0
        """the average's update count, kept here (no step touches the device for it) and written to
        its ``n_averaged`` when a checkpoint is saved"""
        # SWA: whether best.ckpt's competition was restarted for the average (see on_validation_start)
        self._average_validated = False
        self._never_updated = False  # SWA whose start the run did not reach (set when fitting ends)
        self._pending: dict[str, Tensor] | None = None  # a resumed average, loaded once it is on its device
        self._held: list[Tensor] | None = None  # the live weights while the average is swapped in
        # (floating averages, their live tensors, integer averages, theirs) while fitting, and for 16-bit
        # live weights the float32 buffer they are copied into before each update (see on_fit_start)
        self._lists: tuple[list[Tensor], ...] | None = None
        self._cast_buffer: list[Tensor] | None = None
        self._fitting = False

    def describe(self) -> str:
        """What the run's weights are, for its record: ``ema(decay=0.999, warmup)``, ``swa(from epoch 16)``
        (1-based, as the epochs in the run's log), ``swa(start_epoch=15, never reached: trained weights)``."""
        if self.every == "step":
            every = f", every {self.update_every_n_steps} steps" if self.update_every_n_steps > 1 else ""
            return f"ema(decay={self.decay:g}{', warmup' if self.warmup else ''}{every})"
        if self._never_updated:
            return f"swa(start_epoch={self.start_epoch}, never reached: trained weights)"
        if isinstance(self._first_epoch, float):  # before setup: a fraction of trainer.max_epochs
            return f"swa(start_epoch={self._first_epoch})"
        return f"swa(from epoch {self._first_epoch + 1})"

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if self.every == "step":
            return step_idx is not None and step_idx % self.update_every_n_steps == 0
        return epoch_idx is not None and epoch_idx >= self._first_epoch

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # the live strategy, named as a trainer.strategy config with its class as _target_ would be
        strategy = type(trainer.strategy)
        check_averaging_strategy(strategy_name(DictConfig({"_target_": f"{strategy.__module__}.{strategy.__name__}"})))
        if self.every == "epoch" and isinstance(self.start_epoch, float):  # a fraction needs an epoch count
            # (debug=fdr's trainer has one epoch: 0.75 of it is epoch 0, averaged once). An epoch number
            # past the run's end is refused with the command line (config_check.check_overrides), not
            # here, where debug=fdr would refuse any but 0; a run that ends before it says so (on_fit_end)
            check_averaging_settings(start_epoch=self.start_epoch, max_epochs=trainer.max_epochs)
            self._first_epoch = int(self.start_epoch * trainer.max_epochs)  # as Lightning's swa_epoch_start
        if is_overridden("configure_model", pl_module):  # its layers exist only after it (as Lightning does)
            pl_module.configure_model()
        # a deep copy of the module, where it is now (the CPU: Lightning moves it later, see on_fit_start)
        self._average_model = AveragedModel(pl_module, use_buffers=True)
        self._updates, self._pending, self._held, self._fitting = 0, None, None, True
        self._latest_update_step, self._latest_update_epoch = 0, -1
        self._average_validated = self._never_updated = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is None:
            return
        average = self._average_model
        # the tensors themselves (not detached views), so that setting .data moves them
        for avg, live in zip(itertools.chain(average.module.parameters(), average.module.buffers()),
                             _tensors(pl_module), strict=True):
            avg.data = avg.data.to(device=live.device, dtype=_average_dtype(live))
        average.n_averaged.data = average.n_averaged.data.to(pl_module.device)
        if self._pending is not None:  # copied into the placed tensors: bit for bit what was saved
            average.load_state_dict(self._pending)
            self._pending = None
        # the tensor lists of every update, made once (a third of an update's time on a small net):
        # nothing replaces the module's tensors while it trains (they are updated in place)
        pairs = list(zip(_tensors(average.module), _tensors(pl_module), strict=True))
        floats = [(a, live) for a, live in pairs if a.is_floating_point()]
        counts = [(a, live) for a, live in pairs if not a.is_floating_point()]
        self._lists = ([a for a, _ in floats], [live for _, live in floats], [a for a, _ in counts],
                       [live for _, live in counts])
        # 16-bit weights, float32 average: lerp needs one dtype, so each update copies the live weights
        # into this buffer first (a cast per tensor allocated a float32 copy of the net at every step)
        cast = any(a.dtype != live.dtype for a, live in floats)
        self._cast_buffer = [torch.empty_like(a) for a, _ in floats] if cast else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting and trainer.is_global_zero:  # once, not once per DDP rank
            warning = self._unreached_decay(trainer.estimated_stepping_batches)
            if warning:  # a warning for a decay the user gave; ema.yaml's default 0.999 is only told
                given = job_overrides(OmegaConf.create())  # this command's overrides (None outside Hydra)
                told = given is None or any(sets_key(o, "averaging.decay") for o in given)
                log.log(logging.WARNING if told else logging.INFO, warning)

    def _unreached_decay(self, steps: float) -> str | None:
        """What to say where the warm-up keeps an EMA's ``decay`` from ever being used in a run of
        ``steps`` optimizer steps (``trainer.estimated_stepping_batches``; inf without an end): the
        update after ``n`` others uses ``min(decay, (1 + n) / (10 + n))``, so the last of ``U``
        updates uses at most ``U / (9 + U)``, and every decay above that gives the same average."""
        if self.every != "step" or not self.warmup or not math.isfinite(steps) or steps < 1:
            return None
        updates = math.ceil(int(steps) / self.update_every_n_steps)  # after steps 1, N + 1, 2N + 1, ...
        reached = updates / (9 + updates)
        if self.decay <= reached:
            return None
        needed = math.ceil((10 * self.decay - 1) / (1 - self.decay) - 1e-9) + 1  # (1+n)/(10+n) >= decay from n
        every = f" (one every {self.update_every_n_steps} steps)" if self.update_every_n_steps > 1 else ""
        return (f"averaging.decay={self.decay:g} is never reached: with the warm-up (averaging.warmup=true) the "
                f"update after n others uses the decay min(decay, (1+n)/(10+n)), and this run's {int(steps):,} "
                f"optimizer steps make {updates:,} updates{every}, the last of which uses {reached:.3f} "
                f"({self.decay:g} would take {needed:,} updates). Every averaging.decay of at least "
                f"{math.ceil(reached * 1e4) / 1e4:g} gives this run the same average, the one the warm-up makes. "
                f"Set a lower averaging.decay for a shorter average, or averaging.warmup=false to apply "
                f"{self.decay:g} from the first update (the average then starts at the first weights and moves "
                f"from them slowly).")

    @torch.no_grad()
    def _update(self, pl_module: L.LightningModule) -> None:
        """One update of the average with the module's weights (those ``on_fit_start`` listed), without
        a host sync: the first copies them, later ones ``lerp`` floating tensors toward them; integer
        buffers (batch-norm's ``num_batches_tracked``) are counters, copied."""
        assert self._average_model is not None and self._lists is not None
        averages, lives, counts, live_counts = self._lists
        if self._cast_buffer is not None:
            torch._foreach_copy_(self._cast_buffer, lives)
            lives = self._cast_buffer
        if self._updates == 0:
            torch._foreach_copy_(averages, lives)
        elif averages:
            torch._foreach_lerp_(averages, lives, self._step_weight())
        if counts:
            torch._foreach_copy_(counts, live_counts)
        self._updates += 1  # n_averaged: written when a checkpoint is saved (on_save_checkpoint)

    def _step_weight(self) -> float:
        """How far an update moves the average toward the live weights after ``n`` updates: 1 - the
        EMA's (warmed-up) decay, or SWA's 1 / (n + 1) (the mean of n + 1 weights)."""
        n = self._updates
        if self.every == "epoch":
            return 1.0 / (n + 1)
        return 1.0 - (min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # after the batch's optimizer step (a step also ends every epoch); for SWA at the epoch's
        # last batch, so that its validation and checkpoint see the average with this epoch in it
        if self.every == "step":
            if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
                self._update(pl_module)
                self._latest_update_step = trainer.global_step
        elif (trainer.current_epoch > self._latest_update_epoch and epoch_finished(trainer)
              and self.should_update(epoch_idx=trainer.current_epoch)):
            self._update(pl_module)
            self._latest_update_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: SWA updates at an epoch's last batch (``on_train_batch_end``)."""

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # swapped in until this callback's on_validation_end: validation's steps and the callbacks'
        # validation hooks up to on_validation_epoch_end see the average; the on_validation_end hooks
        # of the callbacks after this one (build_callbacks puts it first) see the live weights again,
        # the checkpoint callbacks' saves among them (on_save_checkpoint puts the average in state_dict)
        if self._fitting and self._updates > 0 and self._held is None:
            live = _tensors(pl_module)
            self._held = [t.clone() for t in live]
            torch._foreach_copy_(live, _tensors(self._average_model.module))
            if self.every == "epoch" and not self._average_validated and not trainer.sanity_checking:
                # SWA's first validation of the average: best.ckpt becomes this validation's checkpoint,
                # and only averages compete from now on (a best score of the live weights from before
                # the start, which the average rarely beats, kept a non-averaged best.ckpt to the end);
                # early stopping's best and patience start over the same way (its check of this
                # validation comes after this hook: on_validation_end or on_train_epoch_end). Only
                # litlab's own: a user's callback with a method of that name is not called unasked
                for callback in trainer.callbacks:
                    if isinstance(callback, (_Checkpoints, EarlyStopping)):
                        callback.restart_best()
                self._average_validated = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._held is not None:
            torch._foreach_copy_(_tensors(pl_module), self._held)
            self._held = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: the average is swapped in for the whole validation (``on_validation_start``)."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: the live weights come back at ``on_validation_end``."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing yet: the checkpoint callback may still save last.ckpt here (``on_fit_end`` copies)."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the test, compression and export after fit use the module in memory when there is no
        # best.ckpt; before any update the trained weights stay (no initial weights copied over them)
        if self._fitting and self._updates > 0:
            with torch.no_grad():
                torch._foreach_copy_(_tensors(pl_module), _tensors(self._average_model.module))
            if trainer.is_global_zero:  # once, not once per DDP rank
                log.info("weight averaging: the model holds the average of %d updates, %s", self._updates,
                         self.describe())
        elif self._fitting and self.every == "epoch":
            self._never_updated = True  # the run's record says so (describe)
            if trainer.is_global_zero:
                log.warning("averaging=swa never updated: start_epoch=%s (epoch %d) was not reached, the run "
                            "stopped before it (early stopping, trainer.max_steps, trainer.max_time or a stop); "
                            "the run's weights, best.ckpt's and the test's, are the trained ones. Give an earlier "
                            "averaging.start_epoch to average.", self.start_epoch, self._first_epoch + 1)
        # Lightning's teardown has moved the module to the CPU
        self._fitting, self._lists, self._cast_buffer = False, None, None

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step, "latest_update_epoch": self._latest_update_epoch,
                "first_epoch": self._first_epoch, "average_validated": self._average_validated,
                "averaging": self.describe()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._fitting:
            return  # a test of a checkpoint after fit
        self._latest_update_step = state_dict.get("latest_update_step", 0)
        self._latest_update_epoch = state_dict.get("latest_update_epoch", -1)
        self._average_validated = bool(state_dict.get("average_validated", False))
        if self.every == "epoch" and self._latest_update_epoch >= 0 and isinstance(state_dict.get("first_epoch"), int):
            # SWA under way: its first epoch stays the run's, also where a fraction of a resume's other
            # trainer.max_epochs (set up just before) is another epoch; before it, that one is the start
            self._first_epoch = state_dict["first_epoch"]

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        """``state_dict``: the average once it has an update (the live weights before);
        ``current_model_state``: the live weights; ``averaging_state``: the update count."""
        if not self._fitting or self._average_model is None:
            return
        self._average_model.n_averaged.fill_(self._updates)  # not kept up to date by the updates
        average = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        if self._updates > 0:
            checkpoint["state_dict"] = {k[len("module."):]: v for k, v in average.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in average.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        """A resume takes the live weights from ``current_model_state`` (Lightning has loaded the average
        from ``state_dict`` into the module) and the average, which is loaded once on its device. Outside
        fitting (``trainer.test(ckpt_path=...)`` after fit) the average in ``state_dict`` is what is
        tested: nothing is done."""
        if not self._fitting or trainer.state.fn != TrainerFn.FITTING:
            return
        if "current_model_state" not in checkpoint or "averaging_state" not in checkpoint:
            log.info("weight averaging: the checkpoint holds no average; it starts with the next update")
            return
        pl_module.load_state_dict(checkpoint["current_model_state"])
        self._pending = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()} | checkpoint["averaging_state"]
        self._updates = int(checkpoint["averaging_state"]["n_averaged"])


def ema(decay: float = 0.999, warmup: bool = True, update_every_n_steps: int = 1) -> Averaging:
    """``averaging=ema``: an exponential moving average after every ``update_every_n_steps``-th
    optimizer step, ``decay`` warmed up by ``warmup`` (see ``conf/averaging/ema.yaml``)."""
    return Averaging("step", decay=decay, warmup=warmup, update_every_n_steps=update_every_n_steps)


def swa(start_epoch: int | float = 0.75) -> Averaging:
    """``averaging=swa``: the mean of the weights at the end of each epoch from ``start_epoch`` on
    (see ``conf/averaging/swa.yaml``)."""
    return Averaging("epoch", start_epoch=start_epoch)
