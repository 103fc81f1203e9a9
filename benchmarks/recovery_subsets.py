"""What a per-superclass k-means recovery number is made of: which images, and how many.

For each run dir, the last checkpoint's penultimate features and the inputs (as the input baseline
sees them: normalised, flattened) of each split are extracted in one pass, with the network's coarse
logits, and `fine_recovery(mode="per_coarse")` (the run's own k-means settings) scores

- the whole split (what the run logged);
- the images the network classifies correctly, and those it gets wrong: a superclass's test images
  that the network puts in another superclass sit near that superclass's features, and a 2-way
  k-means of the superclass may split them off instead of its two fine classes;
- `--draws` random subsets of m images per superclass for each m of `--per-class`: the sampling
  noise of a recovery number read off m points (mean, standard deviation, range over the draws).

The inputs go through the same subsets, so each row compares the features with the pixels of the
same images. Prints one line per (run, split, subset); `--json` keeps them.

    python benchmarks/recovery_subsets.py RUN_DIR [RUN_DIR ...] --per-class 100 200 400 --json subsets.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ncfine.analysis.recovery import fine_recovery


def split_features(run_dir: str, split: str):
    """({'features': (h, coarse, fine), 'inputs': (x, coarse, fine)}, correct (N,) bool) of `split` for
    a run dir's last checkpoint: one eval pass under the run's autocast."""
    from ncfine.api import compose_analyze
    from ncfine.features import INPUT, LOGITS, PENULTIMATE, extract_layer_features
    from ncfine.posthoc.analyze_job import build_source, with_run

    overrides = [f"run={run_dir}", "device=cpu"]
    cfg, loaded = with_run(compose_analyze(overrides, run_dir="/tmp/unused"), overrides)
    datamodule, loaded, device, autocast = build_source(cfg, loaded)
    loader = datamodule.analysis_dataloader(split)
    feats = extract_layer_features(
        loaded.module, loader, device, split, [INPUT, PENULTIMATE], "flatten", 32, autocast, logits=True
    )
    pairs = (("features", PENULTIMATE), ("inputs", INPUT))
    found = {name: (feats[layer].h, feats[layer].coarse, feats[layer].fine) for name, layer in pairs}
    correct = feats[LOGITS].h.argmax(1) == feats[PENULTIMATE].coarse
    return found, correct


def subsample(coarse: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor | None:
    """Sorted rows: `per_class` random samples of every coarse class (None if a class has fewer)."""
    rows = []
    for c in torch.unique(coarse).tolist():
        members = torch.nonzero(coarse == c).flatten()
        if members.numel() < per_class:
            return None
        rows.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(rows).sort().values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--per-class", nargs="*", type=int, default=[100, 200, 400])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    rows = []
    for run in args.runs:
        summary = json.loads((Path(run) / "results.json").read_text()).get("config", {})
        options = OmegaConf.load(Path(run) / "config.yaml").callbacks.fine_recovery
        kmeans = dict(n_init=int(options.kmeans_n_init), max_iter=int(options.kmeans_max_iter), seed=int(options.seed))
        for split in args.splits:
            found, correct = split_features(run, split)
            subsets = {"all": torch.ones_like(correct), "correct": correct, "wrong": ~correct}
            for subset, keep in subsets.items():
                if int(keep.sum()) < 20:
                    continue
                row = {"run": run, "backbone": summary.get("backbone"), "weight_decay": summary.get("weight_decay")}
                row.update(split=split, subset=subset, images=int(keep.sum()), coarse_acc=float(correct.float().mean()))
                for name, (h, coarse, fine) in found.items():
                    row[name] = fine_recovery(h[keep], coarse[keep], fine[keep], mode="per_coarse", **kmeans)["acc"]
                rows.append(row)
                print(
                    f"{Path(run).name[:64]:64s} {split:5s} {subset:7s} {row['images']:6d} images: "
                    f"features {row['features']:.4f}  inputs {row['inputs']:.4f}",
                    flush=True,
                )
            h, coarse, fine = found["features"]
            x = found["inputs"][0]
            generator = torch.Generator().manual_seed(0)
            for m in args.per_class:
                values = {"features": [], "inputs": []}
                for _ in range(args.draws):
                    keep = subsample(coarse.cpu(), m, generator)
                    if keep is None:
                        break
                    keep = keep.to(h.device)
                    for name, data in (("features", h), ("inputs", x)):
                        result = fine_recovery(data[keep], coarse[keep], fine[keep], mode="per_coarse", **kmeans)
                        values[name].append(result["acc"])
                if not values["features"]:
                    continue
                row = {"run": run, "backbone": summary.get("backbone"), "weight_decay": summary.get("weight_decay")}
                row.update(split=split, subset=f"{m} per superclass", images=m * int(coarse.unique().numel()))
                for name, found_values in values.items():
                    row[name] = statistics.fmean(found_values)
                    row[f"{name}_std"] = statistics.stdev(found_values) if len(found_values) > 1 else 0.0
                    row[f"{name}_range"] = [min(found_values), max(found_values)]
                rows.append(row)
                print(
                    f"{'':64s} {split:5s} {m:4d} per superclass x {len(values['features'])}: "
                    f"features {row['features']:.4f} +- {row['features_std']:.4f}  "
                    f"inputs {row['inputs']:.4f} +- {row['inputs_std']:.4f}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
