"""`ncfine-discover`: the sub-classes a network separates inside each class, without fine labels.

    ncfine-discover run=logs/train/runs/default
    ncfine-discover run=DIR split=test layer=layer3 max_k=6
    ncfine-discover model.backbone=resnet18 weights=r18.pth data=imagefolder_coarse data.source.root=DIR

conf/discover.yaml lists every option; the job is `ncfine.posthoc.discover_job`, the analysis
`ncfine.analysis.discovery`.
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
register_launchers()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="discover")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ncfine.posthoc.discover_job import discover_job

    overrides = list(HydraConfig.get().overrides.task)
    results = run_reporting_errors(lambda: discover_job(cfg, overrides), cfg, "ncfine.discover")
    if results is None or not cfg.get("print_summary", True):
        return
    discovery = results.get("discovery", {})
    print(
        f"ncfine-discover: {results['status']} in {results.get('wall_time_s') or 0:.1f} s "
        f"({results.get('config', {}).get('backbone')}; {discovery.get('source')}; {discovery.get('split')} split, "
        f"layer {discovery.get('layer')}, {discovery.get('num_samples')} samples)"
    )
    for line in discovery.get("verdict", []):
        print(line)
    print(f"report: {results['run_dir']}/report.md")


def main() -> None:
    sys.argv[1:] = quote_path_overrides(sys.argv[1:], keys=("run", "weights"))
    with report_composition_errors(CONFIG_DIR):
        _main()


if __name__ == "__main__":
    main()
