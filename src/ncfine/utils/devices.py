"""Where a Lightning module or datamodule will run, before the trainer has moved anything there."""

from __future__ import annotations

import torch


def trainer_root_device(trainer, default: torch.device) -> torch.device:
    """The attached trainer's root device, or `default` when there is no trainer or its strategy is
    not set up yet."""
    if trainer is not None:
        try:
            return torch.device(trainer.strategy.root_device)
        except Exception:  # noqa: BLE001 - a trainer that is not set up yet
            pass
    return default
