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

import argparse
import json
from pathlib import Path

import torch

from _harness import device_name, mean_after_warmup, ncfine_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="directory containing cifar-10-batches-py")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--kmeans-backend", default="auto", help="auto | torch | faiss")
    parser.add_argument("--tiny", action="store_true", help="digits + resnet10t on CPU: runs anywhere")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not args.tiny and not args.data_root:
        parser.error("--data-root DIR (holding cifar-10-batches-py) is required unless --tiny")

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    on_cuda = device.type == "cuda"
    if args.tiny:
        args.backbone = "resnet10t"
        data = ["data=digits"]
    else:
        data = ["data=cifar10", f"data.source.root={args.data_root}"]
    overrides = [
        *data,
        f"model.backbone={args.backbone}",
        f"data.batch_size={args.batch_size}",
        "data.num_workers=0",
        "scheduler=constant",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={'gpu' if on_cuda else 'cpu'}",
        f"trainer.precision={'bf16-mixed' if on_cuda else '32-true'}",
        f"model.channels_last={str(on_cuda).lower()}",
    ]
    plain, plain_wall, _ = ncfine_epochs([*overrides, "callbacks=none"], device)
    analysed, analysed_wall, _ = ncfine_epochs(
        [*overrides, "callbacks=analysis", f"callbacks.fine_recovery.kmeans_backend={args.kmeans_backend}"], device)
    result = {
        "device": device_name(device),
        "backbone": args.backbone,
        "epochs": args.epochs,
        "plain_s_per_epoch": mean_after_warmup(plain),
        "analysis_s_per_epoch": mean_after_warmup(analysed),
        "plain_fit_s": plain_wall,
        "analysis_fit_s": analysed_wall,
    }
    result["ratio"] = result["analysis_s_per_epoch"] / result["plain_s_per_epoch"]
    print(f"{'backbone':<14}{'device':<40}{'plain s/epoch':>14}{'analysis s/epoch':>18}{'ratio':>8}")
    print(f"{args.backbone:<14}{result['device'][:39]:<40}{result['plain_s_per_epoch']:>14.3f}"
          f"{result['analysis_s_per_epoch']:>18.3f}{result['ratio']:>8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
