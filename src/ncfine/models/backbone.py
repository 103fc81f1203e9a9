"""Backbones: any timm model (or an ncfine one such as "mlp") as a map x -> pooled penultimate features h.

`create_backbone(name)` builds `timm.create_model(name, num_classes=0, ...)`, whose forward is
`forward_head(forward_features(x), pre_logits=True)`: the globally pooled features (B, D) that
Neural Collapse studies (Papyan, Han & Donoho 2020), with no classifier. The classifier's linear
head (W, b) lives in `ncfine.models.classifier`, so NC3/NC4 can read it.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn

from ncfine.models.mlp import create_mlp
from ncfine.models.small_input import ImgSize, rule_for
from ncfine.models.width import WIDTH_RULES, check_width, width_rule_for
from ncfine.utils.errors import ConfigError, first_line

# Backbones that ncfine builds itself; each takes (in_chans=, img_size=, **kwargs) and returns a
# module with a `num_features` attribute. Checked before timm's names.
NCFINE_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mlp": create_mlp,
}

# Prefixes that make timm load a model definition from elsewhere; their names are not in timm's list.
_EXTERNAL_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def create_backbone(
    name: str,
    small_input: bool = False,
    *,
    pretrained: bool = False,
    in_chans: int = 3,
    img_size: ImgSize = None,
    width: float = 1.0,
    **kwargs,
) -> tuple[nn.Module, int]:
    """(module mapping images (B, C, H, W) to features (B, D), D).

    name: a timm model name (`timm.list_models()`, optionally with a pretrained tag such as
        "resnet18.a1_in1k") or an ncfine backbone (`NCFINE_BACKBONES`: "mlp").
    small_input: adapt the stem to 32x32-and-smaller images with the family's rule in
        `ncfine.models.small_input.SMALL_INPUT_RULES`; a family without a rule is used unchanged, with a warning.
    pretrained: load timm's pretrained weights (needs them downloaded or cached; off by default,
        since ncfine's runs train from scratch and compute nodes are often offline).
    in_chans, img_size: from the data; img_size is passed to timm only by rules that need it (ViT).
    width: channel-width multiplier, by the family's rule in `ncfine.models.width.WIDTH_RULES`
        (ResNet stage channels, VGG conv widths, DenseNet growth rate); 1 builds timm's model as is.
        A family without a rule, or width != 1 with pretrained weights, fails in one line.
    kwargs: passed on to `timm.create_model` (e.g. drop_rate, drop_path_rate); they override a rule's kwargs.

    The module is the timm model itself (num_classes=0), so its timm methods (set_grad_checkpointing,
    group_matcher, no_weight_decay, ...) stay available.
    """
    check_backbone(name, small_input, pretrained=pretrained, in_chans=in_chans, width=width, **kwargs)
    width = float(width)
    if name in NCFINE_BACKBONES:
        module = NCFINE_BACKBONES[name](in_chans=in_chans, img_size=img_size, **kwargs)
        return module, int(module.num_features)

    # The unscaled model on the meta device, read for its family (and layout, by a width rule).
    reference = _reference_model(name, in_chans, kwargs) if (small_input or width != 1.0) else None
    build = None
    if width != 1.0:
        build, kwargs = _width_scaled(name, width, in_chans, kwargs, reference)
    if small_input:
        family, rule = rule_for(type(reference))
        if rule is None:
            warnings.warn(
                f"small_input: no rule for timm family {family!r} (backbone {name!r}); using it unchanged. "
                f"Rules exist for: {', '.join(_rule_families())}. Pass backbone_kwargs (e.g. img_size) yourself "
                "or add a rule to ncfine.models.small_input.SMALL_INPUT_RULES",
                stacklevel=2,
            )
        elif rule.create_kwargs is not None:
            kwargs = {**rule.create_kwargs(img_size), **kwargs}
    else:
        rule = None

    model = build(kwargs) if build is not None else _create_timm(name, in_chans, kwargs, pretrained=pretrained)
    if rule is not None and rule.patch is not None:
        if pretrained and rule.discards_pretrained:
            warnings.warn(
                f"small_input replaces the ImageNet stem of pretrained {name!r}: a 7x7 stem conv is newly "
                "initialised (3x3 deep-stem convs keep their weights, with stride 1)",
                stacklevel=2,
            )
        rule.patch(model)
    if img_size is not None:
        check_input_size(model, name, in_chans, img_size, small_input=small_input)
    return model, feature_dim(model)


def check_input_size(model: nn.Module, name: str, in_chans: int, img_size: ImgSize, small_input: bool = True) -> None:
    """One forward pass of a zero image: a backbone that downsamples more than the image allows
    (e.g. VGG's five max-pools on 16x16) fails here in one line, not in the first training step."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    was_training = model.training
    model.eval()  # BatchNorm cannot train on a batch of one
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, height, width))
    except (RuntimeError, AssertionError, ValueError) as exc:  # timm's ViT/Swin assert their input size
        reason = first_line(exc)
        raise ConfigError(
            f"backbone {name!r} cannot take {height}x{width} images ({reason.rstrip('.')}); use larger images "
            "(e.g. data.source.image_size=32)"
            + ("" if small_input else ", model.small_input=true")
            + " or a backbone that downsamples less"
        ) from None
    finally:
        model.train(was_training)


