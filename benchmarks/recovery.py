"""Timing of k-means, the probes and the per-epoch fine-recovery bundle, on CPU and (if present) CUDA.

Cases (full mode):
  kmeans         10k x 512, k=10 and 60k x 512, k=10 (n_init=10, max_iter=100: the defaults), both
                 backends; 1M x 2048, k=1000 (n_init=1, max_iter=20) on CUDA only.
  linear_probe   10k and 50k train x 512 -> 10 classes (max_iter=100), test 2k / 10k.
  knn_probe      the same splits, k=20.
  bundle         what FineRecoveryCallback does each epoch on CIFAR-10-sized features: per-coarse and
                 global k-means on 10k test features + linear probe 50k -> 10k (512-d, 5 coarse,
                 10 fine; a hierarchical Gaussian mixture). knn is timed separately.
Each case runs once to warm up, then `--repeats` times; the table gives the median (CUDA synchronized).
`--quick` scales every case down (N / 10, D / 4, no 1M case) so a CPU run ends in a minute or two; the
table says so.

    python benchmarks/recovery.py --quick                  # anywhere
    python benchmarks/recovery.py --json recovery.json     # full; CUDA rows when a GPU is present
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from ncfine.analysis.kmeans import BACKENDS, _faiss_usable
from ncfine.analysis.recovery import fine_recovery, kmeans, knn_probe, linear_probe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[list[float], object]:
    result = fn()  # warm-up: kernels, caches, lazy initialisation
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times, result


def mixture(n: int, dim: int, k: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """k overlapping Gaussian clusters (means ~ N(0, 0.09 I), unit noise), generated on the device."""
    gen = torch.Generator(device=device).manual_seed(seed)
    centers = 0.3 * torch.randn(k, dim, generator=gen, device=device)
    labels = torch.randint(k, (n,), generator=gen, device=device)
    return centers[labels].add_(torch.randn(n, dim, generator=gen, device=device))


def hierarchical(n: int, dim: int, device: torch.device, coarse: int = 5, fine_per: int = 2, seed: int = 0):
    """CIFAR-like features: coarse means far apart, a smaller offset per fine class, noise."""
    gen = torch.Generator(device=device).manual_seed(0)
    coarse_means = 1.0 * torch.randn(coarse, dim, generator=gen, device=device)
    fine_offsets = 0.15 * torch.randn(coarse, fine_per, dim, generator=gen, device=device)
    gen.manual_seed(seed + 1)
    fine = torch.randint(coarse * fine_per, (n,), generator=gen, device=device)
    c = fine // fine_per
    x = coarse_means[c] + fine_offsets[c, fine % fine_per] + torch.randn(n, dim, generator=gen, device=device)
    return x, c, fine


def run(device: torch.device, quick: bool, repeats: int, bundle_only: bool = False) -> list[dict]:
    scale_n, scale_d = (10, 4) if quick else (1, 1)
    rows: list[dict] = []

    def add(case, shape, backend, times, metric, value, note=""):
        row = dict(
            case=case,
            device=str(device),
            shape=shape,
            backend=backend,
            median_s=statistics.median(times),
            min_s=min(times),
            metric=metric,
            value=value,
            note=note,
        )
        rows.append(row)
        print(
            f"{case:<13} {device.type:<5} {backend:<6} {shape:<24} {row['median_s']:>9.4f} {row['min_s']:>9.4f}  "
            f"{metric}={value:.4g} {note}",
            flush=True,
        )

    # k-means
    sizes = [] if bundle_only else [(10_000, 512, 10, 10, 100), (60_000, 512, 10, 10, 100)]
    if device.type == "cuda" and not quick and not bundle_only:
        sizes.append((1_000_000, 2048, 1000, 1, 20))
    for n, d, k, n_init, max_iter in sizes:
        n, d = n // scale_n, d // scale_d
        x = mixture(n, d, k, device)
        for backend in BACKENDS:
            if backend == "faiss" and not _faiss_usable(device.type != "cpu"):
                print(f"kmeans        {device.type:<5} faiss  skipped: faiss not installed or has no GPU here")
                continue
            reps = 1 if n >= 1_000_000 else repeats
            times, (_, _, inertia) = timed(
                partial(kmeans, x, k, n_init=n_init, max_iter=max_iter, backend=backend), device, reps
            )
            add(
                "kmeans",
                f"{n}x{d} k={k}",
                backend,
                times,
                "inertia/N",
                inertia / n,
                f"n_init={n_init} max_iter={max_iter}",
            )
        del x
    if device.type == "cpu" and not quick and not bundle_only:
        print("kmeans        cpu   1M x 2048 k=1000 skipped on CPU (hours); run on a GPU")

    # probes
    for n_train, n_test, d in [] if bundle_only else [(10_000, 2_000, 512), (50_000, 10_000, 512)]:
        n_train, n_test, d = n_train // scale_n, n_test // scale_n, d // scale_d
        x_train, _, y_train = hierarchical(n_train, d, device, seed=0)
        x_test, _, y_test = hierarchical(n_test, d, device, seed=1)
        times, res = timed(partial(linear_probe, x_train, y_train, x_test, y_test, num_classes=10), device, repeats)
        add("linear_probe", f"{n_train}->{n_test} x{d}", "lbfgs", times, "acc", res["acc"], "max_iter=100")
        times, res = timed(partial(knn_probe, x_train, y_train, x_test, y_test, k=20), device, repeats)
        add("knn_probe", f"{n_train}->{n_test} x{d}", "cosine", times, "acc", res["acc"], "k=20")

    # the per-epoch bundle of FineRecoveryCallback
    n_train, n_test, d = 50_000 // scale_n, 10_000 // scale_n, 512 // scale_d
    x_train, _, y_train = hierarchical(n_train, d, device, seed=0)
    x_test, c_test, y_test = hierarchical(n_test, d, device, seed=1)
    for backend in BACKENDS:
        if backend == "faiss" and not _faiss_usable(device.type != "cpu"):
            continue

        def bundle(backend=backend):
            per = fine_recovery(x_test, c_test, y_test, mode="per_coarse", backend=backend)
            glob = fine_recovery(x_test, c_test, y_test, mode="global", backend=backend)
            probe = linear_probe(x_train, y_train, x_test, y_test, num_classes=10)
            return per["acc"], glob["acc"], probe["acc"]

        for part, fn in [
            ("per_coarse", partial(fine_recovery, x_test, c_test, y_test, mode="per_coarse", backend=backend)),
            ("global", partial(fine_recovery, x_test, c_test, y_test, mode="global", backend=backend)),
        ]:
            times, res = timed(fn, device, repeats)
            add(f"  {part}", f"{n_test}x{d}", backend, times, "acc", res["acc"], "n_init=10 max_iter=100")
        times, (per, glob, probe) = timed(bundle, device, repeats)
        add(
            "bundle",
            f"{n_train}/{n_test}x{d}",
            backend,
            times,
            "per_coarse_acc",
            per,
            f"global_acc={glob:.3f} probe_acc={probe:.3f}",
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scale every case down (N/10, D/4, no 1M case)")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument(
        "--bundle-only", action="store_true", help="only the per-epoch bundle (and its two k-means parts)"
    )
    args = parser.parse_args()

    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.quick:
        print("QUICK MODE: every case scaled down (N / 10, D / 4, no 1M x 2048 case); not the target sizes")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA")
    )
    print(f"{'case':<13} {'dev':<5} {'impl':<6} {'shape':<24} {'median_s':>9} {'min_s':>9}  result")
    rows = []
    for device in devices:
        rows += run(device, args.quick, args.repeats, args.bundle_only)
    if args.json:
        meta = dict(
            quick=args.quick,
            bundle_only=args.bundle_only,
            repeats=args.repeats,
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            cpu=platform.processor() or platform.machine(),
            gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        )
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
