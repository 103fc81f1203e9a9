"""Which criterion should `ncfine-discover` choose k by? Every criterion on runs whose truth is known.

For each run dir (an ncfine run with fine labels: the digits demo, the CIFAR-10 runs, a hierarchy
with unequal sub-class counts), the penultimate features of each split are extracted once, as
`ncfine-discover` extracts them, and `ncfine.analysis.discovery.discover_subclasses` runs with
every criterion (and with `--pca-dims`, on the top principal axes too). Per run, split and
criterion it prints k found against the number of fine classes in every superclass, how many
superclasses it got exactly, the mean ARI of the clusters against the fine labels, and the seconds
the clustering took (feature extraction excluded).

    python benchmarks/discovery_criteria.py RUN_DIR [RUN_DIR ...] --json criteria.json
    python benchmarks/discovery_criteria.py RUN_DIR --splits test --criteria gap prediction_strength
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ncfine.analysis.discovery import CRITERIA, DEFAULT_MAX_K, discover_subclasses


def run_features(run_dir: str, split: str, device: str = "cpu"):
    """(penultimate Features, logits or None, hierarchy) of `split`, as ncfine-discover extracts them."""
    from ncfine.api import compose_discover
    from ncfine.features import LOGITS, PENULTIMATE, as_layer_model, extract_layer_features
    from ncfine.posthoc.analyze_job import build_source, with_run

    overrides = [f"run={run_dir}", f"device={device}"]
    cfg, loaded = with_run(compose_discover(overrides, run_dir="/tmp/unused"), overrides)
    datamodule, loaded, device_t, autocast = build_source(cfg, loaded)
    model = as_layer_model(loaded.module)
    loader = datamodule.analysis_dataloader(split)
    feats = extract_layer_features(model, loader, device_t, split, [PENULTIMATE], logits=True, autocast_dtype=autocast)
    return feats[PENULTIMATE], feats.get(LOGITS), datamodule.hierarchy


def score(result: dict) -> dict:
    items = result["superclasses"]
    found = [item["k"] for item in items]
    truth = [item["fine"]["true_k"] for item in items]
    return {
        "k_found": found,
        "k_true": truth,
        "exact": sum(f == t for f, t in zip(found, truth)),
        "superclasses": len(items),
        "mean_abs_error": sum(abs(f - t) for f, t in zip(found, truth)) / len(items),
        "mean_ari": sum(item["fine"]["ari"] for item in items) / len(items),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--criteria", nargs="+", default=sorted(CRITERIA))
    parser.add_argument("--pca-dims", nargs="*", type=int, default=[], help="also cluster on these many principal axes")
    parser.add_argument("--max-k", type=int, default=DEFAULT_MAX_K)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    rows = []
    for run in args.runs:
        for split in args.splits:
            features, logits, hierarchy = run_features(run, split)
            if hierarchy.is_identity:
                print(f"{run}: no fine labels beyond its training classes; skipped")
                break
            for criterion in args.criteria:
                for pca_dim in [None, *args.pca_dims]:
                    started = time.perf_counter()
                    result = discover_subclasses(
                        features.h,
                        features.coarse,
                        logits=logits.h if logits is not None else None,
                        fine=features.fine,
                        max_k=args.max_k,
                        criterion=criterion,
                        n_init=args.n_init,
                        backend=args.backend,
                        pca_dim=pca_dim,
                    )
                    seconds = time.perf_counter() - started
                    row = {
                        "run": Path(run).name,
                        "split": split,
                        "n": int(features.h.shape[0]),
                        "dim": int(features.h.shape[1]),
                        "criterion": criterion,
                        "pca_dim": pca_dim,
                        "seconds": round(seconds, 2),
                        **score(result),
                    }
                    rows.append(row)
                    print(
                        f"{row['run'][:60]:60s} {split:5s} n={row['n']:5d} {criterion:20s} pca={pca_dim!s:4s} "
                        f"k={row['k_found']} true={row['k_true']} exact {row['exact']}/{row['superclasses']} "
                        f"ARI {row['mean_ari']:.3f}  {seconds:.1f} s",
                        flush=True,
                    )
    summary: dict[tuple, dict] = {}
    for row in rows:
        key = (row["criterion"], row["pca_dim"])
        entry = summary.setdefault(key, {"exact": 0, "superclasses": 0, "abs_error": 0.0, "seconds": 0.0})
        entry["exact"] += row["exact"]
        entry["superclasses"] += row["superclasses"]
        entry["abs_error"] += row["mean_abs_error"] * row["superclasses"]
        entry["seconds"] += row["seconds"]
    print("\ncriterion            pca   exact k      mean |k - true|   seconds")
    for (criterion, pca_dim), entry in sorted(summary.items(), key=lambda kv: -kv[1]["exact"]):
        print(
            f"{criterion:20s} {pca_dim!s:5s} {entry['exact']:3d}/{entry['superclasses']:<3d}    "
            f"{entry['abs_error'] / entry['superclasses']:.2f}              {entry['seconds']:.1f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
