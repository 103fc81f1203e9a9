"""experiment=cifar10_cpu: the paper's architecture comparison on real CIFAR-10, sized for a 2-core
CPU. The real run needs the dataset (docs/RESULTS.md, section 4); here each arm composes and trains
one step on tiny CIFAR-shaped data."""

import pytest
import yaml

from conftest import FAST
from fakes import write_fake_cifar10
from ncfine.api import compose, train
from ncfine.config import CONFIG_DIR
from ncfine.pipeline import build

ARMS = {  # arm -> (backbone, feature dim at width 0.25, classes trained on)
    "resnet18": ("resnet18", 128, 5),
    "vgg16_bn": ("vgg16_bn", 128, 5),
    "densenet121": ("densenet121", 256, 5),
    "resnet18_fine": ("resnet18", 128, 10),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, n_per_batch=20, n_test=40)
    return root


def test_sweep_is_three_families_and_the_fine_baseline_by_two_seeds():
    experiment = yaml.safe_load((CONFIG_DIR / "experiment" / "cifar10_cpu.yaml").read_text())
    params = experiment["hydra"]["sweeper"]["params"]
    assert params["+cifar10_cpu"].split(",") == list(ARMS)
    assert params["seed"] == "0,1"
    assert sorted(p.stem for p in (CONFIG_DIR / "cifar10_cpu").glob("*.yaml")) == sorted(ARMS)


@pytest.mark.parametrize("arm", list(ARMS))
def test_arm_composes_and_trains_one_step(arm, data_dir, tmp_path):
    backbone, dim, classes = ARMS[arm]
    overrides = ["experiment=cifar10_cpu", f"+cifar10_cpu={arm}", f"data.source.root={data_dir}"]
    cfg = compose(overrides, run_dir=tmp_path / "built")
    assert cfg.model.backbone == backbone and cfg.model.width == 0.25
    assert cfg.data.max_train_samples == 3000 and cfg.trainer.max_epochs == 20
    assert cfg.callbacks.neural_collapse.splits == ["train", "test"]
    datamodule, model, trainer = build(cfg)
    assert (model.feature_dim, model.head.out_features, datamodule.num_fine) == (dim, classes, 10)
    # Analysis epochs are validation epochs, so the test split's features come from validation.
    every = {cfg.callbacks.neural_collapse.every_n_epochs, cfg.callbacks.fine_recovery.every_n_epochs}
    assert every == ({20} if classes == 10 else {5})
    assert all(epoch % trainer.check_val_every_n_epoch == 0 for epoch in every)

    cfg = compose([*overrides, *FAST, "trainer.fast_dev_run=true", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    assert 0.0 <= results["metrics"]["val/acc"] <= 1.0
    assert results["metrics"]["nc/test/nc1"] >= 0.0
    if classes == 5:
        assert 0.0 <= results["metrics"]["fine/test/kmeans_per_coarse_acc"] <= 1.0
