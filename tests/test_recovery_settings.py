"""One definition of the k-means / probe / k-NN options (ncfine.analysis.settings.RecoverySettings)
and one YAML node (conf/recovery/default.yaml), used by every consumer with the keys users know."""

from dataclasses import asdict, fields

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from ncfine.analysis.settings import RecoverySettings
from ncfine.api import compose
from ncfine.callbacks.fine_recovery import FineRecoveryCallback
from ncfine.callbacks.layerwise import LayerwiseCallback
from ncfine.posthoc.analyze_job import INHERITED
from ncfine.utils.config import CONFIG_DIR, register_resolvers
from ncfine.utils.errors import ConfigError
from ncfine.utils.instantiate import instantiate

NAMES = [f.name for f in fields(RecoverySettings)]


def test_yaml_node_is_the_dataclass():
    # OmegaConf reads the YAML as Hydra does (PyYAML would read 1e-4 as a string).
    node = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "recovery" / "default.yaml"))
    assert list(node) == NAMES
    defaults = asdict(RecoverySettings())
    for name in NAMES:
        if name == "seed":
            assert node[name] == "${seed}"
        else:
            expected = list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]
            assert node[name] == expected, name


def test_training_callbacks_take_the_flat_keys_users_write(tmp_path):
    cfg = compose(
        [
            "callbacks=layerwise",
            "callbacks.fine_recovery.kmeans_n_init=3",
            "callbacks.fine_recovery.normalize=l2",
            "callbacks.layerwise.knn_k=7",
            "seed=5",
        ],
        run_dir=tmp_path,
    )
    fine = instantiate(cfg.callbacks.fine_recovery)
    layerwise = instantiate(cfg.callbacks.layerwise)
    assert isinstance(fine, FineRecoveryCallback) and isinstance(layerwise, LayerwiseCallback)
    assert fine.settings == RecoverySettings(kmeans_n_init=3, normalize="l2", seed=5)
    assert layerwise.settings == RecoverySettings(knn_k=7, seed=5)


def test_analyze_takes_the_same_node():
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("analyze", overrides=["analysis.kmeans_n_init=2", "analysis.probe=false"])
    options = dict(cfg.analysis)
    assert options.pop("recovery_splits") == ["test"]
    assert sorted(options) == sorted(NAMES)
    assert RecoverySettings.from_options(options) == RecoverySettings(kmeans_n_init=2, probe=False)
    # A run dir's callbacks settings fill in every option analyze has, and only those.
    assert set(INHERITED) == {"analysis.recovery_splits", *(f"analysis.{n}" for n in NAMES)}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kmeans_ninit": 3}, r"callbacks.fine_recovery: unknown option\(s\) \['kmeans_ninit'\]; valid options are"),
        ({"modes": ["perclass"]}, r"unknown fine-recovery mode\(s\) \['perclass'\]"),
        ({"normalize": "zscore"}, r"unknown fine-recovery normalize 'zscore'"),
    ],
)
def test_bad_options_fail_in_one_line_before_training(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        FineRecoveryCallback(**options)
    assert "\n" not in str(info.value)


def test_one_mode_as_a_string():
    assert RecoverySettings(modes="global").modes == ("global",)
