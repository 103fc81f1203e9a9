"""Which samples of a split are analysed: the per-split caps and the fixed random subset they take.

The subset depends only on (split size, cap, seed), so every callback, every epoch and
`ncfine-analyze` analyse the same samples for the same cap.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ncfine.utils.errors import ConfigError

ANALYSIS_SPLITS = ("train", "test")


def check_sample_caps(max_samples, max_samples_per_split) -> dict[str, int | None]:
    """The per-split caps as a dict, after checking both settings (ConfigError naming the bad one)."""
    per_split = dict(max_samples_per_split or {})
    bad = [s for s in per_split if s not in ANALYSIS_SPLITS]
    if bad:
        raise ConfigError(f"unknown split(s) {bad} in max_samples_per_split; valid splits are {list(ANALYSIS_SPLITS)}")
    for name, cap in (("max_samples", max_samples), *((f"max_samples_per_split.{k}", v) for k, v in per_split.items())):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
            raise ConfigError(f"{name} must be a positive integer or null, got {cap!r}")
    return per_split


def samples_cap(split: str, max_samples: int | None, per_split: Mapping[str, int | None]) -> int | None:
    """How many samples of `split` are analysed: the smaller of `max_samples` and `per_split[split]`
    (None: the whole split)."""
    caps = [c for c in (max_samples, per_split.get(split)) if c is not None]
    return min(caps) if caps else None


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
