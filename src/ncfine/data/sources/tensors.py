"""Bring your own tensors: a source over splits already in memory (notebooks, tests, other code).

    source = TensorSource(train=(images_u8, fine), test=(images_u8, fine), fine_names=[...])
    dm = HierarchicalDataModule(source, hierarchy="mod:5")

Inputs are uint8 images (N, C, H, W) or float features (N, D); labels int (N,). Optional
per-sample coarse labels (train_coarse / test_coarse) make hierarchy=superclass available.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ncfine.data.sources.base import RawSplit, Source, check_split
from ncfine.utils.errors import DataError


class TensorSource(Source):
    name = "tensors"

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        fine_names: Sequence[str] | None = None,
        train_coarse: torch.Tensor | None = None,
        test_coarse: torch.Tensor | None = None,
        coarse_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        default_hierarchy: str | None = None,
    ):
        inputs = {"train": train[0], "test": test[0]}
        fine = {"train": torch.as_tensor(train[1]).long(), "test": torch.as_tensor(test[1]).long()}
        coarse = {"train": train_coarse, "test": test_coarse}
        num_fine = int(max(int(f.max()) for f in fine.values() if f.numel())) + 1
        names = [str(n) for n in fine_names] if fine_names is not None else [str(i) for i in range(num_fine)]
        first = inputs["train"]
        self.is_image = first.dtype == torch.uint8
        if not self.is_image and not first.dtype.is_floating_point:
            raise DataError(f"TensorSource inputs must be uint8 images or float features, got {first.dtype}")
        self._splits = {
            split: RawSplit(
                images=inputs[split] if self.is_image else None,
                x=None if self.is_image else inputs[split],
                fine=fine[split],
                fine_names=names,
                coarse=None if coarse[split] is None else torch.as_tensor(coarse[split]).long(),
                coarse_names=None if coarse_names is None else [str(n) for n in coarse_names],
            )
            for split in ("train", "test")
        }
        if self.is_image:
            self.in_chans, self.image_size = int(first.shape[1]), int(first.shape[-1])
        else:
            self.in_chans, self.image_size = int(first.shape[1]), 1
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.default_hierarchy = default_hierarchy or ("superclass" if train_coarse is not None else "identity")
        self._names = names

    @property
    def num_fine(self) -> int:
        return len(self._names)

    def load(self, split: str) -> RawSplit:
        return self._splits[check_split(split)]

    def __repr__(self) -> str:
        return f"TensorSource(train={len(self._splits['train'])}, test={len(self._splits['test'])})"
