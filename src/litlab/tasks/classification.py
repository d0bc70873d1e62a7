"""The classification task: any net, cross-entropy, accuracy, optimizer and scheduler from config."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor, nn

from litlab.callbacks.checkpoints import data_position, resumes_within_epoch, taken_within_epoch
from litlab.callbacks.log_steps import is_logging_step, log_epoch_scalars, log_step_scalars, publish_epoch_means
from litlab.data.resumable_loader import start_at_checkpoint_position
from litlab.distributed.buffers import share_rank_zero_buffers
from litlab.errors import LitlabError
from litlab.tasks.batch_mixing import MixedBatch
from litlab.tasks.epoch_sums import EpochSums
from litlab.tasks.frozen_layers import FrozenLayers
from litlab.tasks.loss_weights import LossWeights
from litlab.tasks.optimizers import (PLATEAU_MONITOR, build_optimizer, check_decay_setting, check_fused_setting,
                                     check_optimizer_settings, on_plateau, stretch_cosine_schedule)
from litlab.tasks.schedules import LearningRateClock

log = logging.getLogger(__name__)

# attributes set on the module every training step (Lightning's ``_current_fx_name`` about 40
# times per step); they are plain values, so they skip nn.Module.__setattr__'s parameter, module
# and buffer checks
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "last_step_loss", "_micro_losses"})


# the checkpoint key of the training epoch's sums so far, in checkpoints taken within an epoch
_TRAIN_SUMS = "train_epoch_sums"


def check_label_smoothing(value) -> None:
    """``model.label_smoothing`` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise LitlabError(f"model.label_smoothing must be a number in [0, 1), got {value!r}.")


