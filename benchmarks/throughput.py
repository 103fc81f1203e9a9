"""Training throughput: ncfine (real Trainer, module and data path) vs a plain PyTorch loop.

Both run in this process on the same device with identical settings: images held on the device
as uint8, random crop + flip (the data config's pad and flip) and normalisation on the device,
SGD nesterov lr 0.1, batch 512, bf16 autocast and channels_last on CUDA, no torch.compile, no
validation and no analysis (see analysis_overhead.py for those). The first epoch of each is
warm-up and not timed.

    python benchmarks/throughput.py --data-root DIR --backbone resnet18 --epochs 3      # CUDA, CIFAR-10
    python benchmarks/throughput.py --tiny                                               # anywhere (CPU)
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from _harness import (
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


def plain_loop(
    images, labels, mean, std, backbone, num_classes, epochs, batch_size, device, precision, channels_last, pad, flip
):
    """The reference: a hand-written loop with the same model, augmentation and optimiser."""
    torch.manual_seed(0)
    features, dim = create_backbone(backbone, small_input=True, img_size=images.shape[-1], in_chans=images.shape[1])
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


def main() -> None:
    args, device = parse_training_args(training_parser(__doc__, epochs=3))
    if args.clock != "wall":
        raise SystemExit("throughput.py: only --clock wall (the plain loop is timed in wall seconds)")
    on_cuda = device.type == "cuda"
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
        "bf16" if on_cuda else "32",
        on_cuda,
        dm.pad,
        dm.flip,
    )
    n = images.shape[0]
    plain_s, ncfine_s = mean_after_warmup(plain_times), mean_after_warmup(ncfine_times)
    result = {
        "device": device_name(device),
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
