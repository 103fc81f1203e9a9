"""`ncfine-train` / `python -m ncfine.train`: compose the config, run it, report.

    ncfine-train                                   # the default: resnet10t on digits, coarse labels, CPU
    ncfine-train data=cifar10 data.source.root=DIR model.backbone=resnet18 trainer=gpu
    ncfine-train -m experiment=smoke_grid          # a sweep (Hydra multirun)
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from ncfine.config import CONFIG_DIR, register_resolvers
from ncfine.utils.errors import NcfineError

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from ncfine.pipeline import train
    from ncfine.report import print_summary

    try:
        results = train(cfg)
    except NcfineError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if _in_multirun():
            return None  # recorded as failed in results.json; the sweep goes on
        print(f"ncfine: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        if _in_multirun():
            return None  # the traceback is in the job's log; results.json says failed
        raise
    if cfg.get("print_summary", True) and results:
        print_summary(results)
    if results and results.get("status") == "diverged" and not _in_multirun():
        sys.exit(3)
    return results.get("metrics", {}).get("val/acc") if results else None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
