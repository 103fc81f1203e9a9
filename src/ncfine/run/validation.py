"""Checks on a composed config that must fail before any data is loaded or any step is taken.

Each check raises a one-line ConfigError naming the bad value and what would be valid.
Constructors check their own arguments too; these are the ones that span config groups or
must not wait for instantiation (a missing GPU, a logger whose package is absent).

A run calls `validate_config` before it builds anything; a sweep's pre-flight (ncfine.sweep.preflight)
calls it for every job before the launcher starts or submits one. Checks about the machine the
job will run on (`needs_job_host`: is there a GPU) are skipped where the pre-flight runs elsewhere
(`on_job_host=False`: a SLURM login node); checks about how the job's own process was started
(`needs_job_process`: on as many nodes as trainer.num_nodes) only run inside it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ncfine.utils.errors import ConfigError, MissingDependencyError, missing_values_error

Check = Callable[[DictConfig], None]
CHECKS: list[Check] = []
# Checks whose answer depends on the job's machine or its process, not on the config alone.
JOB_HOST_CHECKS: set[Check] = set()
JOB_PROCESS_CHECKS: set[Check] = set()


def check(fn: Check | None = None, *, needs_job_host: bool = False, needs_job_process: bool = False):
    """Register a check: `@check`, or `@check(needs_job_host=True)` for one about the job's machine,
    `@check(needs_job_process=True)` for one about how the job's own process was started."""

    def register(fn: Check) -> Check:
        CHECKS.append(fn)
        if needs_job_host:
            JOB_HOST_CHECKS.add(fn)
        if needs_job_process:
            JOB_PROCESS_CHECKS.add(fn)
        return fn

    return register(fn) if fn is not None else register


def validate_config(cfg: DictConfig, *, on_job_host: bool = True, in_job_process: bool = True) -> None:
    """Run every check, except those about the job's machine (`on_job_host=False`) or its own
    process (`in_job_process=False`) where they are run from elsewhere (a sweep's pre-flight)."""
    for fn in CHECKS:
        if (on_job_host or fn not in JOB_HOST_CHECKS) and (in_job_process or fn not in JOB_PROCESS_CHECKS):
            fn(cfg)


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require_positive_int(key: str, value, allow_none: bool = True) -> None:
    """One-line ConfigError unless `value` is an integer >= 1 (or None, where that means "unset")."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


@check
def _missing_values(cfg: DictConfig) -> None:
    # `???` in a config (data=imagefolder: data.source.root, data.source.mapping) would otherwise
    # surface as omegaconf's MissingMandatoryValue traceback from inside instantiate.
    missing = sorted(_missing_keys(cfg))
    if missing:
        raise missing_values_error(missing)


def _missing_keys(node, prefix: str = ""):
    """Dotted keys whose value is `???`, without resolving any interpolation (OmegaConf.missing_keys
    resolves them, and ${hydra:...} cannot be resolved outside a Hydra run)."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node)) if isinstance(node, ListConfig) else ()
    for key in keys:
        name = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if OmegaConf.is_missing(node, key):
            yield name
            continue
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation() and not child._is_none():
            yield from _missing_keys(child, name + ".")


@check
def _seed(cfg: DictConfig) -> None:
    seed = _get(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


@check
def _optimizer(cfg: DictConfig) -> None:
    lr, wd = _get(cfg, "optimizer.lr"), _get(cfg, "optimizer.weight_decay")
    if not _is_number(lr) or lr <= 0:
        raise ConfigError(f"optimizer.lr must be a positive number, got {lr!r}")
    if wd is not None and (not _is_number(wd) or wd < 0):
        raise ConfigError(f"optimizer.weight_decay must be >= 0, got {wd!r}")


@check
def _trainer(cfg: DictConfig) -> None:
    _require_positive_int("trainer.max_epochs", _get(cfg, "trainer.max_epochs"), allow_none=False)
    limit = _get(cfg, "trainer.limit_train_batches")
    if limit is not None and (not _is_number(limit) or limit <= 0 or (isinstance(limit, float) and limit > 1)):
        raise ConfigError(
            f"trainer.limit_train_batches must be a positive number of batches, a fraction in (0, 1] "
            f"or null (all batches), got {limit!r}"
        )


@check(needs_job_host=True)
def _accelerator(cfg: DictConfig) -> None:
    accelerator = str(_get(cfg, "trainer.accelerator") or "auto").lower()
    if accelerator in {"gpu", "cuda"} and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is available on this machine; "
            "use trainer.accelerator=cpu (or auto)"
        )
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(
            "trainer.accelerator=mps but this machine has no Apple MPS device; use trainer.accelerator=cpu (or auto)"
        )
    if accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        raise ConfigError(
            "trainer.accelerator=tpu needs torch_xla, which is not installed; use trainer.accelerator=cpu (or auto)"
        )


