"""Batches drawn from tensors that already live on the training device (no workers, no copies).

For datasets that fit in device memory (CIFAR: 180 MB of uint8; digits; synthetic) the whole split
stays on the GPU as uint8; each batch is gathered, augmented (`ImageTransform`, the same code as the
CPU path) and normalised there, with coarse/fine/index alongside.

Order per epoch, identical to torch's DistributedSampler(shuffle, seed, drop_last=False):
    perm = randperm(N, generator=manual_seed(seed + epoch))   (or arange(N) without shuffling)
    pad perm by wrapping around to a multiple of world_size; rank r takes perm[r::world_size]
so every rank runs the same number of batches and one epoch over all ranks covers every index
(plus at most world_size - 1 padding duplicates, which the analysis drops by index).
Augmentation draws come from a device generator seeded by (seed, epoch, rank): deterministic under
the seed and independent of the global RNG. Lightning accepts the loader as any iterable with
`__len__` and calls `loader.sampler.set_epoch(epoch)` before each epoch, which makes resumed runs
replay the same order; used on its own, each new iteration advances the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def shard_indices(order: torch.Tensor, rank: int, world_size: int, drop_last: bool = False) -> torch.Tensor:
    """DistributedSampler's split of `order` for `rank` of `world_size` (see the module docstring)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    n = order.shape[0]
    if drop_last and n % world_size:
        per_rank = n // world_size
    else:
        per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    if total > n:
        order = order.repeat(math.ceil(total / n))
    return order[:total][rank:total:world_size]


class ShardedOrder:
    """The per-epoch sample order of one rank; a sampler (`set_epoch`, `__iter__`, `__len__`)."""

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self.n, self.shuffle, self.seed = int(num_samples), bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample positions for `epoch` (default: the current one), int64 on the CPU."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        return shard_indices(order, self.rank, self.world_size, self.drop_last)

    def __len__(self) -> int:
        if self.drop_last and self.n % self.world_size:
            return self.n // self.world_size
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def _mix_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 0x9E3779B1 + int(epoch) * 0x85EBCA77 + int(rank) * 0xC2B2AE3D + 0x27D4EB2F) % (2**63)


class DeviceLoader:
    """An iterable of `(image, coarse, fine, index)` batches over tensors on one device.

    Args:
        inputs: uint8 images (N, C, H, W) or float features (N, D), on the target device.
        coarse, fine: int64 (N,) labels on the same device.
        batch_size: samples per batch (the last batch may be smaller unless drop_last).
        transform: `transform(batch, generator=...)` (an `ImageTransform`), or None to pass inputs
            through (features; uint8 images then become float in [0, 1]).
        shuffle, seed, rank, world_size, drop_last: the sample order, as DistributedSampler.
        sample_ids: the index each row of `inputs` has in the whole split, when `inputs` is a subset
            (batches then carry these ids); None: the row positions.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        coarse: torch.Tensor,
        fine: torch.Tensor,
        batch_size: int,
        transform: Callable[..., torch.Tensor] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        sample_ids: torch.Tensor | None = None,
    ):
        if not (inputs.shape[0] == coarse.shape[0] == fine.shape[0]):
            raise ValueError(
                f"inputs, coarse and fine differ in length: {inputs.shape[0]}, {coarse.shape[0]}, {fine.shape[0]}"
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.inputs, self.coarse, self.fine = inputs, coarse.long(), fine.long()
        self.device = inputs.device
        self.batch_size = int(batch_size)
        self.transform = transform
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.sampler = ShardedOrder(inputs.shape[0], shuffle, seed, rank, world_size, drop_last)
        if sample_ids is not None and sample_ids.shape[0] != inputs.shape[0]:
            raise ValueError(f"sample_ids has {sample_ids.shape[0]} entries for {inputs.shape[0]} inputs")
        self.sample_ids = None if sample_ids is None else sample_ids.to(self.device).long()
        self.batch_sampler = None  # DataLoader's attribute pair, read by Lightning's sampler inspection

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.sampler.epoch
        self.sampler.epoch = epoch + 1  # a later iteration without set_epoch is the next epoch
        order = self.sampler.indices(epoch).to(self.device, non_blocking=True)
        generator = None
        if self.transform is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(_mix_seed(self.seed, epoch, self.sampler.rank))
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.inputs[index]
            if self.transform is not None:
                x = self.transform(x, generator=generator)
            elif x.dtype == torch.uint8:
                x = x.to(torch.float32).div_(255.0)
            ids = index if self.sample_ids is None else self.sample_ids[index]
            yield x, self.coarse[index], self.fine[index], ids

    def __repr__(self) -> str:
        s = self.sampler
        return (
            f"DeviceLoader(n={s.n}, batch_size={self.batch_size}, batches={len(self)}, device={self.device}, "
            f"shuffle={s.shuffle}, rank={s.rank}/{s.world_size})"
        )
