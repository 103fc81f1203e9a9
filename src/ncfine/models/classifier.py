"""`CoarseClassifier`: a backbone h = f(x) and a linear head z = W h + b trained with cross-entropy on coarse labels.

This is the setting of Yang, Steinhardt & Hu (ICML 2023): train on coarse labels (e.g. CIFAR-10 with
two fine classes merged per superclass) and ask how much fine structure survives in h. The
analysis callbacks read `features(x)` (h) and `head` (W, b) for NC1-NC4 (Papyan, Han & Donoho 2020).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ncfine.models.backbone import check_backbone, create_backbone
from ncfine.optim.param_groups import build_param_groups, optimizer_keywords
from ncfine.utils.compute_path import channels_last_auto
from ncfine.utils.containers import plain_dict
from ncfine.utils.devices import trainer_root_device
from ncfine.utils.errors import ConfigError, DivergedError, first_line
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)
# Where a checkpoint records the (max_epochs, steps per epoch) its LR schedule was built for.
SCHEDULE_KEY = "ncfine_schedule_length"

LABEL_COLUMNS = {"coarse": 1, "fine": 2}  # position in the batch (image, coarse, fine, index)


class CoarseClassifier(pl.LightningModule):
    """Backbone + linear head, trained with cross-entropy on the batch's `label_level` column ("coarse").

    backbone, small_input, pretrained, in_chans, img_size, width, backbone_kwargs: see `create_backbone`.
    optimizer: a factory params -> Optimizer (Hydra `_partial_: true`, e.g. partial(torch.optim.SGD, lr=0.1,
        weight_decay=5e-4)). Its bound `weight_decay` keyword is read to build the parameter groups, which
        then carry it (norm/bias params get 0 when exclude_norm_bias_from_wd). None is allowed for a model
        only used for inference (e.g. reloaded with `load_from_checkpoint` for analysis); fitting then fails.
    scheduler: a factory from `ncfine.optim.schedulers` (optimizer, max_epochs=, steps_per_epoch=) -> Lightning
        scheduler config, or None for a constant lr.
    channels_last: keep conv weights and inputs in NHWC (faster convolutions on tensor-core GPUs and on
        CPUs with bf16 units): True, False, or "auto" = decided in `setup` from the trainer's device by
        `ncfine.utils.compute_path.channels_last_auto` (ncfine-train resolves it before, to log it).
    compile: compile the backbone with torch.compile (in place, so checkpoint keys do not change); a dict
        is passed to torch.compile as keyword arguments (e.g. {"mode": "max-autotune"}) and implies True.
    label_level: which label column to train on, "coarse" or "fine"; `train/acc`, `val/acc` refer to it.
    log_fine_upper: also log `val/fine_acc_upper` (= val accuracy), the fine accuracy of a model trained on
        the fine labels themselves (identity hierarchy), the upper bound for fine recovery.
    nan_check_every_n_steps: how often the device-side non-finite-loss flag is read on the host
        (also at the end of each epoch); a non-finite loss raises DivergedError.

    Logged (epoch-level only, to keep the training loop free of host syncs): train/loss, train/acc, train/lr,
    val/loss, val/acc, and val/fine_acc_upper when log_fine_upper. train/loss and train/acc are the means over
    the epoch's training samples (over all ranks under DDP); `training_step` only adds to device-side sums,
    which reach `self.log` every `nan_check_every_n_steps` steps and at the epoch's last step (see
    `_log_train_sums`): two `self.log` calls per step cost about 1.7 ms of Lightning's Python, 3% of a
    VGG-16-bn x 0.25 step on a 2-core CPU (benchmarks/README.md).
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., dict] | None = None,
        *,
        small_input: bool = True,
        pretrained: bool = False,
        in_chans: int = 3,
        img_size: int | tuple[int, int] | None = None,
        width: float = 1.0,
        backbone_kwargs: dict | None = None,
        exclude_norm_bias_from_wd: bool = True,
        channels_last: bool | str = False,
        compile: bool | dict = False,
        label_level: str = "coarse",
        log_fine_upper: bool = False,
        nan_check_every_n_steps: int = 50,
    ):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(
                f"num_classes must be an integer >= 2, got {num_classes!r} (with data.hierarchy, the number of "
                "coarse classes: map the fine classes to at least 2 coarse classes)"
            )
        _check_training_args(label_level, nan_check_every_n_steps)
        check_optimizer(optimizer)
        # Training on the fine labels is the upper bound itself: val/fine_acc_upper = val/acc.
        log_fine_upper = bool(log_fine_upper) or label_level == "fine"
        backbone_kwargs = plain_dict(backbone_kwargs, "backbone_kwargs (timm.create_model kwargs)")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

        self.backbone, self.feature_dim = create_backbone(
            backbone,
            small_input,
            pretrained=pretrained,
            in_chans=in_chans,
            img_size=img_size,
            width=width,
            **backbone_kwargs,
        )
        self.head = nn.Linear(self.feature_dim, num_classes)
        self._optimizer_factory = optimizer
        self._scheduler_factory = scheduler
        self._label_column = LABEL_COLUMNS[label_level]
        if channels_last not in (True, False, "auto"):
            raise ConfigError(f"channels_last must be true, false or auto, got {channels_last!r}")
        self._channels_last = channels_last
        # NHWC inputs in `penultimate`; "auto" is decided in `setup`, once the device is known.
        self._nhwc = channels_last is True
        if self._nhwc:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            # nn.Module.compile compiles in place: state_dict keys stay "backbone.*" (no "_orig_mod").
            self.backbone.compile(
                **plain_dict(compile if not isinstance(compile, bool) else None, "compile (torch.compile kwargs)")
            )

        # validate_args=False: the argument checks read tensors on the host every step.
        accuracy = dict(num_classes=num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(**accuracy)
        self.val_fine_acc_upper = MulticlassAccuracy(**accuracy) if log_fine_upper else None
        # True on the loss's device once a training loss was non-finite; read on the host only every few
        # steps. A plain attribute, not a buffer: DDP would overwrite every rank's buffers with rank 0's.
        self._nonfinite_loss: torch.Tensor | None = None
        # Training samples since the last `_log_train_sums`: (sum of losses, number correct) on the loss's
        # device, and their count on the host (a Python int, so counting never syncs).
        self._train_sums: torch.Tensor | None = None
        self._train_count = 0
        # (max_epochs, steps per epoch) the LR schedule was built for, and the one a resumed
        # checkpoint's schedule was built for (see on_train_start).
        self._schedule: list[int | None] | None = None
        self._resumed_schedule: list[int | None] | None = None

    @classmethod
    def check_args(
        cls,
        backbone: str,
        *,
        small_input: bool = True,
        pretrained: bool = False,
        in_chans: int = 3,
        width: float = 1.0,
        backbone_kwargs: dict | None = None,
        label_level: str = "coarse",
        nan_check_every_n_steps: int = 50,
        **_built_later,
    ) -> None:
        """The constructor's checks that build no model (a sweep's pre-flight runs them for every
        job, ncfine.sweep.preflight): label level, backbone name, width and its family's width rule."""
        _check_training_args(label_level, nan_check_every_n_steps)
        kwargs = plain_dict(backbone_kwargs, "backbone_kwargs (timm.create_model kwargs)")
        check_backbone(backbone, small_input, pretrained=pretrained, in_chans=in_chans, width=width, **kwargs)

    # ----------------------------------------------------------------------------------------- forward
    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features h (B, D) in the module's current mode, with gradients (training uses it)."""
        if x.ndim == 4 and self._nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features h (B, D) for analysis: eval mode (BatchNorm running statistics, no
        dropout), no gradients; the module's train/eval mode is put back afterwards."""
        was_training = self.training
        self.eval()
        try:
            return self.penultimate(x)
        finally:
            self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits z = W h + b (B, num_classes)."""
        return self.head(self.penultimate(x))

    # ---------------------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        image, target = batch[0], batch[self._label_column]
        logits = self(image)
        loss = F.cross_entropy(logits, target)
        detached = loss.detach()
        bad = ~torch.isfinite(detached)
        self._nonfinite_loss = bad if self._nonfinite_loss is None else self._nonfinite_loss | bad
        batch_size = target.shape[0]
        correct = (logits.detach().argmax(dim=1) == target).sum()
        sums = torch.stack((detached.float() * batch_size, correct.float()))
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        self._train_count += batch_size
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        trainer = self.trainer
        last_step = (
            batch_idx + 1 == trainer.num_training_batches
            or trainer.should_stop
            or 0 <= trainer.max_steps <= self.global_step
        )
        if last_step or (batch_idx + 1) % self.hparams.nan_check_every_n_steps == 0:
            self._raise_if_diverged()
            self._log_train_sums()

    def _log_train_sums(self) -> None:
        """Log the mean loss and accuracy of the samples since the last call, weighted by their count.

        Lightning's epoch value of a `self.log(..., on_epoch=True)` key is the batch_size-weighted mean of
        the logged values (with sync_dist, sum over ranks of value x batch_size over the sum of batch_size),
        so logging partial means a few times per epoch gives exactly the mean over the epoch's samples.
        """
        if not self._train_count:
            return
        mean_loss, accuracy = self._train_sums / self._train_count
        count, self._train_sums, self._train_count = self._train_count, None, 0
        self.log("train/loss", mean_loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=count)
        self.log("train/acc", accuracy, on_step=False, on_epoch=True, sync_dist=True, batch_size=count)

    def setup(self, stage: str) -> None:
        # channels_last="auto": convert here, before the strategy moves and wraps the model. DDP lays out its
        # gradient buckets by the parameters' strides when it is constructed; converting afterwards (e.g. in
        # on_fit_start) leaves every conv gradient mismatching its bucket view ("Grad strides do not match
        # bucket view strides"), an extra strided copy per parameter and step. `.to(device)` keeps the layout.
        if self._channels_last == "auto":
            self._nhwc = channels_last_auto(trainer_root_device(self._trainer, self.device).type)
            if self._nhwc:
                self.backbone.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_count = None, 0
        lr = self._current_lr()
        if lr is not None:  # the lr the epoch starts with (per-step schedules move it during the epoch)
            self.log("train/lr", float(lr), on_step=False, on_epoch=True, batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._raise_if_diverged()
        if self._train_count:  # on_train_batch_end did not know the epoch's last step in advance
            log.warning(
                f"train/loss and train/acc of epoch {self.current_epoch} leave out its last {self._train_count} "
                "training samples: the epoch ended at a step not known in advance (a training loader without a "
                "length, or a stop requested after the step, e.g. by a callback during validation)"
            )

    def _raise_if_diverged(self) -> None:
        """One host sync: raise DivergedError if any rank saw a non-finite loss since the last check."""
        # Every rank must join the reduction below, also one that has not trained a step yet.
        flag = torch.zeros((), device=self.device) if self._nonfinite_loss is None else self._nonfinite_loss.float()
        if self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="sum")
        if bool(flag > 0):
            lr = self._current_lr()
            raise DivergedError(
                f"non-finite training loss at epoch {self.current_epoch} (step {self.global_step}, lr {lr}); "
                "lower optimizer.lr or check the data",
                epoch=self.current_epoch,
            )

    def _current_lr(self) -> float | None:
        try:
            return self.trainer.optimizers[0].param_groups[0]["lr"]
        except (AttributeError, IndexError, RuntimeError):
            return None

    # -------------------------------------------------------------------------------------- validation
    def validation_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Also returns the batch's penultimate features {"features": h}, computed as `features(x)`
        computes them (eval mode, `penultimate`), for the analysis callbacks to reuse."""
        image, target = batch[0], batch[self._label_column]
        h = self.penultimate(image)
        logits = self.head(h)
        loss = F.cross_entropy(logits, target)
        batch_size = target.shape[0]
        self.val_acc.update(logits, target)
        self.log("val/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        if self.val_fine_acc_upper is not None:
            self.val_fine_acc_upper.update(logits, target)
            self.log("val/fine_acc_upper", self.val_fine_acc_upper, on_step=False, on_epoch=True, batch_size=batch_size)
        return {"features": h}

    # ------------------------------------------------------------------------------------ optimization
    def configure_optimizers(self):
        if self._optimizer_factory is None:
            raise ConfigError(
                "CoarseClassifier has no optimizer; pass optimizer=functools.partial(torch.optim.SGD, lr=..., ...)"
            )
        weight_decay = optimizer_keywords(self._optimizer_factory).get("weight_decay")
        groups = build_param_groups(self, weight_decay, exclude_norm_bias=self.hparams.exclude_norm_bias_from_wd)
        optimizer = self._optimizer_factory(groups)
        if self._scheduler_factory is None:
            return optimizer
        max_epochs, steps_per_epoch = self._schedule_length()
        self._schedule = [max_epochs, steps_per_epoch]
        scheduler = self._scheduler_factory(optimizer, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # ------------------------------------------------------------------------ extending a finished run
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._schedule is not None:
            checkpoint[SCHEDULE_KEY] = list(self._schedule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_schedule = checkpoint.get(SCHEDULE_KEY)

    def on_train_start(self) -> None:
        """A run resumed with another trainer.max_epochs (a finished run extended): rebuild the LR
        schedule for the new length and move it to the step the run reached.

        Lightning would restore the old schedule's state, length included, and step it past its
        end (a cosine turns back up on its own). Rebuilt, the remaining epochs follow the schedule
        a run planned for the new length has from this step on: a cosine that had annealed to
        eta_min rises to the new curve's value at this point (at 2 of 4 epochs, half the lr) and
        anneals to eta_min at the new end; a multistep schedule's milestones move with max_epochs.
        """
        resumed, current = self._resumed_schedule, self._schedule
        if (
            resumed is None
            or current is None
            or list(resumed) == list(current)
            or not self.trainer.lr_scheduler_configs
        ):
            return
        config = self.trainer.lr_scheduler_configs[0]
        steps_done = int(config.scheduler.last_epoch)  # the steps (or epochs) the old schedule took
        max_epochs, steps_per_epoch = current
        # From the configured lr (each group's `initial_lr`, kept in the checkpoint), not from the old
        # schedule's last value: torch's recursive cosine would scale that one (0 at its end).
        for group in config.scheduler.optimizer.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        fresh = self._scheduler_factory(
            config.scheduler.optimizer, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": intended here
            for _ in range(steps_done):
                fresh["scheduler"].step()
        config.scheduler = fresh["scheduler"]
        log.info(
            f"lr schedule rebuilt for trainer.max_epochs={max_epochs} (the checkpoint's was built for {resumed[0]}); "
            f"continuing at step {steps_done}, lr {self._current_lr()}"
        )

    def _schedule_length(self) -> tuple[int | None, int | None]:
        """(max_epochs, optimizer steps per epoch); None where the trainer has no epoch budget (max_epochs -1/None)."""
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            return None, None
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            return max_epochs, None
        # Round up: when trainer.max_steps ends training early, total need not be a multiple of max_epochs,
        # and a schedule shorter than the run breaks (OneCycleLR raises on the extra steps).
        return max_epochs, max(1, math.ceil(int(total) / max_epochs))


def _check_training_args(label_level: str, nan_check_every_n_steps: int) -> None:
    if label_level not in LABEL_COLUMNS:
        raise ConfigError(f"label_level must be one of {sorted(LABEL_COLUMNS)}, got {label_level!r}")
    if not isinstance(nan_check_every_n_steps, int) or nan_check_every_n_steps < 1:
        raise ConfigError(f"nan_check_every_n_steps must be a positive integer, got {nan_check_every_n_steps!r}")


def check_optimizer(optimizer: Callable | None) -> None:
    """One-line ConfigError for a non-positive lr or a negative weight_decay bound in the optimizer factory."""
    if optimizer is None:
        return
    if not callable(optimizer):
        raise ConfigError(
            f"optimizer must be a factory params -> torch.optim.Optimizer (Hydra _partial_: true), got {optimizer!r}"
        )
    keywords = optimizer_keywords(optimizer)
    lr, weight_decay = keywords.get("lr"), keywords.get("weight_decay")
    if lr is not None and not (_is_number(lr) and lr > 0):
        raise ConfigError(f"optimizer lr must be a positive number, got {lr!r}")
    if weight_decay is not None and not (_is_number(weight_decay) and weight_decay >= 0):
        raise ConfigError(f"optimizer weight_decay must be a number >= 0, got {weight_decay!r}")
    # The optimizer's own argument checks (momentum < 0, nesterov without momentum, betas outside [0, 1),
    # an unknown keyword) run here, on a dummy parameter, instead of after the Trainer has started.
    try:
        optimizer([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as exc:
        name = getattr(getattr(optimizer, "func", optimizer), "__name__", "optimizer")
        bound = ", ".join(f"{k}={v!r}" for k, v in keywords.items())
        raise ConfigError(f"optimizer {name}({bound}) is invalid: {first_line(exc)}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
