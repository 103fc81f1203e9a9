"""Tensor transforms shared by the CPU DataLoader path and the device-resident path.

Both paths call the same functions, so the augmentation distribution is identical on CPU and CUDA:

    random_crop_flip   the standard CIFAR augmentation (He et al. 2016): zero-pad by `pad` on every
                       side, crop an H x W window at offsets (dy, dx) ~ U{0..2 pad}^2, flip left-right
                       with probability 1/2; each image independently.
    normalize          x = (u / 255 - mean) / std per channel, float32.

They take one image (C, H, W) or a batch (B, C, H, W) of uint8 on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None, flip: bool = True
) -> torch.Tensor:
    """Random crop with zero padding `pad` plus a random horizontal flip; same shape and dtype.

    Randomness comes from `generator` (any device; the draws are moved to the images' device) or
    from torch's global RNG on the images' device: offsets (dy, dx) ~ U{0..2 pad}^2 and a flip bit
    per image. The crop itself is a per-image slice on the CPU and one gather on other devices
    (no host synchronisation); both give identical results for identical draws.
    """
    single = images.dim() == 3
    x = images.unsqueeze(0) if single else images
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects (C,H,W) or (B,C,H,W) images, got shape {tuple(images.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    b = x.shape[0]
    draw_device = generator.device if generator is not None else x.device
    offsets = torch.randint(0, 2 * pad + 1, (2, b), device=draw_device, generator=generator)
    if flip:
        flips = torch.randint(0, 2, (b,), device=draw_device, generator=generator).bool()
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=draw_device)
    crop = _crop_flip_slices if x.device.type == "cpu" else _crop_flip_gather
    out = crop(x, offsets.to(x.device), flips.to(x.device), pad)
    return out[0] if single else out


def _crop_flip_gather(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i + dy - pad, j' + dx - pad] (0 outside), j' = W-1-j when flipped."""
    b, c, h, w = x.shape
    device = x.device
    rows = torch.arange(h, device=device) + (offsets[0] - pad)[:, None]  # (B, H) source row of each output row
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + (offsets[1] - pad)[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    source = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    out = x.reshape(b, c, h * w).gather(2, source.reshape(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    return out.masked_fill(~inside[:, None], 0)


def _crop_flip_slices(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """The same map as `_crop_flip_gather`, one slice of a zero-padded copy per image (fast on CPU)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    out = torch.empty_like(x)
    for i, (dy, dx, flipped) in enumerate(zip(offsets[0].tolist(), offsets[1].tolist(), flips.tolist())):
        window = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = window.flip(-1) if flipped else window
    return out


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 (u / 255 - mean) / std, with mean/std per channel in [0, 1] units."""
    scale = (1.0 / (255.0 * std.to(images.device, torch.float32))).view(-1, 1, 1)
    shift = (255.0 * mean.to(images.device, torch.float32)).view(-1, 1, 1)
    return images.to(torch.float32).sub_(shift).mul_(scale)


class ImageTransform:
    """uint8 image(s) -> normalised float32, with the CIFAR augmentation when `augment`.

    `ImageTransform(mean, std, augment=True)` is the training transform, `augment=False` the
    analysis/eval one. Called as `t(images, generator=None)` on one image or a batch, any device.
    """

    def __init__(
        self,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        augment: bool = True,
        pad: int = 4,
        flip: bool = True,
    ):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std need one value per channel, got {self.mean.tolist()} and {self.std.tolist()}"
            )
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive per channel, got {self.std.tolist()}")
        self.augment, self.pad, self.flip = bool(augment), int(pad), bool(flip)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self._stats.get(device)
        if stats is None:
            stats = self._stats[device] = (self.mean.to(device), self.std.to(device))
        return stats

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.augment and (self.pad > 0 or self.flip):
            images = random_crop_flip(images, self.pad, generator, self.flip)
        mean, std = self._on(images.device)
        return normalize(images, mean, std)

    def __repr__(self) -> str:
        return (
            f"ImageTransform(mean={[round(v, 4) for v in self.mean.tolist()]}, "
            f"std={[round(v, 4) for v in self.std.tolist()]}, augment={self.augment}, pad={self.pad}, flip={self.flip})"
        )


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W) in [0, 1] units (float64, two-pass)."""
    n, c = images.shape[0], images.shape[1]
    count = n * images.shape[2] * images.shape[3]
    total = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        total += images[start : start + chunk].to(torch.float64).sum(dim=(0, 2, 3))
    mean = total / count
    sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        block = images[start : start + chunk].to(torch.float64) - mean.view(1, c, 1, 1)
        sq += block.square().sum(dim=(0, 2, 3))
    std = (sq / count).sqrt()
    return (mean / 255.0), (std / 255.0).clamp_min(1e-6)
