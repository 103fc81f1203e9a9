"""One eval pass over a split: `module.features(x)` for every batch, gathered over ranks."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ncfine.features.gather import gather_unique
from ncfine.features.record import Features


@torch.no_grad()
def extract_features(module, batches, device: torch.device, split: str, autocast_dtype=None) -> Features:
    """Run `module.features` over `batches` of (image, coarse, fine, index) in eval mode.

    Features stay on `device`, in float32 (bf16 autocast only for the forward pass).
    """
    was_training = module.training
    module.eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    hs, coarse, fine, index = [], [], [], []
    try:
        for image, c, f, i in batches:
            image = image.to(device, non_blocking=True)
            with autocast:
                hs.append(module.features(image).float())
            coarse.append(c.to(device))
            fine.append(f.to(device))
            index.append(i.to(device))
    finally:
        module.train(was_training)
    local = Features(split, torch.cat(hs), torch.cat(coarse).long(), torch.cat(fine).long(), torch.cat(index).long())
    return gather_unique(local)


def extraction_autocast(trainer, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the analysis pass: bf16 on CUDA under a bf16 precision, else none."""
    return precision_autocast(str(getattr(trainer, "precision", "")), device)


def precision_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The analysis pass's autocast for a training precision (e.g. a run dir's trainer.precision):
    bf16 on CUDA under a bf16 precision, else none."""
    return torch.bfloat16 if device.type == "cuda" and "bf16" in precision else None
