"""In-process use without the CLI (notebooks, tests, other frameworks).

    from ncfine.api import compose, train
    cfg = compose(["trainer.max_epochs=2"], run_dir="runs/quick")
    results = train(cfg)          # the same results.json payload the CLI writes
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, open_dict

from ncfine.config import CONFIG_DIR, register_resolvers


def compose(overrides: Sequence[str] = (), run_dir: str | os.PathLike = "outputs/notebook") -> DictConfig:
    """The config `ncfine-train <overrides>` would run, writing into `run_dir` instead of Hydra's dir."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ncfine"):
        cfg = hydra_compose(config_name="train", overrides=list(overrides))
    run_dir = Path(run_dir).resolve()
    with open_dict(cfg):
        cfg.paths.root_dir = os.environ.get("NCFINE_ROOT", str(Path.cwd()))
        cfg.paths.output_dir = str(run_dir)
    return cfg


def train(cfg: DictConfig) -> dict[str, Any]:
    from ncfine.pipeline import train as run

    return run(cfg)
