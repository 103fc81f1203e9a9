"""What per-epoch analysis costs: the same run with and without NC1-NC4 + fine recovery every epoch.

Both runs go through ncfine's real pipeline with the same overrides; the analysis run adds
`callbacks=analysis`: NC1-NC4 on the train and test splits (coarse and fine labels), per-coarse
and global k-means on test, the linear probe (train -> test) and k-NN, every epoch. Validation
runs every epoch in both. Reported: seconds per epoch after the first (warm-up) epoch, and the
ratio analysis / plain (the target on one H100 with ResNet-18 on CIFAR-10 is <= 1.30), and where
the extra time goes: the analysis callbacks' eval passes (`features`: the train split's pass; the
test split's features come from validation) and their metric computations (`metrics`: NC, k-means,
probes), each in seconds per epoch after the first. `floor_ratio` is the ratio the run would have
with the metrics free: what the eval passes alone cost.

    python benchmarks/analysis_overhead.py --data-root DIR --backbone resnet18 --epochs 4   # CUDA, CIFAR-10
    python benchmarks/analysis_overhead.py --tiny                                            # anywhere (CPU)
    python benchmarks/analysis_overhead.py --tiny callbacks.fine_recovery.probe=false   # extra Hydra overrides
Extra overrides apply to both runs, except `callbacks.*` ones: the analysis run's alone (the plain
run has no analysis callbacks).
"""

from __future__ import annotations

from _harness import (
    device_name,
    mean_after_warmup,
    ncfine_epochs,
    parse_training_args,
    report,
    training_overrides,
    training_parser,
)


def main() -> None:
    parser = training_parser(__doc__, epochs=4)
    parser.add_argument("--kmeans-backend", default="auto", help="auto | torch | faiss")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides (callbacks.*: the analysis run only)")
    args, device = parse_training_args(parser)
    analysis_only = [o for o in args.overrides if o.lstrip("+~").startswith("callbacks.")]
    both = [o for o in args.overrides if o not in analysis_only]
    overrides = [*training_overrides(args, device), f"trainer.max_epochs={args.epochs}", *both]
    plain, plain_wall, _ = ncfine_epochs([*overrides, "callbacks=none"], device, args.clock)
    analysed, analysed_wall, _ = ncfine_epochs(
        [
            *overrides,
            "callbacks=analysis",
            f"callbacks.fine_recovery.kmeans_backend={args.kmeans_backend}",
            *analysis_only,
        ],
        device,
        args.clock,
    )
    result = {
        "device": device_name(device),
        "clock": args.clock,
        "backbone": args.backbone,
        "epochs": args.epochs,
        "overrides": list(args.overrides),
        "plain_s_per_epoch": mean_after_warmup(plain.times),
        "analysis_s_per_epoch": mean_after_warmup(analysed.times),
        # Wall seconds even under --clock cpu: the callbacks time themselves.
        "features_s_per_epoch": mean_after_warmup([epoch["features"] for epoch in analysed.analysis]),
        "metrics_s_per_epoch": mean_after_warmup([epoch["metrics"] for epoch in analysed.analysis]),
        "plain_fit_s": plain_wall,
        "analysis_fit_s": analysed_wall,
    }
    result["ratio"] = result["analysis_s_per_epoch"] / result["plain_s_per_epoch"]
    result["floor_ratio"] = 1 + result["features_s_per_epoch"] / result["plain_s_per_epoch"]
    report(
        result,
        [
            ("backbone", "backbone", ""),
            ("device", "device", ".39"),
            ("plain_s_per_epoch", "plain s/epoch", ".3f"),
            ("analysis_s_per_epoch", "analysis s/epoch", ".3f"),
            ("ratio", "ratio", ".3f"),
            ("features_s_per_epoch", "features s", ".3f"),
            ("metrics_s_per_epoch", "metrics s", ".3f"),
            ("floor_ratio", "floor", ".3f"),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
