"""`ncfine-train` / `python -m ncfine.train`: compose the config, run it, report.

    ncfine-train                                   # the default: resnet10t on digits, coarse labels, CPU
    ncfine-train data=cifar10 data.source.root=DIR model.backbone=resnet18 trainer=gpu
    ncfine-train -m experiment=smoke_grid          # a sweep (Hydra multirun)
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from ncfine.config import CONFIG_DIR, register_launchers, register_resolvers
from ncfine.utils.errors import NcfineError
from ncfine.utils.hydra_errors import report_composition_errors

register_resolvers()
register_launchers()

INTERRUPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a terminated process


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from ncfine.pipeline import train
    from ncfine.report import print_summary

    try:
        results = train(cfg)
    except SIGTERMException:
        # Lightning's SIGTERMException is a SystemExit with code None, i.e. exit status 0: a job
        # scheduler would take the preempted run for a finished one.
        print(f"ncfine: interrupted; checkpoint saved, re-run the same command to resume "
              f"({cfg.paths.output_dir})", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
    except NcfineError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if _in_multirun():
            return None  # recorded as failed in results.json; the sweep goes on
        print(f"ncfine: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        if _in_multirun():
            # results.json says failed with the one-line error; the traceback goes to the job's
            # log (RUN_DIR/train.log and the launcher's output), or nobody could debug the job.
            run_dir = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
            logging.getLogger("ncfine.train").exception(f"job failed: {run_dir}")
            return None
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
    # Config composition errors (data=cifar11, optimizer.lrr=0.1, experiment=nope) happen inside
    # hydra.main before _main runs: one `ncfine: error:` line and exit 2 for those too.
    with report_composition_errors(CONFIG_DIR):
        _main()


if __name__ == "__main__":
    main()
