"""Small-input (CIFAR) conventions for timm backbones, as a registry: family -> rule.

ImageNet stems shrink a 224x224 image 4x (ResNet: 7x7 stride-2 conv + stride-2 max-pool) before the
first block. On 32x32 images that leaves an 8x8 map after the stem and 1x1 after the last stage,
which costs several points of accuracy; the CIFAR versions of these networks (He et al. 2016, Sec. 4.2;
Huang et al. 2017, DenseNet-BC on CIFAR; the VGG of Zagoruyko's "92.45% on CIFAR-10 in Torch")
use a 3x3 stride-1 stem and no stem pooling. Papyan, Han & Donoho (2020) and Yang, Steinhardt & Hu
(2023) train such CIFAR-style networks.

A family is a timm model class, found by walking the class's MRO, so every timm name built from
that class (resnet18, resnet10t, wide_resnet50_2, resnext50_32x4d, ...) and every subclass
(VisionTransformerDistilled -> VisionTransformer) gets the rule. A rule has two hooks:

- `create_kwargs(img_size) -> dict`: extra `timm.create_model` kwargs (a ViT's patch grid must be
  fixed when the model is built); the user's `backbone_kwargs` win over them;
- `patch(model) -> None`: in-place surgery on the built model (swap the stem, drop a pooling layer).

Families without a rule are used unchanged, with a warning naming the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ncfine.utils.errors import ConfigError

ImgSize = int | tuple[int, int] | None


@dataclass(frozen=True)
class SmallInputRule:
    """How one timm family is adapted to small images; `summary` says what changes, for logs and docs."""

    summary: str
    create_kwargs: Callable[[ImgSize], dict] | None = None
    patch: Callable[[nn.Module], None] | None = None
    # True when `patch` replaces pretrained layers with freshly initialised ones.
    discards_pretrained: bool = False


def _stride1_3x3(conv: nn.Conv2d) -> nn.Conv2d:
    """The stem conv as a 3x3 stride-1 conv with the same channels.

    A conv that is already 3x3 (deep stems: resnet10t, resnet50d, densenetblur121d) only loses
    its stride, so pretrained weights survive; a 7x7 conv is replaced by a new 3x3 one.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected the stem to start with a Conv2d, found {type(conv).__name__}")
    if tuple(conv.kernel_size) == (3, 3):
        conv.stride, conv.padding = (1, 1), (1, 1)
        return conv
    weight = conv.weight
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=conv.groups,
        bias=conv.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )


def _cifar_stem(parent: nn.Module, conv_name: str, pool_name: str) -> None:
    """`parent.<conv_name>` -> 3x3 stride-1 (first conv of a Sequential stem), `parent.<pool_name>` -> Identity."""
    stem = getattr(parent, conv_name)
    if isinstance(stem, nn.Sequential):
        # Deep stem (3x3 convs): only the first conv strides; the rest already keep the resolution.
        stem[0] = _stride1_3x3(stem[0])
    else:
        setattr(parent, conv_name, _stride1_3x3(stem))
    setattr(parent, pool_name, nn.Identity())


def _patch_resnet(model: nn.Module) -> None:
    """timm `ResNet` (ResNet, ResNeXt, Wide-ResNet, -d/-t deep-stem variants): conv1 and maxpool."""
    _cifar_stem(model, "conv1", "maxpool")


def _patch_densenet(model: nn.Module) -> None:
    """timm `DenseNet`: features.conv0 and features.pool0 (deep stems: conv0 is the first of three 3x3 convs)."""
    _cifar_stem(model.features, "conv0", "pool0")


def _patch_vgg(model: nn.Module) -> None:
    """timm `VGG`: conv features -> global average pool -> 512-d features, as in the CIFAR VGGs.

    timm's head applies a 4096-wide ConvMlp with a 7x7 kernel (the ImageNet fc6/fc7) to the
    feature map first; on a 1x1 map from a 32x32 image it upsamples to 7x7 and spends 100M
    parameters on it, which takes minutes per CPU epoch and diverges at lr 0.05.
    """
    from timm.layers import ClassifierHead

    model.pre_logits = nn.Identity()
    model.head = ClassifierHead(model.num_features, 0, pool_type="avg", drop_rate=model.head.drop.p)
    model.head_hidden_size = model.num_features
    model.num_classes = 0


def vit_patch_size(img_size: int) -> int:
    """The divisor of `img_size` closest to img_size / 8, i.e. an about 8x8 token grid (32 -> 4, 28 -> 4, 64 -> 8)."""
    divisors = [p for p in range(1, img_size + 1) if img_size % p == 0]
    return min(divisors, key=lambda p: (abs(p - img_size / 8), p))


def _vit_create_kwargs(img_size: ImgSize) -> dict:
    """ViT on small images (e.g. 32x32 with 4x4 patches, Dosovitskiy et al. 2021 on CIFAR)."""
    if img_size is None:
        raise ConfigError(
            "small_input for a VisionTransformer needs img_size (the data's image side, e.g. 32); "
            "pass img_size or set small_input=false"
        )
    side = min(img_size) if isinstance(img_size, (tuple, list)) else int(img_size)
    return {"img_size": img_size, "patch_size": vit_patch_size(side)}


SMALL_INPUT_RULES: dict[str, SmallInputRule] = {
    "ResNet": SmallInputRule(
        "first conv 3x3 stride 1 (deep stems: first conv stride 1), no max-pool",
        patch=_patch_resnet,
        discards_pretrained=True,
    ),
    "DenseNet": SmallInputRule(
        "conv0 3x3 stride 1, no pool0",
        patch=_patch_densenet,
        discards_pretrained=True,
    ),
    "VGG": SmallInputRule(
        "global-average-pooled 512-d conv features; no 4096-wide 7x7 pre-logits MLP",
        patch=_patch_vgg,
        discards_pretrained=False,
    ),
    "VisionTransformer": SmallInputRule(
        "img_size from the data, patch size for an about 8x8 token grid",
        create_kwargs=_vit_create_kwargs,
    ),
}


def family_of(model_class: type) -> str:
    """The registry family of a timm model class (first match along its MRO), else its own class name."""
    for klass in model_class.__mro__:
        if klass.__name__ in SMALL_INPUT_RULES:
            return klass.__name__
    return model_class.__name__


def rule_for(model_class: type) -> tuple[str, SmallInputRule | None]:
    """(family, rule or None when the family has no small-input rule)."""
    family = family_of(model_class)
    return family, SMALL_INPUT_RULES.get(family)
