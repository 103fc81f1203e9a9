"""`ncfine-analyze` / `python -m ncfine.posthoc.analyze_cli`: NC and fine-class recovery of a trained model, layer by layer.

    ncfine-analyze run=logs/train/runs/default
    ncfine-analyze model.backbone=resnet18 weights=resnet18.pth data=cifar10 data.source.root=DIR
    ncfine-analyze -m run=DIR_A,DIR_B                  # a sweep of analyses; ncfine-collect tables it

conf/analyze.yaml lists every option. The Python API is `ncfine.analyze(module, data, layers=...)`.
(Not `ncfine/analyze.py`: that module would shadow the `ncfine.analyze` function.)
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ncfine.sweep.launchers import register_launchers
from ncfine.utils.cli import run_reporting_errors
from ncfine.utils.config import CONFIG_DIR, register_resolvers
from ncfine.utils.hydra_errors import report_composition_errors
from ncfine.utils.path_overrides import quote_path_overrides

register_resolvers()
register_launchers()  # hydra/launcher=local|slurm for sweeps of analyses, as for training


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="analyze")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from ncfine.posthoc.analyze_job import analyze_job

    overrides = list(HydraConfig.get().overrides.task)
    results = run_reporting_errors(lambda: analyze_job(cfg, overrides), cfg, "ncfine.analyze")
    if results is None:
        return None  # a failed job of a sweep: recorded in its results.json
    if cfg.get("print_summary", True):
        from ncfine.results.report import format_summary

        cfg_summary, analysis = results.get("config", {}), results.get("analysis", {})
        lines = format_summary(results).splitlines()
        lines[0] = (
            f"ncfine-analyze: {results['status']} in {results.get('wall_time_s') or 0:.1f} s  "
            f"({cfg_summary.get('backbone')} on {cfg_summary.get('data')}; {analysis.get('source')}; "
            f"layers: {', '.join(analysis.get('layers') or [])})"
        )
        print("\n".join(lines))
        print(f"report: {results['run_dir']}/report.md")
    return results.get("metrics", {}).get("val/acc")


def main() -> None:
    # Run dirs are named by their overrides ('=' and ','): quoted here, a path printed by
    # ncfine-train can be passed back as it is.
    sys.argv[1:] = quote_path_overrides(sys.argv[1:], keys=("run", "weights"))
    with report_composition_errors(CONFIG_DIR):
        _main()


if __name__ == "__main__":
    main()
