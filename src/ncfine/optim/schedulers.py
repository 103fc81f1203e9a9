"""Learning-rate schedules as factories that return a Lightning lr-scheduler config.

Each factory is `f(optimizer, *, max_epochs, steps_per_epoch, **options) -> {"scheduler": ..., "interval": ...}`
and is meant to be a Hydra partial (`_target_: ncfine.optim.schedulers.multistep`, `_partial_: true`);
`CoarseClassifier.configure_optimizers` supplies the optimizer, `max_epochs` (the trainer's) and
`steps_per_epoch` (optimizer steps per epoch, from `trainer.estimated_stepping_batches`).
Either may be None when the trainer runs without an epoch budget; schedules that need them say so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, MultiStepLR, OneCycleLR, SequentialLR

from ncfine.utils.errors import ConfigError

SchedulerConfig = dict[str, Any]


def _positive_int(value, what: str, schedule: str) -> int:
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"scheduler {schedule} needs {what} >= 1 (got {value!r}); set trainer.max_epochs to a positive number"
        )
    return value


def constant(
    optimizer: Optimizer, *, max_epochs: int | None = None, steps_per_epoch: int | None = None
) -> SchedulerConfig:
    """lr(t) = lr: the optimizer's learning rate throughout."""
    return {"scheduler": ConstantLR(optimizer, factor=1.0, total_iters=0), "interval": "epoch"}


def cosine(
    optimizer: Optimizer,
    *,
    max_epochs: int | None,
    steps_per_epoch: int | None,
    warmup_epochs: float = 0,
    warmup_start_factor: float = 0.01,
    eta_min: float = 0.0,
    interval: str = "step",
) -> SchedulerConfig:
    """Cosine annealing (Loshchilov & Hutter 2017) to `eta_min` over training, after an optional linear warmup:

    lr(t) = eta_min + (lr - eta_min) (1 + cos(pi (t - T_w) / (T - T_w))) / 2   for T_w <= t <= T,
    lr(t) rising linearly from warmup_start_factor * lr to lr over the first T_w = warmup_epochs epochs.
    t counts optimizer steps (interval="step", T = max_epochs * steps_per_epoch) or epochs (interval="epoch").
    """
    if interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler cosine: interval must be 'step' or 'epoch', got {interval!r}")
    epochs = _positive_int(max_epochs, "trainer.max_epochs", "cosine")
    per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch", "cosine") if interval == "step" else 1
    total = epochs * per_epoch
    if not (isinstance(warmup_epochs, (int, float)) and 0 <= warmup_epochs < epochs):
        raise ConfigError(f"scheduler cosine: warmup_epochs must be in [0, max_epochs={epochs}), got {warmup_epochs!r}")
    warmup = round(warmup_epochs * per_epoch)
    if warmup == 0:
        scheduler = CosineAnnealingLR(optimizer, T_max=total, eta_min=eta_min)
    else:
        scheduler = SequentialLR(
            optimizer,
            [
                LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup),
                CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=eta_min),
            ],
            milestones=[warmup],
        )
    return {"scheduler": scheduler, "interval": interval}


def multistep(
    optimizer: Optimizer,
    *,
    max_epochs: int | None,
    steps_per_epoch: int | None = None,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> SchedulerConfig:
    """ "Standard decay": lr(e) = lr * gamma^(number of milestones <= e), milestones given as fractions of
    max_epochs (the schedule of Papyan et al. 2020: divide by 10 at 1/3 and 2/3; here 1/2 and 3/4 by default)."""
    epochs = _positive_int(max_epochs, "trainer.max_epochs", "multistep")
    fractions = list(milestones)
    if not fractions or any(not isinstance(m, (int, float)) or not 0 < m < 1 for m in fractions):
        raise ConfigError(
            f"scheduler multistep: milestones are fractions of max_epochs in (0, 1), e.g. [0.5, 0.75]; got {fractions!r}"
        )
    if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
        raise ConfigError(f"scheduler multistep: gamma must be in (0, 1], got {gamma!r}")
    # Round half up (200 epochs -> 100, 150); at least epoch 1, since a milestone at 0 never fires.
    epoch_milestones = sorted(max(1, math.floor(m * epochs + 0.5)) for m in fractions)
    return {"scheduler": MultiStepLR(optimizer, milestones=epoch_milestones, gamma=gamma), "interval": "epoch"}


def onecycle(
    optimizer: Optimizer,
    *,
    max_epochs: int | None,
    steps_per_epoch: int | None,
    max_lr: float | None = None,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = False,
) -> SchedulerConfig:
    """One-cycle (Smith & Topin 2019), stepped every batch: lr rises from max_lr/div_factor to max_lr over
    pct_start of training, then anneals to max_lr/(div_factor*final_div_factor).

    max_lr defaults to each param group's configured lr (no silent rescaling). Momentum is left as
    configured unless cycle_momentum=True (then it cycles between 0.85 and 0.95, torch's default).
    """
    epochs = _positive_int(max_epochs, "trainer.max_epochs", "onecycle")
    per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch", "onecycle")
    if not 0 < pct_start < 1:
        raise ConfigError(f"scheduler onecycle: pct_start must be in (0, 1), got {pct_start!r}")
    total = epochs * per_epoch
    if total < 2:
        raise ConfigError(f"scheduler onecycle needs at least 2 optimizer steps, got {total}; use scheduler=constant")
    if pct_start * total <= 1:
        # torch divides by the warm-up length pct_start * total - 1: give it at least half a step (smoke runs).
        warnings.warn(
            f"scheduler onecycle: only {total} optimizer steps, too few for pct_start={pct_start}; "
            f"using pct_start={1.5 / total:.3g}",
            stacklevel=2,
        )
        pct_start = 1.5 / total
    peak = [group["lr"] for group in optimizer.param_groups] if max_lr is None else max_lr
    scheduler = OneCycleLR(
        optimizer,
        max_lr=peak,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
        cycle_momentum=cycle_momentum,
    )
    return {"scheduler": scheduler, "interval": "step"}


SCHEDULERS: dict[str, Callable[..., SchedulerConfig]] = {
    "constant": constant,
    "cosine": cosine,
    "multistep": multistep,
    "onecycle": onecycle,
}
