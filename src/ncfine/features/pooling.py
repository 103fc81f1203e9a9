"""How one layer's output becomes one feature vector per sample, as it is produced (registry).

A layer's output is reduced inside its forward hook, so only (B, D) per batch is kept, never the
full activation maps of every layer:

- feature maps (B, C, H, W): `avg` global average pooling (the penultimate convention of
  Papyan, Han & Donoho 2020), `max` global max pooling, `flatten` adaptive average pooling to at
  most `flatten_size` x `flatten_size` then flattening (C * s * s values: keeps coarse spatial
  layout, bounded whatever the image size);
- token sequences (B, N, D) of a transformer block: the `num_prefix_tokens` class/register tokens
  are dropped and the patch tokens laid out on their (H, W) grid, as timm's
  `forward_intermediates` returns them, then pooled like a feature map;
- vectors (B, D) are used as they are; other shapes (B, C, ...) are treated like maps over their
  trailing dimensions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ncfine.utils.errors import ConfigError

Pool = Callable[[torch.Tensor, int], torch.Tensor]


def _avg(x: torch.Tensor, flatten_size: int) -> torch.Tensor:
    return x.flatten(2).mean(2)


def _max(x: torch.Tensor, flatten_size: int) -> torch.Tensor:
    return x.flatten(2).amax(2)


def _flatten(x: torch.Tensor, flatten_size: int) -> torch.Tensor:
    if x.ndim == 4:
        size = (min(flatten_size, x.shape[2]), min(flatten_size, x.shape[3]))
        x = F.adaptive_avg_pool2d(x, size)
    elif x.ndim == 3:
        x = F.adaptive_avg_pool1d(x, min(flatten_size, x.shape[2]))
    return x.flatten(1)


POOLS: dict[str, Pool] = {"avg": _avg, "max": _max, "flatten": _flatten}


def check_pool(pool: str, flatten_size: int = 4) -> None:
    if pool not in POOLS:
        raise ConfigError(f"unknown layer pooling {pool!r}; valid: {', '.join(POOLS)}")
    if isinstance(flatten_size, bool) or not isinstance(flatten_size, int) or flatten_size < 1:
        raise ConfigError(f"flatten_size must be a positive integer, got {flatten_size!r}")


def first_tensor(output) -> torch.Tensor | None:
    """The tensor a module returned (the first one of a tuple/list, as for RNN-style outputs)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def tokens_to_map(x: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int] | None) -> torch.Tensor:
    """(B, N, D) tokens -> (B, D, H, W) patch map without the prefix tokens (timm's
    forward_intermediates layout); (B, D, N - prefix) when the grid is unknown or does not fit."""
    x = x[:, num_prefix_tokens:]
    if grid is not None and grid[0] * grid[1] == x.shape[1]:
        return x.reshape(x.shape[0], grid[0], grid[1], x.shape[2]).permute(0, 3, 1, 2)
    return x.transpose(1, 2)


def pool_output(
    x: torch.Tensor,
    pool: str,
    flatten_size: int = 4,
    num_prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """One layer output (B, ...) -> (B, D) float32 features, detached."""
    x = x.detach()
    if x.ndim == 2:
        return x.float()
    if x.ndim < 2:
        raise ValueError(f"a layer output needs a batch and a feature dimension, got shape {tuple(x.shape)}")
    if x.ndim == 3 and num_prefix_tokens is not None:
        x = tokens_to_map(x, num_prefix_tokens, grid)
    return POOLS[pool](x, flatten_size).float()
