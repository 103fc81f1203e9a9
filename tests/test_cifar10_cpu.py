"""experiment=cifar10_cpu (the paper's architecture comparison on real CIFAR-10, sized for a 2-core
CPU to reach the terminal phase) and experiment=cifar10_cpu_grid (its lr x wd grid). The real runs
need the dataset (docs/RESULTS.md, section 4); here each arm composes and trains one step on tiny
CIFAR-shaped data."""

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import FAST
from fakes import write_fake_cifar10
from ncfine.api import compose, train
from ncfine.run.pipeline import build
from ncfine.utils.config import CONFIG_DIR

ARMS = {  # arm -> (backbone, feature dim at width 0.25, classes trained on)
    "resnet18": ("resnet18", 128, 5),
    "vgg16_bn": ("vgg16_bn", 128, 5),
    "densenet121": ("densenet121", 256, 5),
    "resnet18_fine": ("resnet18", 128, 10),
}
# The arms group also holds experiment=cifar10_cpu_gen_ref's VGG at lr 0.01 (tests/test_cifar10_cpu_gen.py).
OTHER_ARMS = ("vgg16_bn_lr0.01",)


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
    assert sorted(p.stem for p in (CONFIG_DIR / "cifar10_cpu").glob("*.yaml")) == sorted([*ARMS, *OTHER_ARMS])


@pytest.mark.parametrize("arm", list(ARMS))
def test_arm_composes_and_trains_one_step(arm, data_dir, tmp_path):
    backbone, dim, classes = ARMS[arm]
    overrides = ["experiment=cifar10_cpu", f"+cifar10_cpu={arm}", f"data.source.root={data_dir}"]
    cfg = compose(overrides, run_dir=tmp_path / "built")
    assert cfg.model.backbone == backbone and cfg.model.width == 0.25
    assert (cfg.data.max_train_samples, cfg.data.max_test_samples, cfg.trainer.max_epochs) == (500, 2000, 150)
    assert cfg.optimizer.weight_decay == 5e-3
    assert cfg.callbacks.neural_collapse.splits == ["train", "test"]
    assert cfg.callbacks.fine_recovery.splits == ["train", "test"]
    datamodule, model, trainer = build(cfg)
    assert (model.feature_dim, model.head.out_features, datamodule.num_fine) == (dim, classes, 10)
    # Analysis epochs are validation epochs, so the test split's features come from validation.
    every = {cfg.callbacks.neural_collapse.every_n_epochs, cfg.callbacks.fine_recovery.every_n_epochs}
    assert every == ({150} if classes == 10 else {10})
    assert all(epoch % trainer.check_val_every_n_epoch == 0 for epoch in every)

    cfg = compose([*overrides, *FAST, "trainer.fast_dev_run=true", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    assert 0.0 <= results["metrics"]["val/acc"] <= 1.0
    assert results["metrics"]["nc/test/nc1"] >= 0.0
    if classes == 5:
        for split in ("train", "test"):
            assert 0.0 <= results["metrics"][f"fine/{split}/kmeans_per_coarse_acc"] <= 1.0


GRID_ARMS = ("resnet18", "vgg16_bn")
GRID_CELLS = [(lr, wd) for lr in (0.1, 0.01, 0.001) for wd in (5e-3, 5e-4, 5e-5)]


def test_grid_is_the_papers_lr_by_wd_for_resnet_and_vgg_on_one_seed():
    experiment = yaml.safe_load((CONFIG_DIR / "experiment" / "cifar10_cpu_grid.yaml").read_text())
    params = experiment["hydra"]["sweeper"]["params"]
    assert params["+cifar10_cpu"].split(",") == list(GRID_ARMS)
    assert [float(v) for v in params["optimizer.lr"].split(",")] == [0.1, 0.01, 0.001]
    assert [float(v) for v in params["optimizer.weight_decay"].split(",")] == [5e-3, 5e-4, 5e-5]
    assert str(params["seed"]) == "0"


@pytest.mark.parametrize("arm", GRID_ARMS)
def test_grid_arm_composes_the_cifar10_cpu_recipe_and_trains_one_step(arm, data_dir, tmp_path):
    lr, wd = GRID_CELLS[0] if arm == "resnet18" else GRID_CELLS[-1]
    overrides = [
        "experiment=cifar10_cpu_grid",
        f"+cifar10_cpu={arm}",
        f"optimizer.lr={lr}",
        f"optimizer.weight_decay={wd}",
        f"data.source.root={data_dir}",
    ]
    cfg = compose(overrides, run_dir=tmp_path / "built")
    recipe = compose(["experiment=cifar10_cpu", f"+cifar10_cpu={arm}"], run_dir=tmp_path / "recipe")
    assert cfg.model.backbone == arm and cfg.task_name == "cifar10_cpu_grid"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (lr, wd)
    # the same recipe and length as experiment=cifar10_cpu; only the analysis cadence differs
    for key in ("model.width", "data.max_train_samples", "data.max_test_samples", "trainer.max_epochs"):
        assert OmegaConf.select(cfg, key) == OmegaConf.select(recipe, key), key
    assert cfg.callbacks.fine_recovery.splits == ["train", "test"]
    assert cfg.callbacks.fine_recovery.every_n_epochs == cfg.trainer.check_val_every_n_epoch == 50
    assert cfg.trainer.max_epochs % 50 == 0  # the last epoch, which the heatmaps read, is analysed

    cfg = compose([*overrides, *FAST, "trainer.fast_dev_run=true", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    assert results["config"]["lr"] == lr and results["config"]["weight_decay"] == wd
    for split in ("train", "test"):
        assert 0.0 <= results["metrics"][f"fine/{split}/kmeans_per_coarse_acc"] <= 1.0
