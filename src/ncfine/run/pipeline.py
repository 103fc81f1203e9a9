"""One training run, from a composed config to the files in its run dir.

compose (train.py) -> validate -> data -> model -> callbacks/loggers -> Trainer.fit -> results.json

Every outcome is written to results.json: `completed`, `failed` (with the error) or `diverged`
(with the epoch), so a sweep never loses track of a job. Re-running in the same run dir resumes
from checkpoints/last.ckpt (or previous.ckpt if last is unreadable) and skips completed runs,
unless asked for more epochs than they trained: a completed run re-run with a larger
`trainer.max_epochs` resumes from its last checkpoint and trains the extra epochs (its LR
schedule rebuilt for the new length, see CoarseClassifier.on_train_start).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ncfine.callbacks.run_files import RunFilesCallback
from ncfine.loggers import finish_loggers, log_run_config
from ncfine.results.run_dir import config_summary
from ncfine.run.validation import validate_config
from ncfine.utils.atomic import atomic_write_json, atomic_write_text
from ncfine.utils.checkpoints import RESUME_ORDER, resume_hint
from ncfine.utils.compute_path import AUTO, ComputePath, resolve_compute_path
from ncfine.utils.errors import ConfigError, DivergedError, NcfineError
from ncfine.utils.instantiate import instantiate
from ncfine.utils.logging import RankedLogger
from ncfine.utils.versions import package_versions

log = RankedLogger(__name__)
# Every rank of a DDP run loads the checkpoint itself: each says which one (in its own output).
log_every_rank = RankedLogger(__name__, rank_zero_only=False)


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def read_results(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "results.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train and analyse one configuration; returns the results.json payload (also on failure)."""
    run_dir = run_dir_of(cfg)
    previous = read_results(run_dir)
    extend_from = None
    if cfg.get("skip_completed", True) and previous and previous.get("status") == "completed":
        if not extends(cfg, previous):
            log.info(skip_message(run_dir, previous))
            return previous
        extend_from = find_resume_checkpoint(run_dir)
        if extend_from is None:  # before anything is written: the completed result stays
            raise ConfigError(
                f"{run_dir} completed {previous.get('epochs_completed')} epochs and has no readable checkpoint to "
                f"extend it to trainer.max_epochs={cfg.trainer.max_epochs}; to train it again from scratch add "
                "resume=false skip_completed=false"
            )
        log.info(
            f"{run_dir} completed {previous.get('epochs_completed')} epochs; extending it to "
            f"trainer.max_epochs={cfg.trainer.max_epochs}"
        )

    started = time.monotonic()
    record = ResultsRecorder(run_dir, cfg)
    run_files: RunFilesCallback | None = None
    trainer: pl.Trainer | None = None
    loggers: list = []
    try:
        run_files = RunFilesCallback(run_dir, on_epoch_written=record.running)
        record.compute = apply_compute_path(cfg)
        datamodule, model, trainer = build(cfg, extra_callbacks=[run_files])
        loggers = trainer.loggers
        log_run_config(loggers, cfg)
        ckpt_path = extend_from or (find_resume_checkpoint(run_dir) if cfg.get("resume", True) else None)
        if trainer.is_global_zero:
            record.save_config()
            record.running(0, {}, resumed_from=ckpt_path)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return record.finish("completed", run_files, started)
    except (SIGTERMException, KeyboardInterrupt):
        record.finish("running", run_files, started, error="interrupted; re-run the same command to resume")
        if run_files is not None:
            hand_over_preemption(run_files, record, started)
        raise
    except DivergedError as exc:
        return record.finish("diverged", run_files, started, error=str(exc), diverged_epoch=exc.epoch)
    except NcfineError as exc:
        record.finish("failed", run_files, started, error=str(exc))
        raise
    except Exception as exc:
        if (trainer is not None and trainer.received_sigterm) or (run_files is not None and run_files.sigterm_received):
            # SLURM signals every task of a multi-node job (requeue, preemption); Lightning's
            # SIGTERM handler then runs a collective inside the signal handler, and a rank whose
            # peer stopped first fails in that or its next collective (before Lightning's own
            # flag is set: RunFilesCallback notes the signal first). That is the interruption, not a
            # failure: `running`, exit as interrupted (no result for submitit), so SLURM's requeue
            # resumes the run from the last epoch's last.ckpt on every node.
            log.warning(f"interrupted by SIGTERM ({type(exc).__name__} after it: {str(exc).strip()[:120]})")
            record.finish("running", run_files, started, error="interrupted; re-run the same command to resume")
            raise SIGTERMException() from exc
        record.finish("failed", run_files, started, error=failure_error(exc, trainer, run_dir))
        raise
    finally:
        # W&B: the outcome into the run's summary, then wandb.finish(), so the next job of a
        # multirun (same process) starts its own W&B run instead of reusing this one.
        finish_loggers(loggers, read_results(run_dir))


