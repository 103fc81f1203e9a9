"""Which layers of a model to analyse, by module name.

Default: the output of every stage / block group that timm exposes (`model.feature_info`, the
modules whose outputs `forward_intermediates` returns: ResNet `act1, layer1..layer4`, VGG the
ReLU/pool before each downsampling, DenseNet `features.norm0, features.denseblock1..`, ViT
`blocks.0..`), then `penultimate` (the classifier's input, the features Neural Collapse studies).
Models without `feature_info` (ncfine's MLP, a plain `nn.Module`) fall back to the activation
modules of their body (the hidden layers of an MLP), else its top-level children.

Two pseudo-layers besides module names: `penultimate` and `input` (the images themselves, pooled
the same way: the structure there was before any training).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch.nn as nn

from ncfine.utils.errors import ConfigError

PENULTIMATE = "penultimate"
INPUT = "input"
PSEUDO_LAYERS = (INPUT, PENULTIMATE)

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Mish, nn.Hardswish)


def stage_layers(model: nn.Module) -> list[str]:
    """Module names of the model's stages, shallow to deep (see the module docstring)."""
    info = getattr(model, "feature_info", None)
    names: list[str] = []
    if isinstance(info, (list, tuple)):
        names = [entry["module"] for entry in info if isinstance(entry, dict) and entry.get("module")]
    elif info is not None and callable(getattr(info, "module_name", None)):  # timm FeatureInfo (features_only models)
        names = list(info.module_name())
    modules = dict(model.named_modules())
    names = [name for name in dict.fromkeys(names) if name in modules]
    if names:
        return names
    return _fallback_layers(model)


def _fallback_layers(model: nn.Module) -> list[str]:
    prefix, body = "", model
    children = list(body.named_children())
    while len(children) == 1:  # a wrapper around one body (MLPBackbone.net): look inside
        name, body = children[0]
        prefix = f"{prefix}{name}."
        children = list(body.named_children())
    activations = [f"{prefix}{name}" for name, child in children if isinstance(child, _ACTIVATIONS)]
    return activations or [f"{prefix}{name}" for name, _ in children]


def default_layers(model: nn.Module) -> list[str]:
    """`stage_layers(model)` + `penultimate`."""
    return [*stage_layers(model), PENULTIMATE]


def resolve_layers(model: nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    """The layer names to analyse: `None`/"default" -> `default_layers`; "stages" -> the stages
    only; else the given names, each a pseudo-layer or a module of `model` (one-line error with the
    closest names for an unknown one)."""
    if layers is None or layers == "default":
        return default_layers(model)
    if layers == "stages":
        return stage_layers(model)
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    layers = [str(layer) for layer in layers]
    if not layers:
        raise ConfigError("layers must name at least one layer (or be null for the default stages + penultimate)")
    modules = {name for name, _ in model.named_modules() if name}
    for layer in layers:
        if layer in PSEUDO_LAYERS or layer in modules:
            continue
        known = sorted(modules) + list(PSEUDO_LAYERS)
        close = difflib.get_close_matches(layer, known, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"the stages are {', '.join(stage_layers(model))}"
        raise ConfigError(
            f"unknown layer {layer!r} in {type(model).__name__}; {hint} "
            f"(any name from model.named_modules(), or {', '.join(PSEUDO_LAYERS)})"
        )
    return list(dict.fromkeys(layers))
