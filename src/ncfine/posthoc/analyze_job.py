"""One `ncfine-analyze` job, from a composed config to the files of its run dir.

config -> model source (run dir / timm name + weights) -> data -> one eval pass per split, every
layer -> per-layer metrics -> config.yaml, metrics.csv (one row), results.json (status, metrics,
versions; atomic), report.md, plots/depth_curves.png. The keys are the training keys, so
`ncfine-collect` tables a sweep of analyses (`ncfine-analyze -m model.backbone=a,b,c`) and
`ncfine-plot` draws them.

With `run=DIR`, the analysis settings the command line does not set (max_samples,
max_samples_per_split, k-means, probes) are taken from the run's own NC / fine-recovery
callbacks, so the penultimate metrics reproduce the run's final ones; so is the data config,
with the command line's `data.*` on top.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ncfine.analysis.settings import RecoverySettings
from ncfine.features import precision_autocast
from ncfine.utils.atomic import atomic_write_json, atomic_write_text
from ncfine.utils.errors import ConfigError, NcfineError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

# analyze.yaml key -> the run's callback key it inherits from (when not on the command line)
INHERITED = {
    "analysis.recovery_splits": "callbacks.fine_recovery.splits",
    **{f"analysis.{f.name}": f"callbacks.fine_recovery.{f.name}" for f in fields(RecoverySettings)},
}


def overridden_keys(overrides: Sequence[str]) -> set[str]:
    """The config keys a list of Hydra overrides sets (`a.b=1`, `+a.b=1`, `data=cifar10`)."""
    keys = set()
    for item in overrides:
        key = str(item).split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


def with_run(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, Any]:
    """(a copy of `cfg`, the loaded model or None): with run=DIR, the run's data config (the command
    line's `data.*` on top), its seed and its backbone fill in what the command line does not set.
    Shared by ncfine-analyze and ncfine-discover."""
    from ncfine.posthoc.sources import load_run

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    if not cfg.get("run"):
        return cfg, None
    loaded = load_run(cfg.run)
    run_cfg = loaded.run_cfg
    keys = overridden_keys(overrides)
    with open_dict(cfg):
        if "data" not in keys and OmegaConf.select(run_cfg, "data") is not None:
            data = OmegaConf.create(OmegaConf.to_container(run_cfg.data, resolve=True))
            for key in sorted(k for k in keys if k.startswith("data.")):
                OmegaConf.update(data, key[len("data.") :], OmegaConf.select(cfg, key), force_add=True)
            cfg.data = data
        if "seed" not in keys and OmegaConf.select(run_cfg, "seed") is not None:
            cfg.seed = run_cfg.seed
        cfg.model.backbone = loaded.backbone
    return cfg, loaded


def effective_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, Any]:
    """(the config the job runs, the loaded model or None): with run=DIR, its data config and its
    analysis settings fill in what the command line does not set."""
    cfg, loaded = with_run(cfg, overrides)
    if loaded is None:
        return cfg, None
    run_cfg = loaded.run_cfg
    keys = overridden_keys(overrides)
    with open_dict(cfg):
        for key, source in INHERITED.items():
            value = OmegaConf.select(run_cfg, source, default=None)
            if key not in keys and value is not None:
                OmegaConf.update(cfg, key, value)
        for key in ("max_samples", "max_samples_per_split.train", "max_samples_per_split.test"):
            if key in keys or key.split(".")[0] in keys:
                continue
            nc = OmegaConf.select(run_cfg, f"callbacks.neural_collapse.{key}", default=None)
            fr = OmegaConf.select(run_cfg, f"callbacks.fine_recovery.{key}", default=None)
            # One pass per split here: a cap both callbacks used is reproducible, two different ones are not.
            if OmegaConf.select(run_cfg, "callbacks.neural_collapse") is not None and nc == fr:
                OmegaConf.update(cfg, key, nc, force_add=True)
    return cfg, loaded


def analyze_job(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run one analysis job; returns the results.json payload (also written on failure)."""
    out = Path(cfg.paths.output_dir)
    started = time.monotonic()
    payload: dict[str, Any] = {"status": "running", "error": None, "run_dir": str(out)}
    try:
        cfg, loaded = effective_config(cfg, overrides)
        payload = _job(cfg, loaded, out, started)
        return payload
    except NcfineError as exc:
        _write_failed(out, cfg, str(exc), started)
        raise
    except Exception as exc:
        _write_failed(out, cfg, f"{type(exc).__name__}: {exc}", started)
        raise