def extends(cfg: DictConfig, previous: dict[str, Any]) -> bool:
    """Whether re-running a completed run asks for more epochs than it trained (and may resume)."""
    wanted = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    done = previous.get("epochs_completed") or 0
    valid = isinstance(wanted, int) and not isinstance(wanted, bool)
    return bool(cfg.get("resume", True)) and valid and wanted > int(done)


def skip_message(run_dir: Path, previous: dict[str, Any]) -> str:
    done = previous.get("epochs_completed")
    return (
        f"{run_dir} already completed ({done} epochs); skipping. To train it further re-run it with a larger "
        f"trainer.max_epochs (it resumes from checkpoints/last.ckpt); to train it again from scratch add "
        "resume=false skip_completed=false"
    )


def failure_error(exc: BaseException, trainer: pl.Trainer | None, run_dir: Path) -> str:
    """results.json's error for an unexpected exception: the exception's line, except for a DDP
    peer lost mid-run (a dead node), which says so and how to go on."""
    from ncfine.run.nodes import lost_peer_error

    lost = lost_peer_error(exc, trainer.world_size if trainer is not None else 1)
    return f"{lost}; {resume_hint(run_dir)}" if lost else f"{type(exc).__name__}: {exc}"


def hand_over_preemption(run_files: RunFilesCallback, record: ResultsRecorder, started: float) -> None:
    """Now that last.ckpt is saved, let submitit's deferred handler requeue the job and exit.

    When it will not requeue (the job hit its time limit more than max_num_timeout times), it
    raises instead, and nothing resumes the run by itself: results.json must not keep saying
    `running`, so it ends `failed`, naming the cause. A re-run still resumes from last.ckpt.
    """
    try:
        run_files.hand_over_preemption()
    except Exception as exc:  # submitit's UncompletedJobError("Job not requeued because: ...")
        from ncfine.run.requeue import not_requeued_error

        record.finish("failed", run_files, started, error=not_requeued_error(exc, record.run_dir))
        raise


def build(cfg: DictConfig, extra_callbacks: list | None = None) -> tuple[Any, pl.LightningModule, pl.Trainer]:
    """Validate and seed, then (datamodule, model, trainer) from the config: the data first, since
    the model's num_classes / in_chans / img_size come from it. `auto` precision or channels_last
    left in `cfg` (a caller other than `train`) is resolved here."""
    validate_config(cfg)
    if AUTO in (OmegaConf.select(cfg, "trainer.precision"), OmegaConf.select(cfg, "model.channels_last")):
        apply_compute_path(cfg)
    use_compile_cache(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(
        cfg.model,
        num_classes=datamodule.num_coarse,
        in_chans=datamodule.in_chans,
        img_size=datamodule.image_size,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        log_fine_upper=datamodule.hierarchy.is_identity,
    )
    # A null entry disables that callback or logger (`callbacks.fine_recovery=null`).
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += list(extra_callbacks or [])
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **requeue_plugins(cfg))
    return datamodule, model, trainer


