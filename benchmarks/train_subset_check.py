"""Does the train-split analysis on a fixed subset agree with the whole split? (conf/callbacks/analysis.yaml
caps the train split at 10,000 images: `max_samples_per_split.train`.)

Trains a model through ncfine's pipeline (the overrides below, no per-epoch analysis), then on the
final model extracts the features of the whole train split and of the test split once, and
computes the train-split analysis values the cap touches: NC1-NC4 of the train features (coarse
labels, and NC1 of the fine labels), the linear probe and the k-NN of the fine labels (fit on
train, scored on test). Each is computed on the whole split and on fixed random subsets of
`--subset` images drawn with `--seeds` different seeds (seed 0 is the callbacks' subset); the
spread over seeds is the subset's noise, against which the full-split value is compared.

    python benchmarks/train_subset_check.py --data-root /tmp/cifar --train-samples 20000 --epochs 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from ncfine.analysis.collapse import nc_metrics
from ncfine.analysis.probes import knn_probe, linear_probe
from ncfine.api import compose
from ncfine.features import Features, extract_features, subset_indices
from ncfine.run.pipeline import build


def values(train: Features, test: Features, weight, bias, num_coarse: int, num_fine: int) -> dict[str, float]:
    coarse = nc_metrics(train.h, train.coarse, weight, bias, num_classes=num_coarse)
    fine = nc_metrics(train.h, train.fine, num_classes=num_fine)
    return {
        "nc/train/nc1": float(coarse["nc1"]),
        "nc/train/nc2_etf_error": float(coarse["nc2_etf_error"]),
        "nc/train/nc3": float(coarse["nc3"]),
        "nc/train/nc4": float(coarse["nc4"]),
        "nc/train/fine/nc1": float(fine["nc1"]),
        "fine/probe_acc": float(linear_probe(train.h, train.fine, test.h, test.fine, num_classes=num_fine)["acc"]),
        "fine/knn_acc": float(knn_probe(train.h, train.fine, test.h, test.fine, k=20)["acc"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--train-samples", type=int, default=20000, help="data.max_train_samples (the train split)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ncfine-subset-") as run_dir:
        cfg = compose(
            [
                "data=cifar10",
                f"data.source.root={args.data_root}",
                f"++data.max_train_samples={args.train_samples}",
                f"model.backbone={args.backbone}",
                f"trainer.max_epochs={args.epochs}",
                "trainer.accelerator=cpu",
                "trainer.limit_val_batches=0",
                "callbacks=none",
                "logger=none",
                "data.num_workers=0",
                "data.device_resident=true",
                "+trainer.enable_progress_bar=false",
                "+trainer.enable_checkpointing=false",
            ],
            run_dir=run_dir,
        )
        datamodule, model, trainer = build(cfg)
        trainer.fit(model, datamodule=datamodule)
    trained = time.perf_counter() - start
    device = torch.device("cpu")
    train = extract_features(model, datamodule.analysis_dataloader("train"), device, "train")
    test = extract_features(model, datamodule.analysis_dataloader("test"), device, "test")
    weight, bias = model.head.weight.detach(), model.head.bias.detach()
    h = datamodule.hierarchy
    full = values(train, test, weight, bias, h.num_coarse, h.num_fine)
    subsets = []
    for seed in range(args.seeds):
        keep = subset_indices(len(train), args.subset, seed)
        part = Features("train", train.h[keep], train.coarse[keep], train.fine[keep], train.index[keep])
        subsets.append(values(part, test, weight, bias, h.num_coarse, h.num_fine))
    rows = {}
    print(f"train split {len(train)} images, test {len(test)}; subsets of {args.subset} with seeds 0..{args.seeds - 1}")
    print(
        f"{'metric':<24} {'full split':>11} {'subset seed 0':>14} {'subsets mean':>13} {'std':>9} {'|full-mean|/std':>16}"
    )
    for key in full:
        sub = [s[key] for s in subsets]
        mean, std = statistics.mean(sub), statistics.stdev(sub) if len(sub) > 1 else float("nan")
        rows[key] = {"full": full[key], "subset_seed0": sub[0], "subset_mean": mean, "subset_std": std, "subsets": sub}
        print(
            f"{key:<24} {full[key]:>11.4f} {sub[0]:>14.4f} {mean:>13.4f} {std:>9.4f} {abs(full[key] - mean) / std:>16.2f}"
        )
    result = {
        "backbone": args.backbone,
        "train_samples": len(train),
        "test_samples": len(test),
        "epochs": args.epochs,
        "subset": args.subset,
        "seeds": args.seeds,
        "train_s": trained,
        "total_s": time.perf_counter() - start,
        "metrics": rows,
    }
    print(f"trained in {trained:.0f} s, all in {result['total_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
