"""Every shipped config composes and builds, and every data source trains end to end (fast_dev_run)."""

import json

import pytest

from conftest import FAST
from fakes import write_fake_cifar10, write_fake_cifar100, write_fake_imagefolder
from ncfine.api import compose, train
from ncfine.optim.param_groups import build_param_groups
from ncfine.run.pipeline import build
from ncfine.run.validation import validate_config
from ncfine.utils.config import CONFIG_DIR

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root, n_per_batch=40, n_test=40)
    write_fake_cifar100(root)
    write_fake_imagefolder(root / "folder")
    return root


def test_every_experiment_is_tested():
    assert {
        "paper_cifar10",
        "paper_cifar10_fine",
        "paper_cifar100",
        "paper_grid",
        "smoke_grid",
        "synthetic_theory",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment, data_dir, tmp_path):
    cfg = compose(
        [f"experiment={experiment}", f"paths.data_dir={data_dir}", "trainer.accelerator=cpu"], run_dir=tmp_path / "run"
    )
    datamodule, model, trainer = build(cfg)
    assert model.head.out_features == datamodule.num_coarse
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if experiment in ("paper_cifar10", "paper_cifar10_fine"):
        assert cfg.model.backbone == "resnet18" and cfg.optimizer.lr == 0.1 and cfg.optimizer.weight_decay == 5e-4
        assert datamodule.num_fine == 10 and datamodule.num_coarse == (10 if experiment.endswith("fine") else 5)
    if experiment.startswith("paper_"):  # the paper's SGD decays every parameter, norm and bias included
        groups = build_param_groups(
            model, cfg.optimizer.weight_decay, exclude_norm_bias=model.hparams.exclude_norm_bias_from_wd
        )
        assert {group["weight_decay"] for group in groups} == {cfg.optimizer.weight_decay}
    if experiment == "paper_cifar100":
        assert (datamodule.num_coarse, datamodule.num_fine) == (20, 100)


SOURCES = {
    "digits": [],
    "synthetic": ["data=synthetic", "model=mlp"],
    "cifar10": ["data=cifar10"],
    "cifar100": ["data=cifar100"],
    "imagefolder": [
        "data=imagefolder",
        "data.source.root={data}/folder",
        "data.source.mapping={data}/folder/mapping.yaml",
    ],
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_fast_dev_run_trains_every_data_source(source, data_dir, tmp_path):
    overrides = [o.format(data=data_dir) for o in SOURCES[source]]
    cfg = compose(
        [
            *overrides,
            *FAST,
            f"paths.data_dir={data_dir}",
            "trainer.fast_dev_run=true",
            "logger=none",
            "data.num_workers=0",
            "model.backbone=resnet10t" if source != "synthetic" else "seed=0",
        ],
        run_dir=tmp_path / "run",
    )
    results = train(cfg)
    assert results["status"] == "completed", results["error"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "completed"
    assert 0.0 <= results["metrics"]["val/acc"] <= 1.0
    assert results["metrics"]["nc/train/nc1"] >= 0.0


def test_null_entry_disables_a_callback_or_logger(tmp_path):
    cfg = compose(["callbacks=analysis", "callbacks.fine_recovery=null", "logger.csv=null"], run_dir=tmp_path / "run")
    _, _, trainer = build(cfg)
    names = {type(callback).__name__ for callback in trainer.callbacks}
    assert "NeuralCollapseCallback" in names and "FineRecoveryCallback" not in names
    assert trainer.loggers == []


CALLBACK_GROUPS = sorted(p.stem for p in (CONFIG_DIR / "callbacks").glob("*.yaml"))


@pytest.mark.parametrize("callbacks", CALLBACK_GROUPS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_callbacks_group(experiment, callbacks, tmp_path):
    # Experiments set the top-level analysis.* keys, never fields inside callbacks.*: any group
    # composes, reads them if it has analysis callbacks, and passes the config checks.
    cfg = compose([f"experiment={experiment}", f"callbacks={callbacks}", "trainer.accelerator=cpu"], tmp_path / "run")
    validate_config(cfg)
    nodes = {name: node for name, node in (cfg.callbacks or {}).items() if node is not None}
    assert all("_target_" in node for node in nodes.values())
    if "neural_collapse" in nodes:
        assert nodes["neural_collapse"].every_n_epochs == cfg.analysis.every_n_epochs
        assert list(nodes["neural_collapse"].splits) == list(cfg.analysis.nc_splits)
        assert list(nodes["fine_recovery"].splits) == list(cfg.analysis.recovery_splits)
    if "layerwise" in nodes:
        assert nodes["layerwise"].every_n_epochs == cfg.analysis.layerwise_every_n_epochs


def test_experiment_analysis_keys_reach_a_users_own_callbacks_group(tmp_path):
    # A group of the user's own (on Hydra's search path) reads the experiment's cadence too.
    group = tmp_path / "myconf" / "callbacks"
    group.mkdir(parents=True)
    (group / "mine.yaml").write_text(
        "neural_collapse:\n  _target_: ncfine.callbacks.NeuralCollapseCallback\n"
        "  every_n_epochs: ${analysis.every_n_epochs}\n  splits: ${analysis.recovery_splits}\n"
    )
    cfg = compose(
        [
            f"hydra.searchpath=[file://{tmp_path / 'myconf'}]",
            "experiment=cifar10_cpu",
            "callbacks=mine",
            "analysis.recovery_splits=[train,test]",
        ],
        tmp_path / "run",
    )
    validate_config(cfg)
    assert list(cfg.callbacks) == ["neural_collapse"]
    assert cfg.callbacks.neural_collapse.every_n_epochs == cfg.analysis.every_n_epochs == 10
    assert list(cfg.callbacks.neural_collapse.splits) == ["train", "test"]