def feature_dim(model: nn.Module) -> int:
    """D of a timm model built with num_classes=0: the pre-logits width (`head_hidden_size`), else `num_features`."""
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not dim:
        raise ConfigError(
            f"cannot tell the feature dimension of {type(model).__name__}: no head_hidden_size/num_features"
        )
    return int(dim)


def check_backbone_name(name: str) -> None:
    """Raise a one-line ConfigError with the closest known names when `name` is not a timm or ncfine backbone."""
    import timm
    from timm.models import split_model_name_tag

    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone must be a timm model name (see timm.list_models()), got {name!r}")
    if name.startswith(_EXTERNAL_PREFIXES):
        return
    arch, tag = split_model_name_tag(name)
    if timm.is_model(arch):
        if tag and name not in timm.list_pretrained(f"{arch}.*"):
            tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*")]
            valid = f"valid tags: {', '.join(tags)}" if tags else f"{arch!r} has no pretrained tags"
            raise ConfigError(f"unknown pretrained tag {tag!r} in backbone {name!r}; {valid} (or plain {arch!r})")
        return
    known = list(NCFINE_BACKBONES) + timm.list_models()
    close = difflib.get_close_matches(arch, known, n=6, cutoff=0.6)
    hint = f"closest names: {', '.join(close)}" if close else "no close match"
    raise ConfigError(
        f"unknown backbone {name!r}; {hint} (all names: timm.list_models(), plus {', '.join(NCFINE_BACKBONES)})"
    )


def check_backbone(
    name: str, small_input: bool = False, *, pretrained: bool = False, in_chans: int = 3, width: float = 1.0, **kwargs
) -> None:
    """The checks of `create_backbone` that build nothing real (a sweep's pre-flight runs them for
    every job before any is started): the flags, the width, the name and, for width != 1, that
    the family has a width rule (read off the model timm builds on the meta device, in milliseconds)."""
    for flag, value in (("small_input", small_input), ("pretrained", pretrained)):
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} (model.{flag}) must be true or false, got {value!r}")
    width = check_width(width)
    if name in NCFINE_BACKBONES:
        if width != 1.0:
            raise ConfigError(
                f"model.width={width:g} has no rule for ncfine backbone {name!r} (set its size in backbone_kwargs); "
                f"width rules exist for timm families: {', '.join(WIDTH_RULES)}"
            )
        if pretrained:
            raise ConfigError(f"backbone {name!r} has no pretrained weights; set pretrained=false")
        return
    check_backbone_name(name)
    if width != 1.0:
        if pretrained:
            raise ConfigError(
                f"model.width={width:g} with pretrained=true: {name!r}'s pretrained weights exist at width 1 only"
            )
        _width_rule(name, width, _reference_model(name, in_chans, kwargs))


def _width_rule(name: str, width: float, reference: nn.Module):
    """The width rule of `reference`'s family, or a one-line ConfigError naming the families that have one."""
    family, rule = width_rule_for(type(reference))
    if rule is None:
        raise ConfigError(
            f"model.width={width:g}: no width rule for timm family {family!r} (backbone {name!r}); rules exist for: "
            f"{', '.join(WIDTH_RULES)} (or set the widths in model.backbone_kwargs, or add a rule to "
            "ncfine.models.width.WIDTH_RULES)"
        )
    return rule


def _width_scaled(name: str, width: float, in_chans: int, kwargs: dict, reference: nn.Module):
    """(a builder for the narrowed model or None, kwargs): by the family's rule in WIDTH_RULES."""
    rule = _width_rule(name, width, reference)
    if rule.build is None:
        return None, {**rule.create_kwargs(reference, width), **kwargs}

    def build(kw: dict) -> nn.Module:
        try:
            return rule.build(name, reference, width, in_chans, kw)
        except TypeError as exc:
            raise ConfigError(f"backbone {name!r} rejected its kwargs {kw}: {first_line(exc)}") from exc

    return build, kwargs


def _rule_families() -> list[str]:
    from ncfine.models.small_input import SMALL_INPUT_RULES

    return list(SMALL_INPUT_RULES)


def _reference_model(name: str, in_chans: int, kwargs: dict) -> nn.Module:
    """The model timm builds for `name`, on the meta device where it can be (no memory, milliseconds);
    read for its class and layout, never run."""
    try:
        with torch.device("meta"):
            return _create_timm(name, in_chans, kwargs, pretrained=False)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a model whose init cannot run on meta: build it for real once
        return _create_timm(name, in_chans, kwargs, pretrained=False)


def _create_timm(name: str, in_chans: int, kwargs: dict, *, pretrained: bool) -> nn.Module:
    """`timm.create_model(name, num_classes=0, ...)` with one-line errors for bad kwargs and unavailable weights."""
    import timm

    if pretrained:
        from ncfine.models.pretrained import check_pretrained_available

        check_pretrained_available(name, kwargs)  # seconds, not a minute of hub retries, when offline
    try:
        return timm.create_model(name, num_classes=0, pretrained=pretrained, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        if not kwargs:
            raise
        raise ConfigError(f"backbone {name!r} rejected its kwargs {kwargs}: {first_line(exc)}") from exc
    except (OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise ConfigError(
            f"cannot load pretrained weights for backbone {name!r} ({type(exc).__name__}: {first_line(exc)}); "
            "without internet, download them into the Hugging Face cache first (HF_HOME), or set pretrained=false"
        ) from exc
