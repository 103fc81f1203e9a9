"""Training throughput: ncfine (real Trainer, module and data path) vs a plain PyTorch loop.

Both run in this process on the same device with identical settings: images held on the device
as uint8, random crop + flip (the data config's pad and flip) and normalisation on the device,
SGD nesterov lr 0.1, batch 512, ncfine's default path on the device (bf16 autocast + channels_last on CUDA and on
CPUs with bf16 units, `ncfine.utils.compute_path`), no torch.compile, no
validation and no analysis (see analysis_overhead.py for those). The first epoch of each is
warm-up and not timed.

    python benchmarks/throughput.py --data-root DIR --backbone resnet18 --epochs 3      # CUDA, CIFAR-10
    python benchmarks/throughput.py --tiny                                               # anywhere (CPU)

CPU mode (--cpu): ncfine on its own default path (`trainer.precision: auto`, `model.channels_last:
auto`: bf16-mixed + channels_last where the CPU has bf16 units) against the plain loop in float32
(NCHW) and in bf16 autocast + channels_last, for ResNet-18, VGG-16-bn and DenseNet-121 at width
0.25 (DenseNet: growth rate 8), batch 64, CIFAR stems, on a subset of CIFAR-10:

    python benchmarks/throughput.py --cpu --data-root DIR [--images 3000] [--epochs 3]

It prints img/s per variant and the ratios against the targets (CPU_TARGETS below). Each variant
runs `--rounds` times per family, in alternating order (ncfine, fp32, bf16 then bf16, fp32, ncfine, ...),
and the median round counts: on a shared 2-core box one run's speed drifts by 10-20% from minute to
minute, and in some processes the first training run looked 10-15% slower than the later ones, which
repeating did not confirm (benchmarks/README.md): one run per variant, in one order, compares the box's moods.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _harness import (
    compute_path_of,
    device_name,
    mean_after_warmup,
    ncfine_epochs,
    parse_training_args,
    report,
    sync,
    training_overrides,
    training_parser,
)
from ncfine.data.transforms import random_crop_flip
from ncfine.models.backbone import create_backbone

# --cpu: (backbone, width, plain bf16+channels_last over plain fp32 that ncfine must reach), from the
# issue's plain-loop measurement on an AMX-BF16 box (2.75x, 2x, 1.3-1.75x).
CPU_SUITE = (("resnet18", 0.25, 2.5), ("vgg16_bn", 0.25, 1.9), ("densenet121", 0.25, 1.3))
# ncfine's step against the fastest plain variant.
CPU_TARGET_VS_BEST = 0.95


def plain_loop(
    images,
    labels,
    mean,
    std,
    backbone,
    num_classes,
    epochs,
    batch_size,
    device,
    precision,
    channels_last,
    pad,
    flip,
    width=1.0,
):
    """The reference: a hand-written loop with the same model, augmentation and optimiser."""
    torch.manual_seed(0)
    features, dim = create_backbone(
        backbone, small_input=True, img_size=images.shape[-1], in_chans=images.shape[1], width=width
    )
    model = torch.nn.Sequential(features, torch.nn.Linear(dim, num_classes)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images, labels = images.to(device), labels.to(device)
    mean, std = mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
    generator = torch.Generator(device=device).manual_seed(0)
    n = images.shape[0]
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(n, device=device, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            x = random_crop_flip(images[idx], pad=pad, generator=generator, flip=flip)
            x = x.float().div_(255).sub_(mean).div_(std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# --cpu: the variants timed per family, and the plain loop's (precision, channels_last) for each.
CPU_VARIANTS = ("ncfine", "plain fp32", "plain bf16+cl")
PLAIN_SETTINGS = {"plain fp32": ("32", False), "plain bf16+cl": ("bf16", True)}


def plain_rate(dm, backbone: str, width: float, variant: str, args, device: torch.device) -> float:
    """Images/s of the plain loop on ncfine's training split (held by `dm`), after its warm-up epoch."""
    train = dm.split("train")
    mean, std = dm.normalization
    precision, channels_last = PLAIN_SETTINGS[variant]
    times = plain_loop(
        train.images, dm.hierarchy.coarse_of(train.fine), mean, std, backbone, dm.num_coarse, args.epochs,
        args.batch_size, device, precision, channels_last, dm.pad, dm.flip, width=width,
    )  # fmt: skip
    return train.images.shape[0] / mean_after_warmup(times)


