"""`Features`: the penultimate (or one layer's) features of one split with their labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
