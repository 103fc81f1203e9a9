"""How far a bf16 forward pass moves the analysis metrics, against float32, for the same weights.

The fine structure lives in the small variation left after collapse, and bf16 keeps about 3
significant digits; this measures what that does to NC1 and to per-superclass recovery on
trained run dirs (an early and a collapsed one, say), split by split:

    python benchmarks/bf16_analysis.py RUN_DIR [RUN_DIR ...] [--max-train 10000] [--threads 2]

For each run dir: its config.yaml and checkpoints/last.ckpt rebuild the model and the data; the
train split (capped as the analysis callbacks cap it) and the test split are run through the
network once in float32 and once under bf16 autocast (same layout as training: channels_last
where the run used it); NC1-NC4 (float64, as always) and k-means recovery (per superclass and
global, the run's recovery settings) are computed on both. It prints one row per run, split and
metric: fp32, bf16, the difference, the relative difference, and as a yardstick the change that
another k-means seed makes on the same fp32 features.

ncfine's rule (`ncfine.features.extract.precision_autocast`) follows from these numbers; the
thresholds the rule must meet are 0.5 points of recovery and 2% of NC1 (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ncfine.analysis.collapse import nc_metrics
from ncfine.analysis.recovery import fine_recovery
from ncfine.features import extract_features, subset_indices
from ncfine.posthoc.sources import load_run
from ncfine.utils.instantiate import instantiate

RECOVERY_THRESHOLD = 0.005  # 0.5 points of accuracy
NC1_THRESHOLD = 0.02  # 2% of NC1, relative


def split_features(module, datamodule, split: str, max_samples: int | None, autocast):
    indices = subset_indices(len(datamodule.dataset(split)), max_samples)
    loader = datamodule.analysis_dataloader(split, indices)
    return extract_features(module, loader, torch.device("cpu"), split, autocast_dtype=autocast)


def metrics_of(features, head, seed: int = 0) -> dict[str, float]:
    nc = nc_metrics(features.h, features.coarse, head.weight.detach(), head.bias.detach())
    out = {"nc1": nc["nc1"], "nc3": nc["nc3"], "nc4": nc["nc4"]}
    for mode in ("per_coarse", "global"):
        rec = fine_recovery(features.h, features.coarse, features.fine, mode=mode, n_init=10, seed=seed)
        out[f"kmeans_{mode}_acc"] = rec["acc"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--max-train", type=int, default=10000, help="train samples analysed (the callbacks' cap)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    worst = {"recovery": 0.0, "nc1_rel": 0.0, "global": 0.0, "global_seed": 0.0}
    print(
        f"{'run':40s} {'split':5s} {'metric':24s} {'fp32':>9s} {'bf16':>9s} {'diff':>9s} {'rel':>8s} "
        f"{'k-means seed 1 - fp32':>10s}"
    )
    for run in args.runs:
        loaded = load_run(run)
        cfg = loaded.run_cfg
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = loaded.module
        nhwc = bool(cfg.model.get("channels_last", False)) is True
        if nhwc:
            module.backbone.to(memory_format=torch.channels_last)
            module._nhwc = True
        for split, cap in (("train", args.max_train), ("test", None)):
            results = {}
            for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                started = time.perf_counter()
                feats = split_features(module, datamodule, split, cap, dtype)
                results[name] = metrics_of(feats, module.head)
                results[name]["_extract_s"] = time.perf_counter() - started
                if name == "fp32":
                    # The yardstick: the same fp32 features, k-means started from another seed.
                    results["seed"] = metrics_of(feats, module.head, seed=1)
            for key in results["fp32"]:
                if key.startswith("_"):
                    continue
                a, b = results["fp32"][key], results["bf16"][key]
                rel = (b - a) / abs(a) if a else float("nan")
                seed_diff = results["seed"][key] - a
                print(
                    f"{run.name[-40:]:40s} {split:5s} {key:24s} {a:9.4f} {b:9.4f} {b - a:+9.4f} {rel:+8.2%} "
                    f"{seed_diff:+10.4f}"
                )
                if key == "kmeans_per_coarse_acc":  # the rule's recovery metric (the paper's protocol)
                    worst["recovery"] = max(worst["recovery"], abs(b - a))
                if key == "kmeans_global_acc":
                    worst["global"] = max(worst["global"], abs(b - a))
                    worst["global_seed"] = max(worst["global_seed"], abs(seed_diff))
                if key == "nc1":
                    worst["nc1_rel"] = max(worst["nc1_rel"], abs(rel))
            print(
                f"{'':40s} {split:5s} {'forward pass (s)':24s} {results['fp32']['_extract_s']:9.1f} "
                f"{results['bf16']['_extract_s']:9.1f}"
            )
    ok = worst["recovery"] <= RECOVERY_THRESHOLD and worst["nc1_rel"] <= NC1_THRESHOLD
    print(
        f"largest change: per-superclass recovery {worst['recovery'] * 100:.2f} points (threshold "
        f"{RECOVERY_THRESHOLD * 100:.1f}), NC1 {worst['nc1_rel']:.2%} (threshold {NC1_THRESHOLD:.0%}) -> bf16 "
        f"analysis {'within' if ok else 'OUTSIDE'}; global k-means {worst['global'] * 100:.2f} points "
        f"(another k-means seed on the fp32 features: up to {worst['global_seed'] * 100:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
