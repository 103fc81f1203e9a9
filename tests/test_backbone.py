"""Backbones: any timm name -> (features module, D); small-input rules per family; one-line errors."""

import pytest
import torch
import torch.nn as nn

from ncfine.models.backbone import create_backbone
from ncfine.models.small_input import SMALL_INPUT_RULES, family_of, vit_patch_size
from ncfine.utils.errors import ConfigError


def _features(module, side=32, batch=2, in_chans=3):
    module.eval()
    with torch.no_grad():
        return module(torch.randn(batch, in_chans, side, side))


def test_resnet18_small_input_stem_and_dim():
    model, dim = create_backbone("resnet18", small_input=True)
    assert dim == 512
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert _features(model).shape == (2, 512)
    # Output stride 8 instead of 32: a 32x32 image leaves a 4x4 map before pooling, not 1x1.
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_resnet18_without_small_input_keeps_imagenet_stem():
    model, dim = create_backbone("resnet18", small_input=False)
    assert dim == 512
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)


def test_resnet10t_deep_stem_first_conv_stride_one():
    model, dim = create_backbone("resnet10t", small_input=True)
    assert dim == 512
    stem = model.conv1
    assert isinstance(stem, nn.Sequential)
    assert stem[0].kernel_size == (3, 3) and stem[0].stride == (1, 1)
    # The rest of the deep stem is untouched.
    assert stem[3].stride == (1, 1) and stem[6].out_channels == 64
    assert isinstance(model.maxpool, nn.Identity)
    assert _features(model, side=16).shape == (2, 512)


def test_densenet121_small_input():
    model, dim = create_backbone("densenet121", small_input=True)
    assert dim == 1024
    conv0 = model.features.conv0
    assert conv0.kernel_size == (3, 3) and conv0.stride == (1, 1) and conv0.out_channels == 64
    assert isinstance(model.features.pool0, nn.Identity)
    # 16x16 rather than 32x32: a stride-1 DenseNet-121 is the costliest forward in this file.
    assert _features(model, side=16).shape == (2, 1024)


def test_vgg16_bn_small_input_drops_4096_prelogits():
    model, dim = create_backbone("vgg16_bn", small_input=True)
    assert dim == 512
    assert isinstance(model.pre_logits, nn.Identity)
    assert all(4096 not in p.shape for p in model.parameters())
    assert _features(model).shape == (2, 512)


def test_vit_small_input_patch_grid_from_image_size():
    model, dim = create_backbone("vit_tiny_patch16_224", small_input=True, img_size=32)
    assert dim == 192
    assert tuple(model.patch_embed.patch_size) == (4, 4)
    assert tuple(model.patch_embed.grid_size) == (8, 8)
    assert _features(model).shape == (2, 192)


def test_vit_small_input_needs_image_size():
    with pytest.raises(ConfigError, match="img_size"):
        create_backbone("vit_tiny_patch16_224", small_input=True)


def test_vit_patch_size_gives_about_8x8_tokens():
    assert [vit_patch_size(s) for s in (32, 28, 16, 64)] == [4, 4, 2, 8]


def test_family_is_found_along_the_class_hierarchy():
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.resnet import ResNet

    assert family_of(VisionTransformerDistilled) == "VisionTransformer"
    assert family_of(ResNet) == "ResNet"
    assert set(SMALL_INPUT_RULES) >= {"ResNet", "DenseNet", "VGG", "VisionTransformer"}


def test_family_without_rule_warns_and_runs_unchanged():
    with pytest.warns(UserWarning, match="ConvNeXt"):
        model, dim = create_backbone("convnext_atto", small_input=True)
    assert dim == 320
    assert model.stem[0].stride == (4, 4)  # untouched ImageNet stem
    assert _features(model).shape == (2, 320)


def test_unknown_name_lists_close_timm_names_on_one_line():
    with pytest.raises(ConfigError) as info:
        create_backbone("resnet181")
    message = str(info.value)
    assert "'resnet181'" in message and "resnet18" in message and "resnet101" in message
    assert "\n" not in message


def test_pretrained_tag_is_a_known_name():
    model, dim = create_backbone("resnet18.a1_in1k", small_input=True)
    assert dim == 512 and model.conv1.stride == (1, 1)


def test_unknown_pretrained_tag_lists_the_valid_tags():
    with pytest.raises(ConfigError, match="unknown pretrained tag 'nope'") as info:
        create_backbone("resnet18.nope")
    assert "a1_in1k" in str(info.value) and "\n" not in str(info.value)


def test_vit_at_the_wrong_image_size_is_a_one_line_config_error():
    # timm's ViT asserts its input size (AssertionError, not RuntimeError).
    with pytest.raises(ConfigError, match="cannot take 16x16 images") as info:
        create_backbone("vit_tiny_patch16_224", small_input=False, img_size=16)
    assert "model.small_input=true" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("flag", ["small_input", "pretrained"])
def test_small_input_and_pretrained_must_be_booleans(flag):
    with pytest.raises(ConfigError, match=f"model.{flag}. must be true or false, got 'maybe'"):
        create_backbone("resnet10t", **{flag: "maybe"})


def test_bad_timm_kwargs_are_a_one_line_config_error():
    with pytest.raises(ConfigError, match="not_a_kwarg") as info:
        create_backbone("resnet10t", not_a_kwarg=1)
    assert "\n" not in str(info.value)


def test_pretrained_without_weights_offline_is_a_one_line_config_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="pretrained=false") as info:
        create_backbone("resnet10t", pretrained=True)
    assert "'resnet10t'" in str(info.value) and "\n" not in str(info.value)


def test_in_chans_reaches_the_stem():
    model, _ = create_backbone("resnet10t", small_input=True, in_chans=1)
    assert model.conv1[0].in_channels == 1
    assert _features(model, side=16, in_chans=1).shape == (2, 512)


def test_mlp_backbone_flattens_its_input():
    model, dim = create_backbone("mlp", in_chans=1, img_size=8, hidden_dim=16, depth=2)
    assert dim == 16
    assert _features(model, side=8, batch=4, in_chans=1).shape == (4, 16)
    with pytest.raises(ValueError, match="64 values"):
        model(torch.randn(4, 1, 4, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"pretrained": True, "img_size": 8}, "pretrained"), ({}, "img_size"), ({"img_size": 8, "depth": 0}, "depth")],
)
def test_mlp_backbone_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_backbone("mlp", in_chans=1, **kwargs)
