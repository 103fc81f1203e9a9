"""A small MLP backbone for vector data (the hierarchical Gaussian mixture of `data=synthetic`)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ncfine.utils.errors import ConfigError


class MLPBackbone(nn.Module):
    """h = ReLU(BN(W_L ... ReLU(BN(W_1 flatten(x))))): `depth` hidden layers of width `hidden_dim`.

    The penultimate features are the last hidden layer (post-ReLU, as for the ResNets of Papyan et al. 2020).
    """

    def __init__(self, in_features: int, hidden_dim: int = 128, depth: int = 3, batch_norm: bool = True):
        super().__init__()
        for key, value in (("in_features", in_features), ("hidden_dim", hidden_dim), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"mlp {key} must be a positive integer, got {value!r}")
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_features
        for _ in range(depth):
            # With batch norm the linear bias is redundant (BN subtracts the mean).
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.num_features = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"mlp backbone expects inputs with {self.in_features} values per sample, got shape {tuple(x.shape)}"
            )
        return self.net(x)


def create_mlp(
    *,
    in_chans: int = 1,
    img_size: int | tuple[int, ...] | None = None,
    in_features: int | None = None,
    hidden_dim: int = 128,
    depth: int = 3,
    batch_norm: bool = True,
) -> MLPBackbone:
    """An `MLPBackbone` over flattened inputs of in_chans * prod(img_size) values (or `in_features` if given)."""
    if in_features is None:
        if img_size is None:
            raise ConfigError("backbone 'mlp' needs img_size (or backbone_kwargs.in_features) to size its input layer")
        sides = tuple(img_size) if isinstance(img_size, (tuple, list)) else (img_size, img_size)
        in_features = int(in_chans) * math.prod(int(s) for s in sides)
    return MLPBackbone(in_features, hidden_dim=hidden_dim, depth=depth, batch_norm=bool(batch_norm))
