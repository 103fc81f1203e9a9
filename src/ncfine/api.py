"""In-process use without the CLI (notebooks, tests, other frameworks).

from ncfine.api import compose, train
cfg = compose(["trainer.max_epochs=2"], run_dir="runs/quick")
results = train(cfg)          # the same results.json payload the CLI writes

from ncfine.api import analyze, compose_analyze, analyze_run
metrics = analyze(model, datamodule, layers=["layer3", "penultimate"])       # any nn.Module
results = analyze_run(compose_analyze(["run=runs/quick"], run_dir="runs/quick_analysis"), ["run=runs/quick"])

from ncfine.api import compose_discover, discover_run
results = discover_run(compose_discover(["run=runs/quick"], run_dir="runs/quick_discovery"), ["run=runs/quick"])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, open_dict

from ncfine.utils.config import CONFIG_DIR, register_resolvers


def compose(
    overrides: Sequence[str] = (), run_dir: str | os.PathLike = "outputs/notebook", config_name: str = "train"
) -> DictConfig:
    """The config `ncfine-train <overrides>` would run, writing into `run_dir` instead of Hydra's dir."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ncfine"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    run_dir = Path(run_dir).resolve()
    with open_dict(cfg):
        cfg.paths.root_dir = os.environ.get("NCFINE_ROOT", str(Path.cwd()))
        cfg.paths.output_dir = str(run_dir)
    return cfg


def train(cfg: DictConfig) -> dict[str, Any]:
    from ncfine.run.pipeline import train as run

    return run(cfg)


def compose_analyze(overrides: Sequence[str] = (), run_dir: str | os.PathLike = "outputs/analysis") -> DictConfig:
    """The config `ncfine-analyze <overrides>` would run, writing into `run_dir`."""
    from ncfine.utils.path_overrides import quote_path_overrides

    return compose(quote_path_overrides(overrides, keys=("run", "weights")), run_dir, config_name="analyze")


def analyze_run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run `ncfine-analyze` in-process; `overrides` (those given to `compose_analyze`) tell which
    settings a `run=DIR` must not fill in from the run. Returns the results.json payload."""
    from ncfine.posthoc.analyze_job import analyze_job

    return analyze_job(cfg, overrides)


def compose_discover(overrides: Sequence[str] = (), run_dir: str | os.PathLike = "outputs/discovery") -> DictConfig:
    """The config `ncfine-discover <overrides>` would run, writing into `run_dir`."""
    from ncfine.utils.path_overrides import quote_path_overrides

    return compose(quote_path_overrides(overrides, keys=("run", "weights")), run_dir, config_name="discover")


def discover_run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run `ncfine-discover` in-process (discovery.json, report.md, montages in the run dir);
    returns the results.json payload."""
    from ncfine.posthoc.discover_job import discover_job

    return discover_job(cfg, overrides)


def analyze(module, data, layers=None, **kwargs) -> dict[str, float]:
    """`ncfine.analyze`: see `ncfine.posthoc.analyze.run_analysis`."""
    from ncfine.posthoc.analyze import analyze as run

    return run(module, data, layers, **kwargs)
