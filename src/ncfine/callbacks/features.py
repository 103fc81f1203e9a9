"""One eval pass per split and epoch, shared by every analysis callback.

The extracted `Features` are gathered over DDP ranks, the duplicates that DistributedSampler pads
in are dropped by sample index, and rows are sorted by index, so every rank holds the same tensors
as a single-process run.
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Features:
    """Penultimate features of one split with their labels, sorted by sample index."""

    split: str
    h: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return self.h.shape[0]


def subset_indices(split_size: int, max_samples: int | None, seed: int = 0) -> torch.Tensor | None:
    """Sorted sample indices of a deterministic random subset of `max_samples` (None: the whole split)."""
    if max_samples is None or max_samples >= split_size:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(split_size, generator=generator)[:max_samples].sort().values


def subset_mask(index: torch.Tensor, split_size: int, max_samples: int | None, seed: int = 0) -> torch.Tensor:
    """Which of the sample indices `index` are in `subset_indices(split_size, max_samples, seed)`."""
    chosen = subset_indices(split_size, max_samples, seed)
    if chosen is None:
        return torch.ones_like(index, dtype=torch.bool)
    member = torch.zeros(split_size, dtype=torch.bool)
    member[chosen] = True
    return member.to(index.device)[index]


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
    return _gather_unique(local)


def _gather_unique(local: Features) -> Features:
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


class FeatureStore:
    """Per-trainer cache: the first callback that asks for (epoch, split, subset) extracts, the rest reuse.

    A subset (`max_samples`) is taken from the whole split's features when those are already
    there, else only the subset is run through the model. Holds only the current epoch's
    features, so memory does not grow over training.
    """

    _stores: "weakref.WeakKeyDictionary[object, FeatureStore]" = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._features: dict[tuple[str, int | None], Features] = {}

    @classmethod
    def of(cls, trainer) -> "FeatureStore":
        store = cls._stores.get(trainer)
        if store is None:
            store = cls._stores[trainer] = cls()
        return store

    def get(self, trainer, pl_module, split: str, max_samples: int | None = None) -> Features:
        epoch = trainer.current_epoch
        if epoch != self._epoch:
            self._epoch, self._features = epoch, {}
        datamodule = trainer.datamodule
        split_size = datamodule.split_size(split)
        indices = subset_indices(split_size, max_samples)
        key = (split, None if indices is None else len(indices))
        if key in self._features:
            return self._features[key]
        whole = self._features.get((split, None))
        if whole is not None:
            keep = subset_mask(whole.index, split_size, max_samples)
            feats = Features(split, whole.h[keep], whole.coarse[keep], whole.fine[keep], whole.index[keep])
        else:
            device = pl_module.device
            autocast_dtype = torch.bfloat16 if device.type == "cuda" and _bf16_precision(trainer) else None
            loader = datamodule.analysis_dataloader(split, indices=indices)
            feats = extract_features(pl_module, loader, device, split, autocast_dtype)
        self._features[key] = feats
        return feats


def _bf16_precision(trainer) -> bool:
    return "bf16" in str(getattr(trainer, "precision", ""))