def _job(cfg: DictConfig, loaded, out: Path, started: float) -> dict[str, Any]:

    from ncfine.posthoc.analyze import run_analysis
    from ncfine.posthoc.analyze_report import write_report
    from ncfine.results.run_dir import rows_to_csv
    from ncfine.utils.containers import plain_dict

    datamodule, loaded, device, autocast = build_source(cfg, loaded)
    module = loaded.module
    layers = cfg.get("layers")
    layers = OmegaConf.to_container(layers) if OmegaConf.is_config(layers) else layers
    settings = OmegaConf.to_container(cfg.analysis, resolve=True)
    result = run_analysis(
        module,
        datamodule,
        layers,
        splits=list(cfg.splits),
        max_samples=cfg.get("max_samples"),
        max_samples_per_split=plain_dict(cfg.get("max_samples_per_split"), "max_samples_per_split"),
        pool=cfg.pool,
        flatten_size=int(cfg.flatten_size),
        device=device,
        autocast_dtype=autocast,
        **settings,
    )
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_text(out / "metrics.csv", rows_to_csv([{"epoch": loaded.epochs, **result.metrics}]))
    payload = results_payload(
        cfg, "completed", None, loaded.epochs, time.monotonic() - started, result.metrics, out, loaded.run_cfg
    )
    payload["analysis"] = {
        "source": loaded.source,
        "layers": result.layers,
        "dims": result.dims,
        "pool": cfg.pool,
        "num_samples": result.num_samples,
        "head": result.head,
        "notes": result.notes,
    }
    from ncfine.plot import plot_depth_curves

    figures = []
    if plot_depth_curves([(out.name, result.metrics)], out / "plots" / "depth_curves.png") is not None:
        figures.append("plots/depth_curves.png")
    write_report(out / "report.md", payload, figures)
    atomic_write_json(out / "results.json", payload)
    return payload


def build_source(cfg: DictConfig, loaded) -> tuple[Any, Any, torch.device, torch.dtype | None]:
    """(datamodule set up, the model on its device, device, the feature pass's autocast) of a
    composed analyze / discover config; `loaded` is `with_run`'s model, or None to build
    `model.backbone` with `weights`."""
    import pytorch_lightning as pl

    from ncfine.posthoc.sources import build_model
    from ncfine.utils.containers import plain_dict
    from ncfine.utils.instantiate import instantiate

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if loaded is None:
        loaded = build_model(
            cfg.model.backbone,
            cfg.get("weights"),
            num_coarse=datamodule.num_coarse,
            in_chans=datamodule.in_chans,
            img_size=datamodule.image_size,
            small_input=bool(cfg.model.small_input),
            pretrained=bool(cfg.model.pretrained),
            width=cfg.model.get("width", 1.0),
            backbone_kwargs=plain_dict(cfg.model.get("backbone_kwargs"), "model.backbone_kwargs"),
        )
    device = _device(cfg.get("device", "auto"))
    loaded.module.to(device)
    # A run trained in bf16 extracted its analysis features under bf16 autocast: do the same.
    precision = str(OmegaConf.select(loaded.run_cfg, "trainer.precision", default="")) if loaded.run_cfg else ""
    return datamodule, loaded, device, precision_autocast(precision, device)


def _device(name: str) -> torch.device:
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible; use device=cpu")
    return device


def results_payload(
    cfg: DictConfig,
    status: str,
    error: str | None,
    epochs: int,
    wall: float,
    metrics: dict,
    out: Path,
    run_cfg: DictConfig | None = None,
) -> dict[str, Any]:
    """The results.json payload of an analyze or discover job (the run-dir contract of ncfine-train)."""
    from ncfine.results.run_dir import config_summary, source_name
    from ncfine.utils.versions import package_versions

    # A run's lr / wd / seed describe the analysed model, so a table of analyses can be read
    # next to the sweep that trained them.
    summary = config_summary(run_cfg if run_cfg is not None else cfg)
    summary.update(
        backbone=OmegaConf.select(cfg, "model.backbone", default=None),
        data=source_name(OmegaConf.select(cfg, "data.source._target_", default=None)),
        task_name=cfg.get("task_name"),
        sweep_name=cfg.get("sweep_name"),
    )
    return {
        "status": status,
        "error": error,
        "epochs_completed": int(epochs),
        "wall_time_s": round(float(wall), 3),
        "metrics": metrics,
        "config": summary,
        "versions": package_versions(),
        "run_dir": str(out),
    }


def _write_failed(out: Path, cfg: DictConfig, error: str, started: float) -> None:
    try:
        payload = results_payload(cfg, "failed", error, 0, time.monotonic() - started, {}, out)
    except Exception:  # noqa: BLE001 - the config itself may be what failed
        payload = {"status": "failed", "error": error, "metrics": {}, "run_dir": str(out)}
    atomic_write_json(out / "results.json", payload)
