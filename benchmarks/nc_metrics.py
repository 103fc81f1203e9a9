"""Time `nc_metrics` (with classifier weight and bias, i.e. every metric incl. NC4) at three scales.

    python benchmarks/nc_metrics.py                 # CPU, and CUDA when available, full sizes
    python benchmarks/nc_metrics.py --quick         # CPU rows with N capped (said in the table)
    python benchmarks/nc_metrics.py --json out.json --device cuda

Sizes (N x D x C): CIFAR-10 test+train-like 60k x 512 x 10, CIFAR-100-like 50k x 2048 x 100,
ImageNet-1k-like 1.28M x 2048 x 1000 (chunked). Features are float32 on the timed device, made
once per size; each row reports the median of `--repeats` runs after one warm-up, with CUDA
synchronised around each run. On CUDA, `peak_extra_MiB` is torch.cuda.max_memory_allocated during
the call minus the memory held before it (features, labels and classifier), i.e. what nc_metrics
itself needs. Targets on one H100: 60k x 512 x 10 under 20 ms; ImageNet scale under 5 s and
2 GiB beyond the features.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ncfine.analysis.collapse import nc_metrics

SIZES = [  # name, N, D, C, CUDA time target (s), CUDA extra-memory target (bytes)
    ("cifar10", 60_000, 512, 10, 0.020, None),
    ("cifar100", 50_000, 2048, 100, None, None),
    ("imagenet", 1_281_167, 2048, 1000, 5.0, 2 * 1024**3),
]
QUICK_CPU_MAX_N = 20_000


def make_problem(n, d, c, device, seed=0):
    """Float32 features with class structure (means of norm ~1 over a common offset), made in chunks."""
    g = torch.Generator(device=device).manual_seed(seed)
    means = torch.randn(c, d, device=device, generator=g) / d**0.5 + 3.0 / d**0.5
    labels = torch.randint(0, c, (n,), device=device, generator=g)
    features = torch.empty(n, d, device=device, dtype=torch.float32)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        torch.randn(stop - start, d, device=device, generator=g, out=features[start:stop])
        features[start:stop].mul_(0.5 / d**0.5).add_(means[labels[start:stop]])
    weight = means - means.mean(0) + 0.1 * torch.randn(c, d, device=device, generator=g) / d**0.5
    bias = 0.01 * torch.randn(c, device=device, generator=g)
    return features, labels, weight, bias


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one(features, labels, weight, bias, c, device, repeats):
    sync(device)
    nc_metrics(features, labels, weight, bias, num_classes=c)  # warm-up (kernels, allocator, cuSOLVER)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = nc_metrics(features, labels, weight, bias, num_classes=c)
        sync(device)
        times.append(time.perf_counter() - start)
    extra = torch.cuda.max_memory_allocated(device) - held if device.type == "cuda" else None
    return times, extra, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"cap N at {QUICK_CPU_MAX_N} on CPU")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per size (default 5 CUDA, 3 CPU)")
    parser.add_argument("--sizes", default=",".join(s[0] for s in SIZES), help="comma list of size names")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("--device cuda but torch.cuda.is_available() is False")
    wanted = set(args.sizes.split(","))

    rows = []
    header = f"{'device':<6} {'size':<9} {'N':>9} {'(full N)':>10} {'D':>5} {'C':>5} {'median ms':>10} {'min ms':>9} {'peak_extra_MiB':>15}  target"
    print(header)
    print("-" * len(header))
    for device in devices:
        name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        for name, n_full, d, c, target_s, target_mem in SIZES:
            if name not in wanted:
                continue
            n = min(n_full, QUICK_CPU_MAX_N) if (args.quick and device.type == "cpu") else n_full
            repeats = args.repeats or (5 if device.type == "cuda" else 3)
            features, labels, weight, bias = make_problem(n, d, c, device)
            times, extra, result = time_one(features, labels, weight, bias, c, device, repeats)
            median = statistics.median(times)
            verdict = ""
            if device.type == "cuda" and (target_s or target_mem):
                ok = (target_s is None or median < target_s) and (target_mem is None or extra < target_mem)
                parts = [
                    f"<{target_s * 1e3:g} ms" if target_s else "",
                    f"<{target_mem / 2**30:g} GiB" if target_mem else "",
                ]
                verdict = ("met " if ok else "MISSED ") + " ".join(p for p in parts if p)
            extra_mib = f"{extra / 2**20:.1f}" if extra is not None else "-"
            full = f"({n_full})" if n != n_full else ""
            print(
                f"{device.type:<6} {name:<9} {n:>9} {full:>10} {d:>5} {c:>5} {median * 1e3:>10.2f} {min(times) * 1e3:>9.2f} {extra_mib:>15}  {verdict}"
            )
            rows.append(
                {
                    "device": device.type,
                    "device_name": name_dev,
                    "size": name,
                    "n": n,
                    "n_full": n_full,
                    "scaled_down": n != n_full,
                    "d": d,
                    "c": c,
                    "repeats": repeats,
                    "times_s": times,
                    "median_s": median,
                    "peak_extra_bytes": extra,
                    "target_s": target_s if device.type == "cuda" else None,
                    "target_extra_bytes": target_mem if device.type == "cuda" else None,
                    "nc1": result["nc1"],
                    "nc4": result["nc4"],
                }
            )
            del features, labels, weight, bias
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if any(r["scaled_down"] for r in rows):
        print(f"note: --quick capped N at {QUICK_CPU_MAX_N} on CPU; the (full N) column gives the size it stands for")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
