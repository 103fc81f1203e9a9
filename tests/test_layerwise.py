"""Layer-wise extraction: layer discovery per timm family, hooks == forward_intermediates, pooling,
identity stages, and the `callbacks=layerwise` training callback."""

import pytest
import torch
import torch.nn as nn

from ncfine.analysis.layerwise import layer_key, layerwise_metrics
from ncfine.features import (
    PENULTIMATE,
    LayerTaps,
    as_layer_model,
    default_layers,
    pool_output,
    resolve_layers,
    stage_layers,
)
from ncfine.models.backbone import create_backbone
from ncfine.utils.errors import ConfigError

# Tiny members of each family (pretrained=False, 32x32 inputs): the same classes and module names
# as the full models, a fraction of the compute.
TINY = {
    "resnet": ("resnet10t", {}),
    "vgg": ("vgg11", {}),
    "densenet": ("densenet121", {"growth_rate": 8, "block_config": (1, 1, 1, 1)}),
    "vit": ("vit_tiny_patch16_224", {"depth": 2, "embed_dim": 32, "num_heads": 2}),
}
EXPECTED = {
    "resnet": ["act1", "layer1", "layer2", "layer3", "layer4"],
    "vgg": ["features.1", "features.4", "features.9", "features.14", "features.19", "features.20"],
    "densenet": [
        "features.norm0",
        "features.denseblock1",
        "features.denseblock2",
        "features.denseblock3",
        "features.norm5",
    ],
    "vit": ["blocks.0", "blocks.1"],
}


def _tiny(family):
    name, kwargs = TINY[family]
    model, _ = create_backbone(name, small_input=True, in_chans=3, img_size=32, **kwargs)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(TINY))
def family_model(request):
    return request.param, _tiny(request.param)


def test_default_layers_are_the_timm_stages_then_penultimate(family_model):
    family, model = family_model
    assert stage_layers(model) == EXPECTED[family]
    assert default_layers(model) == EXPECTED[family] + [PENULTIMATE]


def test_hooks_give_the_features_of_forward_intermediates(family_model):
    family, model = family_model
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = stage_layers(model)
    with torch.no_grad(), LayerTaps(as_layer_model(model), layers, pool="avg") as taps:
        hooked = taps.run(x)
        reference = model.forward_intermediates(x, intermediates_only=True)
    assert list(hooked) == layers  # fired in depth order
    assert len(reference) == len(layers)
    for name, ref in zip(layers, reference):
        torch.testing.assert_close(hooked[name], ref.float().mean((2, 3)), rtol=1e-5, atol=1e-6, msg=name)


def test_flatten_and_max_pooling_of_a_feature_map():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert pool_output(x, "avg").shape == (2, 3)
    torch.testing.assert_close(pool_output(x, "max"), x.amax((2, 3)))
    flat = pool_output(x, "flatten", flatten_size=2)
    assert flat.shape == (2, 3 * 2 * 2)
    torch.testing.assert_close(flat, nn.functional.adaptive_avg_pool2d(x, 2).flatten(1))
    assert pool_output(x[:, :, :1, :1], "flatten", flatten_size=4).shape == (2, 3)  # a 1x1 map stays 1x1


def test_penultimate_is_the_heads_input_of_a_coarse_classifier():
    from ncfine.models import CoarseClassifier

    model = CoarseClassifier("resnet10t", 5, img_size=16).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad(), LayerTaps(as_layer_model(model), ["layer4", PENULTIMATE], logits=True) as taps:
        out = taps.run(x)
        torch.testing.assert_close(out[PENULTIMATE], model.features(x))
        torch.testing.assert_close(out["_logits"], model(x))


def test_unknown_layer_names_the_value_and_close_matches():
    model = _tiny("resnet")
    with pytest.raises(ConfigError, match=r"unknown layer 'layer9' in ResNet; closest: layer4"):
        resolve_layers(model, ["layer9"])
    assert resolve_layers(model, "layer2,penultimate") == ["layer2", PENULTIMATE]


def _digits(max_samples=150):
    from ncfine.data import HierarchicalDataModule

    dm = HierarchicalDataModule("digits", device_resident=False)
    dm.source.image_size = 16
    dm.setup()
    return dm


FAST_SETTINGS = dict(max_samples=150, kmeans_n_init=2, probe_max_iter=30)


