"""How the Hydra entry points (`ncfine-train`, `ncfine-analyze`) report a job's errors.

A bad input (`NcfineError`) of a single run prints one `ncfine: error:` line and exits 2; in a
multirun the job has already recorded it as failed in its results.json, so the sweep goes on. An
unexpected error re-raises in a single run; in a multirun its traceback goes to the job's log
(RUN_DIR/<task>.log and the launcher's output) and the sweep goes on. HYDRA_FULL_ERROR=1 always
re-raises.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ncfine.utils.errors import NcfineError

EXIT_CODE = 2


def run_reporting_errors(job: Callable[[], Any], cfg: DictConfig, logger_name: str) -> Any:
    """`job()`, with its errors reported as the module docstring says; None when a sweep job failed."""
    try:
        return job()
    except NcfineError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if in_multirun():
            return None
        print(f"ncfine: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CODE)
    except Exception:
        if in_multirun():
            run_dir = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
            logging.getLogger(logger_name).exception(f"job failed: {run_dir}")
            return None
        raise


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False
