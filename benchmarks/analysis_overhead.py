"""What per-epoch analysis costs: the same run with and without NC1-NC4 + fine recovery every epoch.

Both runs go through ncfine's real pipeline with the same overrides; the analysis run adds
`callbacks=analysis`: NC1-NC4 on the train and test splits (coarse and fine labels), per-coarse
and global k-means on test, the linear probe (train -> test) and k-NN, every epoch. Validation
runs every epoch in both. Reported: seconds per epoch after the first (warm-up) epoch, and the
ratio analysis / plain (the target on one H100 with ResNet-18 on CIFAR-10 is <= 1.30).

    python benchmarks/analysis_overhead.py --data-root DIR --backbone resnet18 --epochs 4   # CUDA, CIFAR-10
    python benchmarks/analysis_overhead.py --tiny                                            # anywhere (CPU)
"""

from __future__ import annotations


import torch

from _harness import (device_name, mean_after_warmup, ncfine_epochs, parse_training_args, report, training_overrides,
                      training_parser)


def main() -> None:
    parser = training_parser(__doc__, epochs=4)
    parser.add_argument("--kmeans-backend", default="auto", help="auto | torch | faiss")
    args, device = parse_training_args(parser)
    overrides = [*training_overrides(args, device), f"trainer.max_epochs={args.epochs}"]
    plain, plain_wall, _ = ncfine_epochs([*overrides, "callbacks=none"], device, args.clock)
    analysed, analysed_wall, _ = ncfine_epochs(
        [*overrides, "callbacks=analysis", f"callbacks.fine_recovery.kmeans_backend={args.kmeans_backend}"], device,
        args.clock)
    result = {
        "device": device_name(device),
        "clock": args.clock,
        "backbone": args.backbone,
        "epochs": args.epochs,
        "plain_s_per_epoch": mean_after_warmup(plain),
        "analysis_s_per_epoch": mean_after_warmup(analysed),
        "plain_fit_s": plain_wall,
        "analysis_fit_s": analysed_wall,
    }
    result["ratio"] = result["analysis_s_per_epoch"] / result["plain_s_per_epoch"]
    report(result, [("backbone", "backbone", ""), ("device", "device", ".39"), ("plain_s_per_epoch", "plain s/epoch", ".3f"),
                    ("analysis_s_per_epoch", "analysis s/epoch", ".3f"), ("ratio", "ratio", ".3f")], args.json)

if __name__ == "__main__":
    main()