def test_stages_replaced_by_identity_keep_the_earlier_layers_metrics():
    from ncfine.posthoc.analyze import run_analysis

    torch.manual_seed(0)
    dm = _digits()
    model, _ = create_backbone("resnet10t", small_input=True, img_size=16)
    full = run_analysis(model, dm, ["layer2"], **FAST_SETTINGS).metrics
    model.layer3, model.layer4 = nn.Identity(), nn.Identity()
    cut = run_analysis(model, dm, ["layer2", "layer4", PENULTIMATE], **FAST_SETTINGS).metrics
    for key in ("train/nc1", "test/fine/nc1", "test/kmeans_per_coarse_acc", "probe_acc"):
        assert cut[f"layer/layer4/{key}"] == cut[f"layer/layer2/{key}"] == full[f"layer/layer2/{key}"], key
        # penultimate = timm's global average pool of the same map (another summation order)
        assert cut[f"layer/penultimate/{key}"] == pytest.approx(full[f"layer/layer2/{key}"], rel=1e-4), key


def test_a_network_of_identities_keeps_input_level_recovery():
    from ncfine.posthoc.analyze import run_analysis

    dm = _digits()
    model, _ = create_backbone("resnet10t", small_input=True, img_size=16)
    for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        setattr(model, name, nn.Identity())
    found = run_analysis(model, dm, ["input", PENULTIMATE], pool="avg", **FAST_SETTINGS).metrics
    for key in ("test/kmeans_per_coarse_acc", "test/kmeans_global_acc", "probe_acc", "train/fine/nc1"):
        assert found[f"layer/penultimate/{key}"] == pytest.approx(found[f"layer/input/{key}"], rel=1e-5), key


def test_layer_keys_rename_the_training_keys():
    assert layer_key("layer3", "nc/train/nc1") == "layer/layer3/train/nc1"
    assert layer_key("layer3", "nc/test/fine/nc1") == "layer/layer3/test/fine/nc1"
    assert layer_key("features.9", "fine/test/kmeans_global_acc") == "layer/features.9/test/kmeans_global_acc"
    assert layer_key("blocks.0", "fine/probe_acc") == "layer/blocks.0/probe_acc"
    g = torch.Generator().manual_seed(0)
    coarse = torch.arange(40) % 2
    fine = torch.arange(40) % 4
    h = torch.randn(40, 6, generator=g) + fine[:, None].float()
    metrics = layerwise_metrics(
        {"a": {"train": (h, coarse, fine)}, "b": {"train": (2 * h, coarse, fine)}},
        num_coarse=2,
        num_fine=4,
        probe=False,
        knn=False,
    )
    assert metrics["layer/a/depth"] == 0 and metrics["layer/b/depth"] == 1 and metrics["layer/b/dim"] == 6
    assert metrics["layer/a/train/nc1"] == pytest.approx(metrics["layer/b/train/nc1"])  # NC1 is scale-free
    assert not any(k.startswith(("nc/", "fine/")) for k in metrics)  # no head_layer: no plain keys


def test_layerwise_callback_logs_every_layer_in_training(tmp_path):
    from conftest import FAST
    from ncfine.api import compose, train

    cfg = compose(
        FAST
        + [
            "data=synthetic",
            "model=mlp",
            "trainer.max_epochs=1",
            "callbacks=layerwise",
            "callbacks.layerwise.max_samples=200",
            "callbacks.layerwise.kmeans_n_init=2",
            "callbacks.layerwise.layers=[net.3,net.6,penultimate]",
            "logger=csv",
        ],
        run_dir=tmp_path / "run",
    )
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    metrics = results["metrics"]
    assert [metrics[f"layer/{n}/depth"] for n in ("net.3", "net.6", "penultimate")] == [0.0, 1.0, 2.0]
    for layer in ("net.3", "net.6", "penultimate"):
        assert 0.0 <= metrics[f"layer/{layer}/test/kmeans_per_coarse_acc"] <= 1.0
        assert metrics[f"layer/{layer}/train/nc1"] > 0
    assert "layer/penultimate/train/nc3" in metrics and "layer/net.3/train/nc3" not in metrics
    assert (tmp_path / "run" / "plots" / "depth_curves.png").stat().st_size > 0
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "layer/net.6/test/kmeans_global_acc" in header


def test_per_split_caps_combine_with_max_samples_and_reject_bad_values():
    from ncfine.posthoc.analyze import run_analysis

    dm = _digits()
    model, _ = create_backbone("resnet10t", small_input=True, img_size=16)
    settings = dict(FAST_SETTINGS, max_samples_per_split={"train": 100, "test": None})
    result = run_analysis(model, dm, [PENULTIMATE], **settings)
    # The smaller of max_samples (150) and the split's cap (train: 100; test: none) wins.
    assert result.num_samples == {"train": 100, "test": 150}
    for bad, message in (
        ({"train": 0}, r"max_samples_per_split\.train must be a positive integer or null, got 0"),
        ({"val": 10}, r"unknown split\(s\) \['val'\] in max_samples_per_split; valid splits are"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_analysis(model, dm, [PENULTIMATE], **dict(FAST_SETTINGS, max_samples_per_split=bad))