class Classifier(L.LightningModule):
    """Trains ``net`` to classify; logs ``{train,val,test}/loss`` and ``{train,val,test}/acc``.

    Args:
        net: the plain ``nn.Module`` (input batch -> logits ``(B, num_classes)``).
        optimizer: partial optimizer, finished here with the parameters (``model.optimizer``).
        scheduler: partial LR scheduler, or None (``model.scheduler``); its periods count epochs.
        label_smoothing: cross-entropy label smoothing for training (val/test loss is plain).
        num_classes: outputs of ``net``; taken from ``net.num_classes`` if not given (required otherwise).
        fused_optimizer: ``auto`` (fused optimizer kernels where torch has them), true or false
            (``model.fused_optimizer``; see ``litlab.tasks.optimizers``).
        scheduler_interval: ``epoch`` (the schedule steps once per epoch) or ``step`` (after every
            optimizer step; ``model.scheduler_interval``, see ``litlab.tasks.schedules``).
        warmup_epochs: epochs of linear learning-rate warm-up before the schedule (``model.warmup_epochs``).
        decay_biases_and_norms: false keeps weight decay off every parameter of fewer than 2
            dimensions (``model.decay_biases_and_norms``; see ``optimizers.parameter_groups``).
        mixing: mixes each training batch and gives its loss (``mixing=mixup``/``cutmix``, built by
            ``build.build_mixing``; see ``litlab.tasks.batch_mixing``), or None to train unmixed;
            ``train/loss`` is then the mixed loss and ``train/acc`` counts against the mixed targets.
        class_weights: weights of the training loss per class (``model.class_weights``): None, a list
            of ``num_classes`` positive numbers, or ``balanced``, computed from the training split's
            labels when fit starts (``litlab.tasks.loss_weights``); val/test loss stay unweighted.
        freeze: parameter-name prefixes of ``net`` not to train (``model.freeze``; see
            ``litlab.tasks.frozen_layers``): frozen here, before any wrapping; their modules run in eval mode.
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., object] | None = None, label_smoothing: float = 0.0,
                 num_classes: int | None = None, fused_optimizer: bool | str = "auto",
                 scheduler_interval: str = "epoch", warmup_epochs: float = 0.0,
                 decay_biases_and_norms: bool = False,
                 mixing: Callable[[Tensor, Tensor], MixedBatch] | None = None,
                 class_weights: list[float] | str | None = None, freeze: list[str] | str | None = None):
        super().__init__()
        check_label_smoothing(label_smoothing)
        if not callable(optimizer):
            raise LitlabError("model.optimizer must be a partial optimizer config (_partial_: true).")
        check_optimizer_settings(optimizer, scheduler)
        # steps the schedule by epochs or optimizer steps, with the warm-up in front of it
        self.lr_clock = LearningRateClock(scheduler_interval, warmup_epochs, scheduler)
        self.net = net
        self.frozen = FrozenLayers(net, freeze)  # before the trainer wraps or first runs the net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = float(label_smoothing)
        check_fused_setting(fused_optimizer)  # at build time, before any training
        self.fused_optimizer = fused_optimizer
        check_decay_setting(decay_biases_and_norms)
        self.decay_biases_and_norms = decay_biases_and_norms
        self.mixing = mixing
        self.num_classes = num_classes or getattr(net, "num_classes", None)
        if self.num_classes is None:
            raise LitlabError("Classifier needs num_classes (litlab passes it from the data).")
        self.loss_weights = LossWeights(class_weights, self.num_classes)
        # sums of the training epoch and of the validation or test epoch in progress (each made
        # anew at its epoch's start, on the module's device)
        self._train_sums = EpochSums()
        self._eval_sums = EpochSums()
        # the latest logged training loss, for the progress bar
        self.last_step_loss: float | None = None
        # the losses of an optimizer step's micro-batches so far; None without gradient accumulation
        # (set when training starts: the per-step check stays one attribute read)
        self._micro_losses: list[Tensor] | None = None
        # the training epoch's means, from its last batch until they are written at its end
        self._train_means: dict[str, Tensor] = {}
        # plain dicts saved in every checkpoint (config, data description): see litlab.training.run_record
        self.run_record: dict = {}
        # whether a validation ran since the plateau schedule last stepped (see lr_scheduler_step)
        self._validated = False

    def __setattr__(self, name: str, value) -> None:
        if name in _PLAIN_ATTRIBUTES:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def class_weights(self) -> list[float] | None:
        """The class weights the training loss applies (None: plain cross-entropy)."""
        return self.loss_weights.weights

    def setup(self, stage: str) -> None:
        """``model.class_weights=balanced``: counted from the training split when fit starts, the
        same on every rank; a resume then takes the checkpoint's (``on_load_checkpoint``)."""
        if stage == "fit":
            self.loss_weights.resolve(self.trainer.datamodule)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.mixing is None:
            logits = self.net(x)
            loss = F.cross_entropy(logits, y, weight=self.loss_weights.tensor(logits),
                                   label_smoothing=self.label_smoothing)
            self._train_sums.add(loss, logits, y)
        else:  # x is preprocessed and augmented here (on_after_batch_transfer): mixing comes after both
            mixed = self.mixing(x, y)
            logits = self.net(mixed.x)
            loss = mixed.loss(logits, self.label_smoothing, self.loss_weights.tensor(logits))
            self._train_sums.add(loss, logits, y, correct=mixed.correct(logits))
        step_loss = self._optimizer_step_loss(loss.detach())
        if step_loss is not None and is_logging_step(self.trainer):
            self.last_step_loss = log_step_scalars(self.trainer, {"train/loss_step": step_loss}).get("train/loss_step")
        if self._ends_epoch(batch_idx):
            self._log_train_epoch()
        return loss

    def _optimizer_step_loss(self, loss: Tensor) -> Tensor | None:
        """The loss of the optimizer step this batch ends, or None while gradients accumulate:
        with ``accumulate_grad_batches`` the mean of the step's micro-batches, one point per step
        (Lightning's logging step stays the same through them, and each was written at it)."""
        if self._micro_losses is None:
            return loss
        self._micro_losses.append(loss)
        if self.trainer.fit_loop.epoch_loop._should_accumulate():
            return None
        mean, self._micro_losses = torch.stack(self._micro_losses).mean(), []
        return mean

    _resumed_sums: dict | None = None
    """the training epoch's sums in the checkpoint being resumed, until training starts (on_load_checkpoint)"""

    def on_train_start(self) -> None:
        self._micro_losses = [] if self.trainer.accumulate_grad_batches > 1 else None
        saved, self._resumed_sums = self._resumed_sums, None
        # whether the loaders start within the epoch at the checkpoint's batch: EpochSeed gave a
        # loader built before the restore its position; here, after every callback's on_train_start,
        # this is the check that none of them took batches since (a repair only without EpochSeed)
        within = start_at_checkpoint_position(self.trainer)
        if within and saved is not None and saved.get("epoch") == self.trainer.current_epoch:
            # Lightning skips on_train_epoch_start when it resumes within an epoch: the epoch goes on
            # from the sums of the batches before the checkpoint, held by rank 0
            self._train_sums = EpochSums.restored(saved, self.device, self.trainer.is_global_zero)
        else:  # on the module's device (the sums made with the module are on the CPU)
            self._train_sums = EpochSums(self.device)
        if self.trainer.is_global_zero:  # once, after a resume's restore
            self.loss_weights.log_applied()
            if self.frozen.prefixes:
                log.info(self.frozen.describe())
        self.frozen.keep_eval()  # also where a resume within an epoch skips on_train_epoch_start

    def on_train_epoch_start(self) -> None:
        self._train_sums = EpochSums(self.device)
        self.frozen.keep_eval()

    def _log_train_epoch(self) -> None:
        """Epoch means of the training loss and accuracy over all ranks: visible to callbacks from
        the last batch on (validation, and with it checkpointing, runs before the epoch ends),
        written to the loggers at the epoch's end. Reduced here already, so not through
        ``self.log`` (see ``publish_epoch_means``)."""
        loss, acc = self._train_sums.means(self.trainer.strategy)
        self._train_means = {"train/loss": loss, "train/acc": acc}
        publish_epoch_means(self.trainer, self._train_means)

    def finish_train_epoch(self) -> None:
        """Publishes the epoch's training means where its last batch did not: a callback ended the
        epoch early (``max_time``, early stopping after a mid-epoch validation), and the record
        showed the epoch before's. Idempotent; a collective under DDP, so every rank calls it (the
        progress callback, which prints the epoch's line before this module's epoch end, does)."""
        if not self._train_means and self._train_sums.samples:
            self._log_train_epoch()

    def on_train_epoch_end(self) -> None:
        self.finish_train_epoch()
        if self._train_means:
            # Where the run stops before the epoch's end (trainer.max_steps, max_time, early stopping),
            # a resume trains the epoch's rest and writes its means over the whole epoch. These
            # partial means go where the run stopped, at the checkpoint's step (as its test results
            # do, logged at the same step), from which a resume in this folder drops what was
            # logged (metrics.csv, TensorBoard): one train/acc point per epoch.
            cut = resumes_within_epoch(self.trainer)
            log_epoch_scalars(self.trainer, self._train_means, step=self.trainer.global_step if cut else None)
            self._train_means = {}

    def _ends_epoch(self, batch_idx: int) -> bool:
        """Whether this is the epoch's last training batch (also where max_steps cuts it short)."""
        t = self.trainer
        return (t.is_last_batch or batch_idx + 1 >= t.num_training_batches
                or 0 < t.max_steps <= t.global_step + 1)

    def _start_eval_epoch(self) -> None:
        share_rank_zero_buffers(self.net, self.trainer.strategy)  # every rank evaluates rank 0's model
        self._eval_sums = EpochSums(self.device)

    def on_train_end(self) -> None:
        share_rank_zero_buffers(self.net, self.trainer.strategy)  # the ranks end with one model

    def _eval_step(self, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        logits = self.net(x)
        self._eval_sums.add(F.cross_entropy(logits, y), logits, y)

    def _log_eval_epoch(self, stage: str) -> None:
        """Loss and accuracy over every sample of the epoch on all ranks, logged once at its end."""
        loss, acc = self._eval_sums.means(self.trainer.strategy)
        # already the same on every rank; sync_dist only says so to Lightning
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", acc, prog_bar=stage == "val", sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._start_eval_epoch()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_epoch("val")
        if not self.trainer.sanity_checking:
            self._validated = True

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """A plateau schedule steps on a ``val/loss`` of a validation that ran since its last step.
        Lightning steps it at every epoch's end and, where validation runs by steps across epochs
        (``check_val_every_n_epoch=null``), an epoch without one stepped on the previous value
        again and lowered the rate after improving epochs. During a warm-up the schedule steps on its
        own rates, not the warmed ones (``LearningRateClock.scheduling``)."""
        with self.lr_clock.scheduling(self.trainer.global_step):
            if not on_plateau(scheduler):
                scheduler.step()
            elif self._validated:
                self._validated = False
                scheduler.step(metric)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Lightning's step; during a warm-up at the warmed rate, after which the groups hold the
        rate of the next step (what the learning-rate monitor logs and a checkpoint stores)."""
        clock = self.lr_clock
        step = self.trainer.global_step if clock.warmup_steps else None  # read only where a warm-up is on
        if step is None or not clock.warming(step):
            optimizer.step(closure=optimizer_closure)
            return
        clock.apply(step)
        optimizer.step(closure=optimizer_closure)
        clock.apply(step + 1)

    def configure_callbacks(self) -> list[L.Callback]:
        """The learning-rate clock: it starts with training, after a resume's restore, when the steps
        per epoch are known (``litlab.tasks.schedules``); its per-batch hooks are skipped. Not again
        where the trainer has it from fit already (the test after it): Lightning would say it
        replaces it."""
        attached = self._trainer is not None and any(c is self.lr_clock for c in self._trainer.callbacks)
        return [] if attached else [self.lr_clock]

    def on_test_epoch_start(self) -> None:
        self._start_eval_epoch()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net(x).softmax(dim=-1)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val:  # Lightning's checks of a clipping that is off cost ~6 us per step
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["litlab"] = self.run_record
        self.loss_weights.save(checkpoint)  # a resume trains on them
        # Taken within an epoch that a resume continues from the loader's position (marked by the
        # checkpoint callback, which runs first): without the epoch's sums so far, the resumed
        # epoch's train/loss and train/acc covered only the batches after the checkpoint. On every
        # rank (each takes each checkpoint of a fit, as the loader's random states need too).
        position = data_position(checkpoint)
        if taken_within_epoch(checkpoint) and position is not None:
            checkpoint[_TRAIN_SUMS] = {"epoch": position["epoch"], **self._train_sums.state(self.trainer.strategy)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_sums = checkpoint.get(_TRAIN_SUMS)  # taken at training start (on_train_start)
        self.loss_weights.restore(checkpoint, speaks=self._trainer is None or self.trainer.is_global_zero)
        old = stretch_cosine_schedule(checkpoint, self.scheduler_factory)
        if old is not None:
            log.info("resuming on a cosine schedule of %s epochs (the checkpoint's had %s)",
                     self.scheduler_factory.keywords["T_max"], old)

    def configure_optimizers(self):
        strategy = self._trainer.strategy if self._trainer is not None else None
        sharded = strategy is not None and "fsdp" in type(strategy).__name__.lower()
        optimizer = build_optimizer(self.optimizer_factory, self.parameters(), self.fused_optimizer, sharded=sharded,
                                    unscales=_unscales_gradients(self._trainer),
                                    decay_biases_and_norms=self.decay_biases_and_norms)
        if self.scheduler_factory is None:
            self.lr_clock.bind(optimizer, None)
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        self.lr_clock.bind(optimizer, scheduler)
        # the periods below count epochs under either model.scheduler_interval (step converts them
        # to optimizer steps when training starts: litlab.tasks.schedules)
        if getattr(scheduler, "T_max", None) == 0 and self._trainer is not None and self._trainer.max_epochs:
            raise LitlabError(  # torch divides by it at the first epoch's end
                f"model.scheduler.T_max=0 with trainer.max_epochs={self._trainer.max_epochs}: the cosine schedule "
                f"needs the number of epochs it decays over. Leave T_max at trainer.max_epochs (the default), or "
                f"set model.scheduler=null for a constant learning rate.")
        epochs = self._trainer.max_epochs if self._trainer is not None else None
        period = getattr(scheduler, "T_max", None)
        if (isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and isinstance(epochs, int)
                and 0 < period < epochs and self._trainer.is_global_zero):
            # torch's cosine is periodic: past T_max the rate climbs back up (T_max=2 over 4 epochs:
            # 0.003, 0.0015, 0.0, 0.0015), and an epoch at rate 0 trains nothing
            log.warning("model.scheduler.T_max=%s is shorter than trainer.max_epochs=%s: the cosine rate reaches its "
                        "minimum after epoch %s and then rises again. Leave T_max at trainer.max_epochs for one "
                        "decay over the run.", period, epochs, period)
        total = getattr(scheduler, "total_steps", None)  # OneCycleLR: a fixed number of steps, epochs in litlab
        if isinstance(total, int) and isinstance(epochs, int) and epochs > total:
            raise LitlabError(
                f"model.scheduler.total_steps={total} but trainer.max_epochs={epochs}: litlab counts this schedule's "
                f"steps in epochs (with model.scheduler_interval=step it takes total_steps epochs' optimizer steps), "
                f"so it would fail at epoch {total + 1}. Set model.scheduler.total_steps=${{trainer.max_epochs}}.")
        schedule = {"scheduler": scheduler, "interval": self.lr_clock.interval}
        if on_plateau(scheduler):  # stepped with val/loss at the end of each epoch that validated
            # every n-th epoch validates: Lightning skips the others (it would warn that val/loss is
            # missing before the first); by steps across epochs (null), lr_scheduler_step skips them
            every = getattr(self._trainer, "check_val_every_n_epoch", None) or 1
            schedule.update(monitor=PLATEAU_MONITOR, strict=False, frequency=every)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def _unscales_gradients(trainer: L.Trainer | None) -> bool:
    """Whether ``trainer``'s mixed precision unscales gradients before each optimizer step: with a
    loss scaler (16-mixed) or with gradient clipping (16-mixed or bf16-mixed)."""
    plugin = getattr(trainer, "precision_plugin", None)
    if not isinstance(plugin, MixedPrecision):
        return False
    return plugin.scaler is not None or bool(trainer.gradient_clip_val)


# Lightning reads a step method's signature on every batch (whether it takes ``batch_idx`` or
# ``dataloader_iter``; ``self.log`` also checks the training step's), ~5 µs per reading. A stored
# ``__signature__`` is what ``inspect`` returns without re-deriving it from the code object.
for _name in ("training_step", "validation_step", "test_step", "predict_step"):
    _step = vars(Classifier)[_name]
    _step.__signature__ = inspect.signature(_step)
del _name, _step