def cpu_suite(args) -> None:
    """ncfine's default CPU path against plain fp32 and plain bf16 + channels_last, per family."""
    device = torch.device("cpu")
    path = compute_path_of(device)
    print(f"ncfine's path here: {path.describe()}; {torch.get_num_threads()} threads, batch {args.batch_size}")
    suite = [(b, w, t) for b, w, t in CPU_SUITE if not args.backbones or b in args.backbones]
    suite += [(b, args.width, None) for b in args.backbones or () if b not in {s[0] for s in CPU_SUITE}]
    rows = []
    for backbone, width, target in suite:
        # training_overrides pins the path `auto` resolves to here: ncfine's default path.
        overrides = [
            *training_overrides(argparse.Namespace(**{**vars(args), "backbone": backbone}), device),
            f"model.width={width}",
            f"trainer.max_epochs={args.epochs}",
            "callbacks=none",
            "trainer.limit_val_batches=0",
        ]
        if args.images:
            overrides.append(f"+data.max_train_samples={args.images}")
        rounds = {name: [] for name in CPU_VARIANTS}
        dm = None
        for r in range(args.rounds):
            # The first round starts with ncfine (its data module feeds the plain loops); then the order flips.
            for name in CPU_VARIANTS[:: 1 if r % 2 == 0 else -1]:
                if name == "ncfine":
                    timer, _, dm = ncfine_epochs(overrides, device)
                    rounds[name].append(dm.split_size("train") / mean_after_warmup(timer.times))
                else:
                    rounds[name].append(plain_rate(dm, backbone, width, name, args, device))
            print(f"{backbone} x {width:g} round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}" for k, v in rounds.items()))
        rates = {name: statistics.median(values) for name, values in rounds.items()}
        n = dm.split_size("train")
        if args.compile:
            # Compiled (Inductor): does it pay over a `--pays-over`-epoch run of this many images, compile time
            # included? With an empty cache (default) the first epoch pays the whole compile; run twice with
            # the same --compile-cache to time what a second process (the next seed, a resumed run) pays.
            with contextlib.ExitStack() as stack:
                cache = args.compile_cache or stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="ncfine-inductor-")
                )
                cached_files = sum(1 for f in Path(cache).rglob("*") if f.is_file())
                print(f"{backbone} x {width:g} compiling with the Inductor cache {cache} ({cached_files} files)")
                compiled, _, _ = ncfine_epochs(
                    [*overrides, "model.compile=true", f"paths.compile_cache_dir={cache}"], device
                )
            steady = mean_after_warmup(compiled.times)
            rates["ncfine compiled"] = n / steady
            compile_s = compiled.times[0] - steady
            saved_per_epoch = n / rates["ncfine"] - steady
            print(
                f"{backbone} x {width:g} compiled: first epoch {compiled.times[0]:.1f} s (compile about "
                f"{compile_s:.0f} s), then {rates['ncfine compiled']:.0f} img/s against {rates['ncfine']:.0f}: "
                f"over {args.pays_over} epochs of {n} images it "
                + ("pays" if saved_per_epoch * args.pays_over > compile_s else "does not pay")
                + f" ({saved_per_epoch * args.pays_over:+.0f} s saved, {compile_s:.0f} s compiling)",
                flush=True,
            )
        best = max(rates["plain fp32"], rates["plain bf16+cl"])
        # Within a round the three ran minutes apart, so the per-round ratios show how much the box drifted.
        per_round = [ours / max(fp32, bf16) for ours, fp32, bf16 in zip(*(rounds[k] for k in CPU_VARIANTS))]
        row = {
            "backbone": f"{backbone} x {width:g}",
            "images": n,
            "plain_fp32_images_per_s": rates["plain fp32"],
            "plain_bf16_cl_images_per_s": rates["plain bf16+cl"],
            "ncfine_images_per_s": rates["ncfine"],
            "ncfine_compiled_images_per_s": rates.get("ncfine compiled"),
            "rounds_images_per_s": rounds,
            "ncfine_vs_best_plain": rates["ncfine"] / best,
            "ncfine_vs_best_plain_per_round": per_round,
            "ncfine_vs_plain_fp32": rates["ncfine"] / rates["plain fp32"],
            "target_vs_plain_fp32": target,
            "met": rates["ncfine"] / best >= CPU_TARGET_VS_BEST
            and (target is None or rates["ncfine"] / rates["plain fp32"] >= target),
        }
        rows.append(row)
        print(
            f"{row['backbone']:18s} fp32 {rates['plain fp32']:7.0f}  bf16+cl {rates['plain bf16+cl']:7.0f}  "
            f"ncfine {rates['ncfine']:7.0f} img/s | ncfine/best plain {row['ncfine_vs_best_plain']:.3f} "
            f"(>= {CPU_TARGET_VS_BEST}; rounds {' '.join(f'{r:.2f}' for r in per_round)})  "
            f"ncfine/plain fp32 {row['ncfine_vs_plain_fp32']:.2f}"
            + (f" (>= {target})" if target else "")
            + ("  met" if row["met"] else "  NOT MET"),
            flush=True,
        )
    if args.json:
        result = {"device": device_name(device), "path": path.as_dict(), "epochs_timed": args.epochs - 1, "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = training_parser(__doc__, epochs=3)
    parser.add_argument("--cpu", action="store_true", help="the CPU suite: ncfine vs plain fp32 and bf16+channels_last")
    parser.add_argument("--backbones", nargs="*", default=None, help="--cpu: only these (others at --width)")
    parser.add_argument("--width", type=float, default=1.0, help="--cpu: width of backbones outside the suite")
    parser.add_argument("--images", type=int, default=3000, help="--cpu: training images per epoch (0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="--cpu: runs per variant (median counts)")
    parser.add_argument("--compile", action="store_true", help="--cpu: also time ncfine with model.compile=true")
    parser.add_argument(
        "--compile-cache",
        default=None,
        help="--compile: Inductor cache dir to use and keep (default: a fresh, empty one)",
    )
    parser.add_argument("--pays-over", type=int, default=20, help="--compile: epochs the compile must pay over")
    parser.set_defaults(batch_size=None)
    args, device = parse_training_args(parser)
    if args.clock != "wall":
        raise SystemExit("throughput.py: only --clock wall (the plain loop is timed in wall seconds)")
    args.batch_size = args.batch_size or (64 if args.cpu else 512)
    if args.cpu:
        return cpu_suite(args)
    path = compute_path_of(device)
    overrides = training_overrides(args, device)
    # callbacks=none: training only (the analysis cost is benchmarks/analysis_overhead.py's job);
    # no validation either, since the plain loop has none.
    ncfine_timer, _, dm = ncfine_epochs(
        [*overrides, f"trainer.max_epochs={args.epochs}", "callbacks=none", "trainer.limit_val_batches=0"], device
    )
    ncfine_times = ncfine_timer.times
    train = dm.split("train")
    images, coarse = train.images, dm.hierarchy.coarse_of(train.fine)
    mean, std = dm.normalization
    plain_times = plain_loop(
        images,
        coarse,
        mean,
        std,
        args.backbone,
        dm.num_coarse,
        args.epochs,
        args.batch_size,
        device,
        "bf16" if "bf16" in path.precision else "32",
        path.channels_last,
        dm.pad,
        dm.flip,
    )
    n = images.shape[0]
    plain_s, ncfine_s = mean_after_warmup(plain_times), mean_after_warmup(ncfine_times)
    result = {
        "device": device_name(device),
        "path": path.describe(),
        "backbone": args.backbone,
        "images": n,
        "batch_size": args.batch_size,
        "epochs_timed": max(1, args.epochs - 1),
        "plain_s_per_epoch": plain_s,
        "ncfine_s_per_epoch": ncfine_s,
        "plain_images_per_s": n / plain_s,
        "ncfine_images_per_s": n / ncfine_s,
        "ratio": plain_s / ncfine_s,
    }
    report(
        result,
        [
            ("backbone", "backbone", ""),
            ("device", "device", ".27"),
            ("plain_images_per_s", "plain img/s", ".0f"),
            ("ncfine_images_per_s", "ncfine img/s", ".0f"),
            ("ratio", "ncfine/plain", ".3f"),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
