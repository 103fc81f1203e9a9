"""`ncfine-train` / `python -m ncfine.train`: compose the config, run it, report.

ncfine-train                                   # the default: resnet10t on digits, coarse labels, CPU
ncfine-train data=cifar10 data.source.root=DIR model.backbone=resnet18 trainer=gpu
ncfine-train -m experiment=smoke_grid          # a sweep (Hydra multirun)
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ncfine.sweep.launchers import register_launchers
from ncfine.utils.cli import in_multirun, run_reporting_errors
from ncfine.utils.config import CONFIG_DIR, register_resolvers
from ncfine.utils.hydra_errors import report_composition_errors

register_resolvers()
register_launchers()

INTERRUPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a terminated process


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from ncfine.results.report import print_summary
    from ncfine.run.pipeline import train

    try:
        results = run_reporting_errors(lambda: train(cfg), cfg, "ncfine.train")
    except SIGTERMException:
        # Lightning's SIGTERMException is a SystemExit with code None, i.e. exit status 0: a job
        # scheduler would take the preempted run for a finished one.
        print(
            f"ncfine: interrupted; checkpoint saved, re-run the same command to resume ({cfg.paths.output_dir})",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED_EXIT_CODE)
    if cfg.get("print_summary", True) and results:
        print_summary(results)
    if results and results.get("status") == "diverged" and not in_multirun():
        sys.exit(3)
    return results.get("metrics", {}).get("val/acc") if results else None


def main() -> None:
    # Config composition errors (data=cifar11, optimizer.lrr=0.1, experiment=nope) happen inside
    # hydra.main before _main runs: one `ncfine: error:` line and exit 2 for those too.
    with report_composition_errors(CONFIG_DIR):
        _main()


if __name__ == "__main__":
    main()