def apply_compute_path(cfg: DictConfig) -> ComputePath:
    """Resolve `trainer.precision: auto` and `model.channels_last: auto` in `cfg` (in place, so
    config.yaml records what ran) and return the path with its reason (`ncfine.utils.compute_path`)."""
    compute = resolve_compute_path(
        OmegaConf.select(cfg, "trainer.accelerator", default="auto"),
        OmegaConf.select(cfg, "trainer.precision", default="32-true"),
        OmegaConf.select(cfg, "model.channels_last", default=False),
    )
    cfg.trainer.precision = compute.precision
    if OmegaConf.select(cfg, "model.channels_last") is not None:
        cfg.model.channels_last = compute.channels_last
    log.info(compute.describe())
    return compute


def use_compile_cache(cfg: DictConfig) -> None:
    """Point Inductor's on-disk cache at `paths.compile_cache_dir` when the model is compiled, so a
    re-run (a resumed or extended run, the next seed of a sweep) loads its kernels instead of
    compiling them again. Inductor reads the variable when it first compiles."""
    cache_dir = OmegaConf.select(cfg, "paths.compile_cache_dir", default=None)
    if OmegaConf.select(cfg, "model.compile", default=False) and cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)


def requeue_plugins(cfg: DictConfig) -> dict[str, Any]:
    """Under submitit on SLURM, submitit requeues a preempted or timed-out job (its launcher's
    checkpoint() resubmits the same task, which resumes from last.ckpt); Lightning's own SLURM
    auto-requeue would be a second requeue, so it is turned off there."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or OmegaConf.select(cfg, "trainer.plugins") is not None:
        return {}
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return {"plugins": [SLURMEnvironment(auto_requeue=False)]}


def find_resume_checkpoint(run_dir: Path) -> str | None:
    """last.ckpt if it loads, else previous.ckpt if it loads, else None (fresh start)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    for name in RESUME_ORDER:
        path = ckpt_dir / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if "state_dict" not in state or "epoch" not in state:
                raise ValueError("not a Lightning checkpoint")
        except Exception as exc:  # noqa: BLE001 - any unreadable file means: try the next one
            log.warning(f"checkpoint {path} is unreadable ({type(exc).__name__}); falling back")
            continue
        log_every_rank.info(f"resuming from {path} (saved during epoch {state['epoch']})")
        return str(path)
    return None


class ResultsRecorder:
    """Writes results.json (atomically) as the run progresses and ends."""

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.summary = config_summary(cfg)
        self.resumed_from: str | None = None
        self.compute: ComputePath | None = None  # set once resolved (`apply_compute_path`)

    def save_config(self) -> None:
        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))

    def running(self, epochs_completed: int, row: dict, resumed_from: str | None = None) -> None:
        self.resumed_from = resumed_from or self.resumed_from
        payload = self._payload("running", None, epochs_completed, None, {k: v for k, v in row.items() if k != "epoch"})
        atomic_write_json(self.run_dir / "results.json", payload)

    def finish(
        self, status: str, run_files: RunFilesCallback | None, started: float, error: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        if not _is_rank_zero():
            return {}
        epochs = run_files.epochs_completed if run_files else 0
        wall = run_files.wall_time_s if run_files else time.monotonic() - started
        metrics = {k: v for k, v in (run_files.last_row if run_files else {}).items() if k != "epoch"}
        payload = self._payload(status, error, epochs, wall, metrics)
        payload.update(extra)
        atomic_write_json(self.run_dir / "results.json", payload)
        return payload

    def _payload(self, status, error, epochs, wall, metrics) -> dict[str, Any]:
        return {
            "status": status,
            "error": error,
            "epochs_completed": int(epochs),
            "wall_time_s": None if wall is None else round(float(wall), 3),
            "metrics": metrics,
            "config": self.summary,
            "compute": None if self.compute is None else {**self.compute.as_dict(), "path": self.compute.describe()},
            "versions": package_versions(),
            "run_dir": str(self.run_dir),
            **({"resumed_from": self.resumed_from} if self.resumed_from else {}),
        }


def _is_rank_zero() -> bool:
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0
