"""experiment=cifar10_cpu_10k and its parts (issue #39: the paper's contrast on held-out images at
10,000 training images, with the fine-label reference): every part composes the same recipe into one
sweep dir, differing only where it says; every arm trains one step on tiny CIFAR-shaped data with its
baselines and the reconstructed fine labels. The real runs need the dataset (docs/RESULTS.md, section 10)."""

import pytest
from omegaconf import OmegaConf

from conftest import FAST
from fakes import write_fake_cifar10
from ncfine.api import compose, train
from ncfine.run.pipeline import build

# part -> (arm, backbone, lr, seeds)
PARTS = {
    "cifar10_cpu_10k": ("resnet18", "resnet18", 0.05, ["0"]),
    "cifar10_cpu_10k_seed1": ("resnet18", "resnet18", 0.05, ["1"]),
    "cifar10_cpu_10k_vgg": ("vgg16_bn", "vgg16_bn", 0.05, ["0", "1"]),
    "cifar10_cpu_10k_vgg_lr0.01": ("vgg16_bn_lr0.01", "vgg16_bn", 0.01, ["0"]),
    "cifar10_cpu_10k_fine": ("resnet18_fine", "resnet18", 0.05, ["0"]),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, n_per_batch=20, n_test=40)
    return root


def test_every_part_sweeps_into_one_sweep_dir_with_distinct_jobs():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ncfine.utils.config import CONFIG_DIR, register_resolvers

    register_resolvers()
    jobs = set()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ncfine"):
        for part, (arm, _, _, seeds) in PARTS.items():
            cfg = hydra_compose("train", overrides=[f"experiment={part}"], return_hydra_config=True)
            assert (cfg.task_name, cfg.sweep_name) == ("cifar10_cpu_10k", "cifar10_cpu_10k")
            params = OmegaConf.to_container(cfg.hydra.sweeper.params)
            assert params["+cifar10_cpu"] == arm
            assert (str(params["data.max_train_samples"]), str(params["optimizer.weight_decay"])) == ("10000", "5e-4")
            assert str(params["seed"]).split(",") == seeds
            for seed in seeds:
                assert (arm, seed) not in jobs, f"{part} repeats {arm} seed {seed}"
                jobs.add((arm, seed))
    assert len(jobs) == 6


@pytest.mark.parametrize("part", PARTS)
def test_part_composes_the_recipe_and_trains_one_step_with_its_baselines(part, data_dir, tmp_path):
    arm, backbone, lr, _ = PARTS[part]
    overrides = [f"experiment={part}", f"+cifar10_cpu={arm}", f"data.source.root={data_dir}"]
    cfg = compose(overrides, run_dir=tmp_path / "built")
    assert cfg.model.backbone == backbone and cfg.model.width == 0.25
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.optimizer.nesterov) == (lr, 5e-4, True)
    assert (cfg.data.max_train_samples, cfg.data.max_test_samples, cfg.trainer.max_epochs) == (10000, None, 100)
    assert cfg.callbacks.fine_recovery.splits == ["train", "test"] and cfg.callbacks.fine_recovery.reconstruct
    assert list(cfg.callbacks.baselines.baselines) == ["input", "init"]
    fine_labels = arm == "resnet18_fine"
    every = {cfg.callbacks.neural_collapse.every_n_epochs, cfg.callbacks.fine_recovery.every_n_epochs}
    assert every == ({100} if fine_labels else {10})
    assert all(epoch % cfg.trainer.check_val_every_n_epoch == 0 for epoch in every)
    _, model, _ = build(cfg)
    assert model.head.out_features == (10 if fine_labels else 5)

    cfg = compose([*overrides, *FAST, "trainer.fast_dev_run=true", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    metrics = results["metrics"]
    assert results["config"]["max_train_samples"] == 10000
    if fine_labels:
        assert not any("reconstructed" in key for key in metrics)
        return
    for split in ("train", "test"):
        # Bounded by the coarse accuracy of the same samples, as the head sees them.
        assert 0.0 <= metrics[f"fine/{split}/reconstructed_acc"] <= 1.0
        for name in ("input", "init"):
            assert 0.0 <= metrics[f"baseline/{name}/{split}/reconstructed_acc"] <= 1.0