@check(needs_job_process=True)
def _num_nodes(cfg: DictConfig) -> None:
    # A multi-node run that nothing starts on its other nodes waits in DDP's rendezvous for
    # 30 minutes: stop now instead (ncfine.sweep.multinode).
    from ncfine.run.nodes import run_error

    error = run_error(_get(cfg, "trainer.num_nodes"))
    if error:
        raise ConfigError(error)


@check
def _label_level(cfg: DictConfig) -> None:
    # The head, the NC metrics and the recovery metrics all read the hierarchy's coarse column;
    # training on the fine labels means a hierarchy whose coarse classes are the fine ones.
    level = _get(cfg, "model.label_level")
    if level is not None and level != "coarse":
        raise ConfigError(
            f"model.label_level={level!r}: runs train on the hierarchy's coarse labels; to train on the "
            "fine labels use data.hierarchy=identity (as experiment=paper_cifar10_fine does)"
        )


@check
def _data(cfg: DictConfig) -> None:
    for key in ("data.batch_size", "data.eval_batch_size"):
        _require_positive_int(key, _get(cfg, key))


@check
def _targets(cfg: DictConfig) -> None:
    # Options for a callback the chosen group lacks (callbacks=none +callbacks.neural_collapse.x=1)
    # leave a node with nothing to build; Lightning would fail much later. (Experiments set the
    # top-level `analysis` keys instead, which any callbacks group may read or ignore.)
    for group in ("callbacks", "logger"):
        for name, node in (_get(cfg, group) or {}).items():
            if node is None:
                continue
            if not isinstance(node, DictConfig) or "_target_" not in node:
                options = list(node.keys()) if isinstance(node, DictConfig) else node
                raise ConfigError(
                    f"{group}.{name} sets {options!r} but names nothing to build (no _target_): the chosen "
                    f"{group} group does not include '{name}'; choose a group that does, or drop it with "
                    f"'~{group}.{name}' (a null entry also disables it)"
                )


ANALYSIS_SPLITS = ("train", "test")


@check
def _analysis(cfg: DictConfig) -> None:
    # The top-level keys the analysis callbacks read (conf/train.yaml): named as the user set them,
    # not as the callback nodes that interpolate them.
    for key in ("analysis.every_n_epochs", "analysis.layerwise_every_n_epochs"):
        _require_positive_int(key, _get(cfg, key))
    for key in ("analysis.nc_splits", "analysis.recovery_splits"):
        splits = _get(cfg, key)
        if splits is None:
            continue
        listed = list(splits) if isinstance(splits, ListConfig) else None
        if listed is None or any(split not in ANALYSIS_SPLITS for split in listed):
            raise ConfigError(f"{key} must be a list of splits from {list(ANALYSIS_SPLITS)}, got {_plain(splits)!r}")


def _plain(value):
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


@check
def _callbacks(cfg: DictConfig) -> None:
    for name, callback in (_get(cfg, "callbacks") or {}).items():
        every = callback.get("every_n_epochs") if isinstance(callback, DictConfig) else None
        _require_positive_int(f"callbacks.{name}.every_n_epochs", every)


@check
def _kmeans_backend(cfg: DictConfig) -> None:
    # Fail here, not in on_fit_start (after the data loaded and the Trainer started).
    for name, callback in (_get(cfg, "callbacks") or {}).items():
        backend = callback.get("kmeans_backend") if isinstance(callback, DictConfig) else None
        if backend is None or str(backend) == "auto":
            continue
        from ncfine.analysis.kmeans import resolve_backend

        try:
            resolve_backend(str(backend))  # imports faiss when asked for: MissingDependencyError if absent
        except MissingDependencyError:
            raise
        except ValueError as exc:
            raise ConfigError(f"callbacks.{name}.kmeans_backend: {exc}") from None


@check
def _loggers(cfg: DictConfig) -> None:
    needs = {
        "WandbLogger": ("wandb", "wandb", "logger=wandb"),
        "make_wandb_logger": ("wandb", "wandb", "logger=wandb"),
        "TensorBoardLogger": ("tensorboard", "tensorboard", "logger=tensorboard"),
    }
    for logger in (_get(cfg, "logger") or {}).values():
        target = str(logger.get("_target_", "")) if isinstance(logger, DictConfig) else ""
        for cls, (module, extra, feature) in needs.items():
            if target.endswith(cls) and importlib.util.find_spec(module) is None:
                if module == "tensorboard" and importlib.util.find_spec("tensorboardX") is not None:
                    continue
                raise MissingDependencyError(module, extra, feature)
