"""Narrow (or wide) variants of timm backbones, as a registry: family -> width rule.

`width` multiplies a backbone's channel widths by its family's rule, the way the CIFAR literature
narrows its networks to fit a budget (Zagoruyko & Komodakis 2016 widen ResNets by a factor k;
Nakkiran et al. 2020 sweep ResNet-18 widths [k, 2k, 4k, 8k]). A width of 1 builds the model
unchanged, bit for bit (the rule is not even looked up). Channel counts are
`max(1, round(c * width))`, so width 0.25 maps ResNet-18's (64, 128, 256, 512) to (16, 32, 64, 128).

A rule has one of two hooks, both given a reference model (the unscaled one, built on the meta
device, so its real layout can be read rather than guessed from the name):

- `create_kwargs(reference, width) -> dict`: `timm.create_model` kwargs that scale the family
  (ResNet's `channels`, DenseNet's `growth_rate`); the user's `backbone_kwargs` win over them;
- `build(name, reference, width, in_chans, kwargs) -> nn.Module`: builds the scaled model itself,
  for families whose entry points fix the layout (timm's VGG takes its layer list from the name).

Families without a rule fail with one line naming the families that have one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ncfine.utils.errors import ConfigError


@dataclass(frozen=True)
class WidthRule:
    """How one timm family is narrowed; `summary` says which widths scale, for logs and docs."""

    summary: str
    create_kwargs: Callable[[nn.Module, float], dict] | None = None
    build: Callable[[str, nn.Module, float, int, dict], nn.Module] | None = None


def scaled(channels: int, width: float) -> int:
    """`channels` x `width`, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def check_width(width) -> float:
    """A positive finite number (model.width); bools and strings are rejected in one line."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < float("inf")):
        raise ConfigError(f"model.width must be a positive number (1 = the backbone as timm builds it), got {width!r}")
    return float(width)


def _resnet_kwargs(reference: nn.Module, width: float) -> dict:
    """Stage channels (timm's `channels`; bottleneck blocks keep their 4x expansion and groups) and
    the deep-stem width (`stem_width`: resnet*d, resnet10t, ...). A plain stem stays at the 64
    channels timm fixes for it, so the first block projects 64 -> 64 x width."""
    expansion = type(reference.layer1[0]).expansion
    stage_out = {info["module"]: info["num_chs"] for info in reference.feature_info}
    stages = [name for name in ("layer1", "layer2", "layer3", "layer4") if name in stage_out]
    kwargs = {"channels": tuple(scaled(stage_out[name] // expansion, width) for name in stages)}
    if isinstance(reference.conv1, nn.Sequential):
        # The second stem conv is `stem_width` wide in deep and tiered stems alike.
        kwargs["stem_width"] = scaled(reference.conv1[3].out_channels, width)
    return kwargs


def _densenet_kwargs(reference: nn.Module, width: float) -> dict:
    """Growth rate; the stem (2 x growth rate channels) and the transitions follow it."""
    first_layer = reference.features.denseblock1.denselayer1
    return {"growth_rate": scaled(first_layer.conv2.out_channels, width)}


def _build_vgg(name: str, reference: nn.Module, width: float, in_chans: int, kwargs: dict) -> nn.Module:
    """Every conv of `features` x width. timm's VGG entry points take the layer list from the name,
    so the scaled list is read off the reference model and built with timm's `build_model_with_cfg`;
    the ImageNet pre-logits MLP (4096 wide, dropped by small_input) keeps its width."""
    from timm.models import build_model_with_cfg

    cfg: list = []
    for module in reference.features:
        if isinstance(module, nn.Conv2d):
            cfg.append(scaled(module.out_channels, width))
        elif isinstance(module, nn.MaxPool2d):
            cfg.append("M")
    has_norm = any(isinstance(m, nn.BatchNorm2d) for m in reference.features)
    kwargs = {"norm_layer": nn.BatchNorm2d if has_norm else None, **kwargs}
    return build_model_with_cfg(type(reference), name, False, model_cfg=cfg, num_classes=0, in_chans=in_chans, **kwargs)


WIDTH_RULES: dict[str, WidthRule] = {
    "ResNet": WidthRule("stage channels (and a deep stem's width) x width", create_kwargs=_resnet_kwargs),
    "DenseNet": WidthRule("growth rate x width (stem: 2 x growth rate)", create_kwargs=_densenet_kwargs),
    "VGG": WidthRule("every conv's channels x width", build=_build_vgg),
}


def width_rule_for(model_class: type) -> tuple[str, WidthRule | None]:
    """(family, rule or None): the first class along `model_class`'s MRO that has a rule."""
    for klass in model_class.__mro__:
        if klass.__name__ in WIDTH_RULES:
            return klass.__name__, WIDTH_RULES[klass.__name__]
    return model_class.__name__, None
