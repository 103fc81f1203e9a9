"""Features gathered over DDP ranks, with the duplicates DistributedSampler pads in dropped.

After `gather_unique` every rank holds the same rows, one per sample index and sorted by it: what a
single-process run computes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ncfine.features.record import Features


def gather_unique(local: Features) -> Features:
    """All-gather over ranks, then keep one row per sample index, sorted by index."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [_all_gather_variable(t) for t in (local.h, local.coarse, local.fine, local.index)]
        h, coarse, fine, index = parts
    else:
        h, coarse, fine, index = local.h, local.coarse, local.fine, local.index
    order = torch.argsort(index, stable=True)
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    order = order[keep]
    return Features(local.split, h[order], coarse[order], fine[order], index[keep])


def _all_gather_variable(tensor: torch.Tensor) -> torch.Tensor:
    """all_gather for tensors whose first dimension may differ between ranks."""
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)])
