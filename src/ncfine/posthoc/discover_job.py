"""One `ncfine-discover` job: the sub-classes a network separates inside each class, without fine labels.

config -> model source (run dir / timm name + weights, as ncfine-analyze) -> data -> one eval pass
of the split at the chosen layer, with the head's logits -> `ncfine.analysis.discovery.discover_subclasses`
-> config.yaml, discovery.json (every number), results.json (status and headline keys), report.md,
plots/discover_<superclass>.png.

Bad input (an unknown split or layer, max_k < 1 or larger than a superclass, a run dir without a
checkpoint) stops the job with a one-line error before any of these files is written; the run dir
Hydra made for it is removed again when it is still empty.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ncfine.analysis.discovery import CRITERIA, discover_subclasses, nearest_to_centroid
from ncfine.features import LOGITS, as_layer_model, extract_layer_features, resolve_layers, subset_indices
from ncfine.utils.atomic import atomic_write_json, atomic_write_text
from ncfine.utils.errors import ConfigError, NcfineError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

SPLITS = ("train", "test")


def check_options(cfg: DictConfig) -> None:
    """The options that need no data, checked before anything is loaded (one-line ConfigErrors)."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"unknown split {cfg.split!r}; valid splits are {list(SPLITS)}")
    max_k = cfg.max_k
    if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
        raise ConfigError(f"max_k must be a positive integer (1 allows only 'nothing inside'), got {max_k!r}")
    if cfg.criterion not in CRITERIA:
        raise ConfigError(f"unknown criterion {cfg.criterion!r}; valid criteria are {list(CRITERIA)}")
    count = cfg.images_per_cluster
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"images_per_cluster must be a non-negative integer, got {count!r}")
    pca_dim = cfg.get("pca_dim")
    if pca_dim is not None and (isinstance(pca_dim, bool) or not isinstance(pca_dim, int) or pca_dim < 1):
        raise ConfigError(f"pca_dim must be a positive integer or null, got {pca_dim!r}")


def discover_job(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run one discovery job; returns the results.json payload. Bad input raises before any file is
    written (and removes the output dir if it is empty)."""
    out = Path(cfg.paths.output_dir)
    started = time.monotonic()
    try:
        check_options(cfg)
        found = _discover(cfg, overrides)
    except (NcfineError, ValueError) as exc:
        _remove_if_empty(out)
        if isinstance(exc, NcfineError):
            raise
        raise ConfigError(str(exc)) from None  # the analysis' checks of the data (max_k vs a superclass)
    return _write(out, found, started)


def _discover(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    from ncfine.posthoc.analyze_job import build_source, with_run

    cfg, loaded = with_run(cfg, overrides)
    datamodule, loaded, device, autocast = build_source(cfg, loaded)
    model = as_layer_model(loaded.module)
    layer = str(cfg.layer)
    resolve_layers(model.root, [layer])  # an unknown layer fails here, naming close matches
    split = str(cfg.split)
    indices = subset_indices(datamodule.split_size(split), cfg.get("max_samples"))
    loader = datamodule.analysis_dataloader(split, indices=indices)
    feats = extract_layer_features(
        model, loader, device, split, [layer], cfg.pool, int(cfg.flatten_size), autocast, logits=True
    )
    features = feats[layer]
    hierarchy = datamodule.hierarchy
    linear = model.linear_head
    logits, head_note = None, "no linear head: no per-cluster accuracy or loss"
    if linear is not None and linear.out_features == hierarchy.num_coarse and LOGITS in feats:
        logits = feats[LOGITS].h
        head_note = f"the model's {hierarchy.num_coarse}-class head: per-cluster accuracy and loss"
    elif linear is not None:
        head_note = (
            f"the head has {linear.out_features} outputs but the data {hierarchy.num_coarse} classes: "
            "no per-cluster accuracy or loss"
        )
    has_fine = not hierarchy.is_identity
    started = time.perf_counter()
    result = discover_subclasses(
        features.h,
        features.coarse,
        logits=logits,
        fine=features.fine if has_fine else None,
        max_k=int(cfg.max_k),
        criterion=str(cfg.criterion),
        n_init=int(cfg.kmeans_n_init),
        seed=int(cfg.seed),
        backend=str(cfg.kmeans_backend),
        pca_dim=cfg.get("pca_dim"),
        **OmegaConf.to_container(cfg.criterion_options, resolve=True),
    )
    seconds = time.perf_counter() - started
    return {
        "cfg": cfg,
        "loaded": loaded,
        "datamodule": datamodule,
        "features": features,
        "result": result,
        "has_fine": has_fine,
        "head_note": head_note,
        "cluster_seconds": seconds,
    }


def _write(out: Path, found: dict[str, Any], started: float) -> dict[str, Any]:
    from ncfine.plot import plot_discovery
    from ncfine.posthoc.analyze_job import results_payload
    from ncfine.posthoc.discover_report import discovery_payload, headline_metrics, write_report

    cfg, loaded, datamodule, features, result = (
        found[k] for k in ("cfg", "loaded", "datamodule", "features", "result")
    )
    hierarchy = datamodule.hierarchy
    split = str(cfg.split)
    images = datamodule.split(split).images if datamodule.is_image else None
    count = int(cfg.images_per_cluster)
    figures: dict[int, str] = {}
    nearest_by_coarse: dict[int, dict[int, list[int]]] = {}
    for entry in result["superclasses"]:
        c = entry["coarse"]
        rows = torch.nonzero(features.coarse == c).flatten().cpu()
        nearest = nearest_to_centroid(result["assignments"].cpu(), result["distances"].cpu(), rows.tolist(), count)
        # Positions in the split (features.index), so discovery.json names the images themselves.
        index = features.index.cpu()
        nearest_by_coarse[c] = {j: index[torch.tensor(r, dtype=torch.long)].tolist() for j, r in nearest.items()}
        name = hierarchy.coarse_names[c]
        path = out / "plots" / f"discover_{_file_stem(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_discovery(
            entry,
            features.h[rows.to(features.h.device)],
            result["assignments"].cpu()[rows],
            images=images,
            nearest={j: v for j, v in nearest_by_coarse[c].items()} if images is not None and count else None,
            fine=features.fine.cpu()[rows] if found["has_fine"] else None,
            fine_names=hierarchy.fine_names,
            path=path,
            title=f"{name}: {entry['k']} sub-cluster{'s' if entry['k'] != 1 else ''} "
            f"({split} split, layer {cfg.layer}, {cfg.criterion})",
        )
        figures[c] = f"plots/{path.name}"
    discovery = discovery_payload(found, nearest_by_coarse, figures)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_json(out / "discovery.json", discovery)
    payload = results_payload(
        cfg, "completed", None, loaded.epochs, time.monotonic() - started, headline_metrics(discovery), out,
        loaded.run_cfg,
    )  # fmt: skip
    payload["discovery"] = {
        k: discovery[k] for k in ("source", "split", "layer", "criterion", "num_samples", "verdict")
    }
    write_report(out / "report.md", discovery, payload)
    atomic_write_json(out / "results.json", payload)
    return payload


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)).strip("_") or "class"


def _remove_if_empty(out: Path) -> None:
    try:
        out.rmdir()  # only succeeds when Hydra's dir holds nothing
    except OSError:
        pass
