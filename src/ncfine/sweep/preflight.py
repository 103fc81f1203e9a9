"""A sweep's pre-flight: every job composed and checked before the launcher starts or submits any.

Without it a sweep with a bad value (`model.width=0`, `seed=x`, a data root that is not there)
starts every job, on SLURM after each has waited in the queue, and each one finds out by itself.
ncfine's launchers (hydra_plugins.ncfine_launcher: sequential, local, slurm) call `check_sweep`
first; it composes each job as the job will compose itself and runs the checks a run makes before
it loads data or builds a model, through the same functions the run calls:

- `ncfine.run.validation.validate_config` (config values, missing `???`, callbacks and loggers);
- the data module's constructor (batch sizes, `max_train_samples`, ...), its `check_hierarchy`
  (the hierarchy against the source's fine classes where they are known without reading a file)
  and `check_files` (the source's own "not found" error);
- the model's `check_args` (backbone name, width and its family's width rule, label level);
- the optimizer factory's argument check, and the analysis callbacks' constructors (splits,
  cadence, sample caps, recovery settings);
- the node counts against the launcher's (`ncfine.sweep.multinode.sweep_error`).

A bad sweep stops with exit status 2 and one `ncfine: error:` line per distinct reason, naming the
jobs it affects (`all 8 jobs: model.width must be ..., got 0`); no job is started or queued. On
SLURM the checks run on the submitting host: a GPU missing there says nothing about the nodes
(skipped), and a data root missing there is a warning, not an error, since the nodes may mount
other paths.

Which checks apply depends on the app whose config is swept: `PREFLIGHTS` maps Hydra's config
name (`train`) to its job check; other apps' sweeps get the node-count check only, and so does a
sweep run with `preflight=false` (for a check that is wrong about a setup: say so in an issue).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ncfine.utils.errors import DataError, NcfineError
from ncfine.utils.instantiate import instantiate

PREFLIGHT_EXIT_CODE = 2


@dataclass(frozen=True)
class Finding:
    """One job's problem: an error stops the sweep, a warning is printed and the sweep goes on."""

    message: str
    fatal: bool = True


JobCheck = Callable[[DictConfig, bool], list[Finding]]


