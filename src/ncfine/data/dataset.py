"""A map-style dataset yielding the batch contract `(image, coarse, fine, index)`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from ncfine.data.hierarchy import LabelHierarchy
from ncfine.utils.errors import DataError


class HierarchicalDataset(Dataset):
    """Samples `(image, coarse, fine, index)` of one in-memory split.

    Args:
        inputs: uint8 images (N, C, H, W) or float features (N, D).
        fine: int fine labels (N,).
        hierarchy: maps fine -> coarse; coarse = hierarchy.coarse_of(fine).
        transform: applied to each input (e.g. `ImageTransform`); without one, uint8 images come
            back as float in [0, 1] and features unchanged.

    `index` is the sample's position in the split: analysis uses it to drop the duplicates a
    DistributedSampler pads in and to keep features aligned across epochs.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        fine: torch.Tensor,
        hierarchy: LabelHierarchy,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        fine = torch.as_tensor(fine).long()
        if inputs.shape[0] != fine.shape[0]:
            raise DataError(f"{inputs.shape[0]} inputs but {fine.shape[0]} fine labels")
        self.inputs = inputs
        self.fine = fine
        self.coarse = hierarchy.coarse_of(fine)
        self.hierarchy = hierarchy
        self.transform = transform

    def __len__(self) -> int:
        return int(self.fine.shape[0])

    def __getitem__(self, i: int):
        x = self.inputs[i]
        if self.transform is not None:
            x = self.transform(x)
        elif x.dtype == torch.uint8:
            x = x.to(torch.float32).div_(255.0)
        return x, self.coarse[i], self.fine[i], torch.tensor(i, dtype=torch.long)
