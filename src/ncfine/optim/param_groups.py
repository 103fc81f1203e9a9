"""Optimizer parameter groups: weight decay on weights, none on normalisation parameters and biases.

Decaying BatchNorm/LayerNorm scales and biases only shrinks quantities that normalisation makes
scale-free or that shift activations, and hurts accuracy slightly (Goyal et al. 2017, "Accurate,
Large Minibatch SGD", Sec. 5.1; timm's `param_groups_weight_decay`). Weight decay is also what
drives Neural Collapse's simplex geometry (Papyan et al. 2020; Rangamani & Banburski-Fahey 2022),
so where it applies is part of the experiment and is kept explicit here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch.nn as nn


def is_norm_layer(module: nn.Module) -> bool:
    """BatchNorm/GroupNorm/LayerNorm/InstanceNorm/RMSNorm and timm's variants (BatchNormAct2d, LayerNorm2d, RmsNorm, ...)."""
    torch_norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    if hasattr(nn, "RMSNorm"):
        torch_norms = torch_norms + (nn.RMSNorm,)
    return isinstance(module, torch_norms) or "Norm" in type(module).__name__


def no_decay_names(model: nn.Module) -> set[str]:
    """Names (as in `model.named_parameters()`) of norm-layer parameters, 1-D parameters (biases, scales) and
    those a submodule lists in timm's `no_weight_decay()` (ViT: pos_embed, cls_token)."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if is_norm_layer(module):
            names.update(prefix + n for n, _ in module.named_parameters(recurse=False))
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            names.update(prefix + n for n in listed())
    names.update(n for n, p in model.named_parameters() if p.ndim <= 1)
    return names


def build_param_groups(
    model: nn.Module, weight_decay: float | None, exclude_norm_bias: bool = True
) -> list[dict[str, Any]]:
    """Parameter groups for `torch.optim`: [{"params": weights, "weight_decay": wd}, {"params": norm/bias, "weight_decay": 0}].

    weight_decay None leaves the first group without a "weight_decay" key, so the optimizer's own
    default applies (AdamW: 0.01). With exclude_norm_bias=False everything is one group. Frozen
    parameters (requires_grad=False) are left out; empty groups are dropped.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    skip = no_decay_names(model) if exclude_norm_bias else set()
    decay = {"name": "decay", "params": [p for n, p in trainable if n not in skip]}
    if weight_decay is not None:
        decay["weight_decay"] = weight_decay
    no_decay = {"name": "no_decay", "params": [p for n, p in trainable if n in skip], "weight_decay": 0.0}
    return [g for g in (decay, no_decay) if g["params"]]


def optimizer_keywords(optimizer: Callable) -> dict[str, Any]:
    """The keyword arguments bound in an optimizer factory (Hydra `_partial_: true` gives a functools.partial)."""
    return dict(optimizer.keywords) if isinstance(optimizer, functools.partial) else {}
