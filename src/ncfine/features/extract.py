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
    """The autocast dtype of the analysis pass for the trainer's precision (`precision_autocast`)."""
    return precision_autocast(str(getattr(trainer, "precision", "")), device)


# Devices whose bf16 runs also extract their analysis features under bf16 autocast. On the CPU this
# was measured, not assumed (benchmarks/bf16_analysis.py, benchmarks/README.md): against a float32
# forward of the same weights, bf16 moved NC1 by at most 0.4% and per-superclass k-means recovery by
# at most 0.4 points, on early (3 epochs) and collapsed (train NC1 0.07-0.13) ResNet-18, VGG-16-bn
# and resnet10t, within the 2% / 0.5-point bounds (global k-means: up to 2.2 points, where another
# k-means seed on the same float32 features moves it up to 9.6). The analysis then reuses
# validation's features (same autocast) instead of a second, float32 pass of the test split.
BF16_ANALYSIS_DEVICES = ("cuda", "cpu")


def precision_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The analysis pass's autocast for a training precision (e.g. a run dir's trainer.precision):
    bf16 under a bf16 precision on `BF16_ANALYSIS_DEVICES`, else none (float32). The features are
    float32 either way and the metrics float64."""
    return torch.bfloat16 if device.type in BF16_ANALYSIS_DEVICES and "bf16" in precision else None
