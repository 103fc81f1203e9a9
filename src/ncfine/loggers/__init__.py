"""What the pipeline does with Lightning loggers beyond Lightning's own calls.

Each logger type that needs something at the start or the end of a run registers a handler
here (a registry keyed by class name, so no logger package is imported unless it is used):

- `log_run_config(loggers, cfg)`: the full resolved config, once, before training.
- `finish_loggers(loggers, results)`: the run's outcome, then close the logger. W&B needs this:
  `WandbLogger` never calls `wandb.finish()`, so in a Hydra multirun (many jobs, one process)
  the next job's logger would silently reuse the previous job's W&B run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

StartHook = Callable[[Any, dict], None]
FinishHook = Callable[[Any, "dict[str, Any] | None"], None]


def _wandb_start(logger: Any, config: dict) -> None:
    from ncfine.loggers.wandb import log_config

    log_config(logger, config)


def _wandb_finish(logger: Any, results: dict[str, Any] | None) -> None:
    from ncfine.loggers.wandb import finish_run

    finish_run(logger, results)


ON_START: dict[str, StartHook] = {"WandbLogger": _wandb_start}
ON_FINISH: dict[str, FinishHook] = {"WandbLogger": _wandb_finish}


def _hooks(logger: Any, table: dict[str, Callable]) -> list[Callable]:
    return [table[cls.__name__] for cls in type(logger).__mro__ if cls.__name__ in table][:1]


def log_run_config(loggers: Iterable[Any], cfg: DictConfig) -> None:
    """Hand the resolved config to the loggers that record it (W&B's run config)."""
    loggers = list(loggers)
    if not any(_hooks(lg, ON_START) for lg in loggers):
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        for hook in _hooks(logger, ON_START):
            hook(logger, config)


def finish_loggers(loggers: Iterable[Any], results: dict[str, Any] | None) -> None:
    """Record the outcome and close each logger; never raises (the run's own error matters more)."""
    for logger in loggers:
        for hook in _hooks(logger, ON_FINISH):
            try:
                hook(logger, results)
            except Exception as exc:  # noqa: BLE001 - closing a logger must not mask the run's result
                log.warning(f"could not finish {type(logger).__name__}: {type(exc).__name__}: {exc}")
