"""What the training benchmarks share: timing ncfine's real Trainer/module/data path per epoch.

`ncfine_epochs` composes the config exactly as `ncfine-train OVERRIDES` would and builds it with
`ncfine.run.pipeline.build` (the same code path as a real run), adding only a timing callback.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from ncfine.api import compose
from ncfine.run.pipeline import build


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochTimer(pl.Callback):
    """Seconds per training epoch: from the epoch's first hook to after every other callback's
    epoch-end work (the analysis callbacks run in on_train_epoch_end, before this one)."""

    def __init__(self, device: torch.device, clock=time.perf_counter):
        self.device = device
        self.clock = clock
        self.times: list[float] = []
        # Per epoch, the wall seconds the analysis callbacks spent on eval passes ("features") and
        # on computing metrics ("metrics"), summed over callbacks (their `last_seconds`).
        self.analysis: list[dict[str, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        sync(self.device)
        self._start = self.clock()

    def on_train_epoch_end(self, trainer, pl_module):
        sync(self.device)
        self.times.append(self.clock() - self._start)
        spent = {"features": 0.0, "metrics": 0.0}
        for callback in trainer.callbacks:
            if getattr(callback, "last_epoch", None) == trainer.current_epoch:
                for part, seconds in getattr(callback, "last_seconds", {}).items():
                    spent[part] += seconds
        self.analysis.append(spent)


# --clock cpu: CPU seconds of this process (all its threads) instead of wall seconds. On a CPU box
# shared with other jobs, wall time measures the neighbours; CPU time measures the work (it still
# grows somewhat under contention: caches, memory bandwidth). Meaningless on CUDA (the GPU's time is
# not the process's), so only --tiny runs take it.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def ncfine_epochs(
    overrides: Sequence[str], device: torch.device, clock: str = "wall"
) -> tuple[EpochTimer, float, object]:
    """(the EpochTimer: `times` seconds per epoch and `analysis` seconds, wall seconds of fit,
    datamodule) of one run through ncfine's pipeline.

    Validation runs inside the training epoch in Lightning, so it is part of each epoch's time
    unless the overrides set trainer.limit_val_batches=0.
    """
    with tempfile.TemporaryDirectory(prefix="ncfine-bench-") as run_dir:
        cfg = compose(
            [*overrides, "logger=none", "+trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false"],
            run_dir=run_dir,
        )
        timer = EpochTimer(device, CLOCKS[clock])
        datamodule, model, trainer = build(cfg, extra_callbacks=[timer])
        sync(device)
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        sync(device)
        wall = time.perf_counter() - start
    return timer, wall, datamodule


def mean_after_warmup(times: Sequence[float]) -> float:
    """Mean of the epochs after the first (kernel selection, caches, lazy init), or the only one."""
    timed = list(times[1:]) if len(times) > 1 else list(times)
    return sum(timed) / len(timed)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def training_parser(doc: str, epochs: int) -> argparse.ArgumentParser:
    """The options every training benchmark takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="directory containing cifar-10-batches-py")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="digits + resnet10t on CPU: runs anywhere")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall seconds, or CPU seconds of the process (CPU only: for a box shared with other jobs)",
    )
    return parser


def parse_training_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, torch.device]:
    args = parser.parse_args()
    if not args.tiny and not args.data_root:
        parser.error("--data-root DIR (holding cifar-10-batches-py) is required unless --tiny")
    if args.tiny:
        args.backbone = "resnet10t"
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.clock == "cpu" and device.type == "cuda":
        parser.error("--clock cpu times CPU work; on CUDA use the default --clock wall")
    return args, device


def compute_path_of(device: torch.device):
    """The precision and layout ncfine's default (`auto`) picks on `device` (`ncfine.utils.compute_path`):
    the benchmarks pin them explicitly, and the plain loop in throughput.py uses the same."""
    from ncfine.utils.compute_path import resolve_compute_path

    return resolve_compute_path(device.type, "auto", "auto")


def training_overrides(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The benchmark setting: data held on the device, SGD nesterov lr 0.1, constant lr, and ncfine's
    default path on that device (bf16 autocast + channels_last on CUDA and on CPUs with bf16 units)."""
    on_cuda = device.type == "cuda"
    path = compute_path_of(device)
    data = ["data=digits"] if args.tiny else ["data=cifar10", f"data.source.root={args.data_root}"]
    return [
        *data,
        f"model.backbone={args.backbone}",
        f"data.batch_size={args.batch_size}",
        "data.device_resident=true",
        "data.num_workers=0",
        "optimizer.lr=0.1",
        "optimizer.nesterov=true",
        "scheduler=constant",
        f"trainer.accelerator={'gpu' if on_cuda else 'cpu'}",
        f"trainer.precision={path.precision}",
        f"model.channels_last={str(path.channels_last).lower()}",
    ]


def report(result: dict, columns: list[tuple[str, str, str]], json_path: str | None) -> None:
    """Print `result` as a one-row table of (key, header, format spec) columns; optionally save it as JSON."""
    cells = [format(result[key], spec) for key, _, spec in columns]
    widths = [max(len(header), len(cell)) + 2 for (_, header, _), cell in zip(columns, cells)]
    print("".join(f"{header:>{w}}" for (_, header, _), w in zip(columns, widths)))
    print("".join(f"{cell:>{w}}" for cell, w in zip(cells, widths)))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
