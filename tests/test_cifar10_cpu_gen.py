"""experiment=cifar10_cpu_gen and its parts (issue #34: collapse that generalises, at the paper's
recipe, against the pixel and init baselines): every part composes the same recipe into one sweep
dir, differing only where it says; every arm of every part trains one step on tiny CIFAR-shaped
data with its baselines. The real runs need the dataset (docs/RESULTS.md, section 8)."""

import pytest
from omegaconf import OmegaConf

from conftest import FAST
from fakes import write_fake_cifar10
from ncfine.api import compose, train
from ncfine.run.pipeline import build

# part -> {arm: (backbone, lr, weight decay, training images)}
PARTS = {
    "cifar10_cpu_gen": {"resnet18": ("resnet18", 0.05, 5e-4, 3000), "vgg16_bn": ("vgg16_bn", 0.05, 5e-4, 3000)},
    "cifar10_cpu_gen_wd5e-3": {"resnet18": ("resnet18", 0.05, 5e-3, 3000), "vgg16_bn": ("vgg16_bn", 0.05, 5e-3, 3000)},
    "cifar10_cpu_gen_ref": {
        "vgg16_bn_lr0.01": ("vgg16_bn", 0.01, 5e-4, 3000),
        "resnet18_fine": ("resnet18", 0.05, 5e-4, 3000),
    },
    "cifar10_cpu_gen_500": {"resnet18": ("resnet18", 0.05, 5e-4, 500), "vgg16_bn": ("vgg16_bn", 0.05, 5e-3, 500)},
    "cifar10_cpu_gen_densenet": {"densenet121": ("densenet121", 0.05, 5e-4, 3000)},
}
CASES = [(part, arm) for part, arms in PARTS.items() for arm in arms]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, n_per_batch=20, n_test=40)
    return root


def test_every_part_sweeps_into_one_sweep_dir_with_distinct_job_names(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ncfine.utils.config import CONFIG_DIR, register_resolvers

    register_resolvers()
    jobs = set()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ncfine"):
        for part, arms in PARTS.items():
            cfg = hydra_compose("train", overrides=[f"experiment={part}"], return_hydra_config=True)
            assert (cfg.task_name, cfg.sweep_name) == ("cifar10_cpu_gen", "cifar10_cpu_gen")
            params = OmegaConf.to_container(cfg.hydra.sweeper.params)
            assert params["+cifar10_cpu"].split(",") == list(arms)
            # The training-set size and the weight decay are named in every part's job dirs.
            sizes, decays = str(params["data.max_train_samples"]), str(params["optimizer.weight_decay"])
            seeds = str(params["seed"]).split(",")
            assert seeds == (["0"] if part == "cifar10_cpu_gen_densenet" else ["0", "1"])
            for arm in arms:
                for size in sizes.split(","):
                    for wd in decays.split(","):
                        for seed in seeds:
                            job = (arm, int(size), float(wd), int(seed))
                            assert job not in jobs, f"{part} repeats {job}"
                            jobs.add(job)
    assert len(jobs) == 4 + 4 + 4 + 8 + 1


@pytest.mark.parametrize("part, arm", CASES)
def test_arm_composes_the_recipe_and_trains_one_step_with_its_baselines(part, arm, data_dir, tmp_path):
    backbone, lr, wd, images = PARTS[part][arm]
    overrides = [f"experiment={part}", f"+cifar10_cpu={arm}", f"data.source.root={data_dir}"]
    if part == "cifar10_cpu_gen_500":
        overrides.append(f"optimizer.weight_decay={wd}")  # the part sweeps both; one per case here
    cfg = compose(overrides, run_dir=tmp_path / "built")
    assert cfg.model.backbone == backbone and cfg.model.width == 0.25
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (lr, wd)
    assert (cfg.data.max_train_samples, cfg.data.max_test_samples, cfg.trainer.max_epochs) == (images, None, 150)
    assert cfg.callbacks.fine_recovery.splits == ["train", "test"]
    assert list(cfg.callbacks.baselines.baselines) == ["input", "init"]
    every = {cfg.callbacks.neural_collapse.every_n_epochs, cfg.callbacks.fine_recovery.every_n_epochs}
    fine_labels = arm == "resnet18_fine"
    assert every == ({150} if fine_labels else {15})
    assert all(epoch % cfg.trainer.check_val_every_n_epoch == 0 for epoch in every)
    datamodule, model, _ = build(cfg)
    assert model.head.out_features == (10 if fine_labels else 5)

    cfg = compose([*overrides, *FAST, "trainer.fast_dev_run=true", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    metrics = results["metrics"]
    assert results["config"]["max_train_samples"] == images
    assert metrics["baseline/init/train/nc1"] >= 0.0 and metrics["baseline/input/test/nc1"] >= 0.0
    if not fine_labels:
        for name in ("input", "init"):
            for split in ("train", "test"):
                assert 0.0 <= metrics[f"baseline/{name}/{split}/kmeans_per_coarse_acc"] <= 1.0
            assert 0.0 <= metrics[f"baseline/{name}/probe_acc"] <= 1.0