def check_train_job(cfg: DictConfig, on_job_host: bool) -> list[Finding]:
    """What `ncfine-train` checks before loading data or building a model (module docstring), each
    part on its own, so a job with two bad values shows both. `on_job_host`: whether the job runs
    on this machine (not so on SLURM)."""
    from ncfine.run.validation import validate_config

    findings: list[Finding] = []

    def attempt(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except NcfineError as exc:
            findings.append(Finding(str(exc)))
            return None

    config_ok = attempt(lambda: validate_config(cfg, on_job_host=on_job_host, in_job_process=False) or True)
    # The data's constructors check their arguments (no file is read). Only once the config's own
    # checks pass: a bad top-level value (seed=x) reaches data.seed too, and one line says it.
    datamodule = attempt(lambda: instantiate(cfg.data)) if config_ok else None
    if datamodule is not None:
        attempt(datamodule.check_hierarchy)
        try:
            datamodule.check_files()
        except DataError as exc:
            where = socket.gethostname()
            findings.append(
                Finding(str(exc))
                if on_job_host
                else Finding(
                    f"{exc} (checked on {where}, where the sweep is submitted: the nodes may see other paths, "
                    "so the jobs are submitted anyway)",
                    fatal=False,
                )
            )
    in_chans = getattr(getattr(datamodule, "source", None), "in_chans", 3)
    attempt(lambda: _check_model(cfg.model, in_chans))
    if config_ok:  # the factory's own check repeats validate_config's optimizer.lr in other words
        attempt(lambda: _check_optimizer(cfg.get("optimizer")))
    attempt(lambda: _check_analysis_callbacks(cfg.get("callbacks")))
    return findings


# Hydra's config name of an app -> the check of one of its jobs.
PREFLIGHTS: dict[str, JobCheck] = {"train": check_train_job}


def _check_model(model: DictConfig, in_chans: int) -> None:
    """The model class's own `check_args` (CoarseClassifier's: backbone, width rule, ...), if it has one."""
    check_args = getattr(_located(model._target_), "check_args", None)
    if check_args is not None:
        try:
            options = OmegaConf.to_container(model, resolve=True)
        except OmegaConfBaseException:  # a `???` or a broken interpolation: validate_config says which
            return
        options.pop("_target_", None)
        check_args(in_chans=in_chans, **options)


def _check_optimizer(optimizer: DictConfig | None) -> None:
    from ncfine.models.classifier import check_optimizer

    if optimizer is not None:
        check_optimizer(instantiate(optimizer))


def _check_analysis_callbacks(callbacks: DictConfig | None) -> None:
    """Build the analysis callbacks: their constructors check splits, cadence, sample caps and the
    recovery settings, and do nothing else (other callbacks and loggers may open files or runs)."""
    from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback

    for node in (callbacks or {}).values():
        if isinstance(node, DictConfig) and "_target_" in node:
            target = _located(node._target_)
            if isinstance(target, type) and issubclass(target, EpochAnalysisCallback):
                instantiate(node)


def _located(target: Any) -> Any:
    """What a `_target_` names, or None where it cannot be imported (instantiation says why, at run time)."""
    try:
        return get_object(str(target))
    except Exception:  # noqa: BLE001 - any import failure: nothing to check here
        return None


@dataclass(frozen=True)
class Verdict:
    """The pre-flight's outcome: `errors` and `warnings` as printable lines (one per reason)."""

    errors: list[str]
    warnings: list[str]
    jobs: int
    seconds: float


def check_sweep(
    config_name: str,
    compose_job: Callable[[Sequence[str]], DictConfig],
    job_overrides: Sequence[Sequence[str]],
    executor: str,
    launcher_nodes: Any = None,
    check_jobs: bool = True,
) -> Verdict:
    """Compose every job (`compose_job(overrides)`) and check it; `executor` is where the jobs
    run: `slurm` (not this machine) or another launcher's name (this machine). `check_jobs=False`
    (`preflight=false`) keeps only the node counts, whose mistake would hang a job for 30 minutes."""
    from ncfine.sweep.multinode import sweep_error

    started = time.monotonic()
    check_job = PREFLIGHTS.get(config_name) if check_jobs else None
    findings: dict[Finding, list[int]] = {}
    for num, overrides in enumerate(job_overrides):
        cfg = _without_hydra_node(compose_job(list(overrides)))
        node_error = sweep_error(executor, launcher_nodes, [OmegaConf.select(cfg, "trainer.num_nodes", default=None)])
        job_findings = [Finding(node_error)] if node_error else []
        if check_job is not None:
            try:
                job_findings += check_job(cfg, executor != "slurm")
            except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop a good sweep
                job_findings.append(
                    Finding(f"pre-flight could not check it ({type(exc).__name__}: {exc}); it runs unchecked", False)
                )
        for finding in job_findings:
            findings.setdefault(finding, []).append(num)
    names = job_names(job_overrides)
    lines = {
        fatal: [affected(nums, names) + finding.message for finding, nums in findings.items() if finding.fatal == fatal]
        for fatal in (True, False)
    }
    return Verdict(lines[True], lines[False], len(job_overrides), time.monotonic() - started)


def _without_hydra_node(cfg: DictConfig) -> DictConfig:
    """The job's config as its task sees it: Hydra removes its own node before the task runs."""
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def affected(nums: list[int], names: list[str]) -> str:
    """'all 8 jobs: ', "the sweep's job: " or '2 of 8 jobs (#1 lr=-1; #3 lr=-1): '."""
    total = len(names)
    if total == 1:
        return "the sweep's job: "
    if len(nums) == total:
        return f"all {total} jobs: "
    listed = "; ".join(f"#{n} {names[n]}" if names[n] else f"#{n}" for n in nums)
    return f"{len(nums)} of {total} jobs ({listed}): "


def job_names(job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Each job's overrides that not every job shares (the sweep's own axes), comma-joined."""
    shared = set.intersection(*(set(o) for o in job_overrides)) if job_overrides else set()
    return [",".join(o for o in overrides if o not in shared) for overrides in job_overrides]


def report(verdict: Verdict, sweep_name: str, sweep_dir: Path) -> None:
    """Print the verdict; on errors, release the sweep dir and exit 2 (nothing was started)."""
    from ncfine.sweep.status import MANIFEST_DIR, release_sweep_dir

    for line in verdict.warnings:
        print(f"ncfine: warning: {line}", file=sys.stderr, flush=True)
    if not verdict.errors:
        return
    for line in verdict.errors:
        print(f"ncfine: error: {line}", file=sys.stderr, flush=True)
    jobs = "its job" if verdict.jobs == 1 else f"any of its {verdict.jobs} jobs"
    print(
        f"ncfine: sweep {sweep_name}: stopped before starting {jobs} "
        f"(pre-flight: {verdict.seconds:.1f} s); fix the value(s) above and run it again",
        file=sys.stderr,
        flush=True,
    )
    release_sweep_dir(sweep_dir)
    try:
        (Path(sweep_dir) / MANIFEST_DIR).rmdir()  # empty: no job got as far as recording itself
    except OSError:
        pass
    sys.exit(PREFLIGHT_EXIT_CODE)
