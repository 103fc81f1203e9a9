"""model.width: narrow timm backbones by family rule (ncfine.models.width)."""

import pytest
import torch
import torch.nn as nn

from ncfine.models.backbone import create_backbone
from ncfine.models.width import WIDTH_RULES, check_width, scaled
from ncfine.utils.errors import ConfigError


def _conv_params(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def _forward(module, side=32):
    module.eval()
    with torch.no_grad():
        return module(torch.randn(2, 3, side, side))


def test_scaled_rounds_and_keeps_one_channel():
    assert [scaled(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert scaled(64, 0.3) == 19 and scaled(3, 0.01) == 1 and scaled(64, 2) == 128


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn", "densenet121", "resnet10t"])
def test_width_one_is_the_unscaled_model_bit_for_bit(name):
    torch.manual_seed(0)
    plain, plain_dim = create_backbone(name, small_input=True)
    torch.manual_seed(0)
    same, same_dim = create_backbone(name, small_input=True, width=1)
    assert plain_dim == same_dim
    a, b = plain.state_dict(), same.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resnet18_quarter_width_stage_channels_and_dim():
    model, dim = create_backbone("resnet18", small_input=True, width=0.25)
    assert dim == 128 and model.num_features == 128
    assert [getattr(model, f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    # timm fixes a plain stem at 64 channels; the CIFAR stem rule still applies to it.
    assert model.conv1.out_channels == 64 and model.conv1.stride == (1, 1)
    assert _forward(model).shape == (2, 128)


def test_deep_stem_width_follows():
    model, dim = create_backbone("resnet10t", small_input=True, width=0.5)
    assert dim == 256
    # resnet10t's tiered stem: 24 -> 32 -> 64 channels at width 1.
    assert [model.conv1[i].out_channels for i in (0, 3, 6)] == [12, 16, 32]
    assert _forward(model, side=16).shape == (2, 256)


def test_vgg16_bn_quarter_width_every_conv_and_gap_features():
    full, _ = create_backbone("vgg16_bn", small_input=True)
    model, dim = create_backbone("vgg16_bn", small_input=True, width=0.25)
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [scaled(m.out_channels, 0.25) for m in full.features if isinstance(m, nn.Conv2d)]
    assert widths[0] == 16 and widths[-1] == 128 and dim == 128
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 13
    assert _forward(model).shape == (2, 128)


def test_vgg_without_norm_keeps_no_norm():
    model, dim = create_backbone("vgg11", small_input=True, width=0.5)
    assert dim == 256 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_densenet121_growth_rate_and_stem_follow_width():
    model, dim = create_backbone("densenet121", small_input=True, width=0.25)
    assert model.features.conv0.out_channels == 16  # stem: 2 x growth rate
    assert model.features.denseblock1.denselayer1.conv2.out_channels == 8
    assert dim == 256  # 1024 x 0.25
    assert _forward(model, side=16).shape == (2, 256)


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn", "densenet121"])
def test_conv_parameters_scale_as_width_squared(name):
    """A conv's weights are in x out x k x k: both widths scale, so its count scales by width^2;
    only the convs that read the 3 image channels (or timm's fixed 64-channel plain stem) scale less."""
    full, _ = create_backbone(name, small_input=True)
    half, _ = create_backbone(name, small_input=True, width=0.5)
    ratio = _conv_params(half) / _conv_params(full)
    assert 0.25 <= ratio < 0.26, ratio


def test_coarse_classifier_head_follows_width():
    from ncfine.models import CoarseClassifier

    model = CoarseClassifier("resnet18", num_classes=5, width=0.25, img_size=32)
    assert model.feature_dim == 128 and model.head.in_features == 128
    assert model.hparams.width == 0.25
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "wide", True, None])
def test_bad_width_is_one_line(bad):
    with pytest.raises(ConfigError, match=r"model.width must be a positive number") as info:
        check_width(bad)
    assert "\n" not in str(info.value)


def test_family_without_rule_names_the_families_with_one():
    with pytest.raises(ConfigError) as info:
        create_backbone("mobilenetv3_small_050", small_input=False, width=0.5)
    message = str(info.value)
    assert "no width rule for timm family 'MobileNetV3'" in message and "\n" not in message
    assert all(family in message for family in WIDTH_RULES)


def test_width_with_pretrained_or_ncfine_backbone_fails():
    with pytest.raises(ConfigError, match="pretrained weights exist at width 1 only"):
        create_backbone("resnet18", pretrained=True, width=0.5)
    with pytest.raises(ConfigError, match="no rule for ncfine backbone 'mlp'"):
        create_backbone("mlp", in_chans=3, img_size=8, width=0.5)
