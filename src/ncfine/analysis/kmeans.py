"""k-means (Lloyd 1982) with k-means++ seeding (Arthur & Vassilvitskii 2007), on CPU or GPU.

Minimises the inertia  sum_i min_j ||x_i - c_j||^2  over k centroids c_j; the best of `n_init`
seeded restarts (lowest inertia) wins. Two backends sit in a registry:

- ``torch``: Lloyd on the features' device. Distances use ||x||^2 - 2 x.c + ||c||^2 in row chunks,
  so 1M x 2048 with k = 1000 fits in GPU memory; all restarts run batched in one matrix product.
  Seeding is greedy k-means++ (2 + log k candidates per step, as scikit-learn does).
  Deterministic for a given seed: a seeded torch.Generator on the device, and centroid sums by
  one-hot matrix products instead of float atomics (index_add_ on CUDA is order-dependent).
- ``faiss``: faiss.Kmeans (Johnson, Douze & Jegou 2019), on GPU when faiss sees one, run from
  each of the same k-means++ seedings for exactly ``max_iter`` iterations (no tol).

``auto`` picks faiss when it is installed and can run where the features live (CPU features, or a
GPU build of faiss), else torch: a CPU-only faiss would copy GPU features to the host and be
slower than Lloyd on the GPU.

k-means is translation invariant, so the data are centred first: features after neural collapse
sit far from the origin with a small spread, and the expansion above would lose that spread to
float32 cancellation. Final assignments and the reported inertia are computed the same way for
every backend (exact ||x - c||^2, summed in float64).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ncfine.analysis._validation import check_count, check_features
from ncfine.utils.errors import require

# Rows per chunk are chosen so that one (rows x columns) distance block holds about this many
# elements (128 MiB in float32): big enough to keep a GPU busy, small enough for 1M x k=1000.
_CHUNK_ELEMENTS = 1 << 25


def _chunk_rows(columns: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, columns))


# ----------------------------------------------------------------------------- torch backend


def _lloyd_pass(x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, with_sums: bool):
    """Assign every row of x to its nearest centroid, per restart.

    centroids: (R, k, D). Returns labels (R, N) int64, squared distance to the nearest centroid
    (R, N), and, with_sums, the per-cluster sums (R, k, D) and counts (R, k) of the rows.
    """
    n = x.shape[0]
    r, k, d = centroids.shape
    flat = centroids.reshape(r * k, d)
    flat_t = flat.t()
    c_sq = (flat * flat).sum(1)
    labels = torch.empty((r, n), dtype=torch.long, device=x.device)
    d2 = torch.empty((r, n), dtype=x.dtype, device=x.device)
    sums = torch.zeros((r * k, d), dtype=x.dtype, device=x.device) if with_sums else None
    offsets = torch.arange(r, device=x.device).mul_(k)
    step = _chunk_rows(r * k)
    for start in range(0, n, step):
        xc = x[start : start + step]
        # ||c||^2 - 2 x.c; ||x||^2 does not change the argmin and is added back after.
        dist = torch.addmm(c_sq, xc, flat_t, alpha=-2.0).view(-1, r, k)
        best, arg = dist.min(dim=2)
        labels[:, start : start + step] = arg.t()
        d2[:, start : start + step] = (best + x_sq[start : start + step, None]).clamp_min_(0).t()
        if with_sums:
            one_hot = torch.zeros((xc.shape[0], r * k), dtype=x.dtype, device=x.device)
            one_hot.scatter_(1, arg + offsets, 1.0)
            sums.addmm_(one_hot.t(), xc)
    if not with_sums:
        return labels, d2
    counts = torch.bincount((labels + offsets[:, None]).view(-1), minlength=r * k).view(r, k)
    return labels, d2, sums.view(r, k, d), counts


def _sq_dist_to_rows(x: torch.Tensor, x_sq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """||x_i - x_j||^2 for every i and every j in `rows` (any shape S): returns (*S, N)."""
    n = x.shape[0]
    points = x[rows.reshape(-1)]
    p_sq = x_sq[rows.reshape(-1)]
    out = torch.empty((points.shape[0], n), dtype=x.dtype, device=x.device)
    step = _chunk_rows(points.shape[0])
    for start in range(0, n, step):
        xc = x[start : start + step]
        block = torch.addmm(p_sq, xc, points.t(), alpha=-2.0).add_(x_sq[start : start + step, None])
        out[:, start : start + step] = block.clamp_min_(0).t()
    return out.view(*rows.shape, n)


def _kmeans_plus_plus(x: torch.Tensor, x_sq: torch.Tensor, k: int, restarts: int, gen: torch.Generator):
    """Greedy k-means++ for `restarts` independent seedings at once: (R, k, D) initial centroids.

    Each step samples 2 + floor(log k) candidates with probability proportional to D(x)^2 (the
    squared distance to the nearest centre chosen so far) and keeps the one that lowers the
    potential sum D(x)^2 most (Arthur & Vassilvitskii 2007; scikit-learn's variant).
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    chosen = torch.empty((restarts, k), dtype=torch.long, device=x.device)
    chosen[:, 0] = torch.randint(n, (restarts,), generator=gen, device=x.device)
    d2 = _sq_dist_to_rows(x, x_sq, chosen[:, :1])[:, 0]
    pick = torch.arange(restarts, device=x.device)
    for i in range(1, k):
        # When every point coincides with a chosen centre (duplicates, k == N), sample uniformly.
        weights = d2 + (d2.sum(1, keepdim=True) <= 0).to(d2.dtype)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=gen)
        cand_d2 = torch.minimum(d2[:, None, :], _sq_dist_to_rows(x, x_sq, candidates))
        best = cand_d2.sum(2).argmin(1)
        chosen[:, i] = candidates[pick, best]
        d2 = cand_d2[pick, best]
    return x[chosen]


def _torch_centroids(x: torch.Tensor, k: int, *, n_init: int, max_iter: int, tol: float, seed: int) -> torch.Tensor:
    """Batched Lloyd iterations for all restarts; returns the lowest-inertia centroids (k, D).

    A restart stops when its assignments no longer change or its centroids move less than
    tol * mean per-feature variance (summed squared shift, scikit-learn's rule). One host sync per
    iteration reads the stop flags; stopped restarts leave the batch. Empty clusters are re-seeded
    farthest-first (see `_reseed_empty`), so no restart keeps one while points are left to take.
    """
    n = x.shape[0]
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x_sq = (x * x).sum(1)
    centroids = _kmeans_plus_plus(x, x_sq, k, n_init, gen)
    tol_abs = tol * x.var(0, unbiased=False).mean()
    labels = torch.full((n_init, n), -1, dtype=torch.long, device=x.device)
    active = list(range(n_init))
    for _ in range(max_iter):
        idx = torch.tensor(active, device=x.device)
        old = centroids[idx]
        new_labels, d2, sums, counts = _lloyd_pass(x, x_sq, old, with_sums=True)
        empty = counts == 0
        new = torch.where(empty[..., None], old, sums / counts.clamp_min(1)[..., None].to(x.dtype))
        changed = (new_labels != labels[idx]).any(1)
        small_shift = ((new - old) ** 2).sum((1, 2)) <= tol_abs
        flags = torch.stack([empty.any(1), changed, small_shift]).cpu()
        for row in torch.nonzero(flags[0]).flatten().tolist():
            if _reseed_empty(x, x_sq, d2[row], empty[row], new[row]):
                flags[1, row], flags[2, row] = True, False
        centroids[idx] = new
        labels[idx] = new_labels
        done = (~flags[1]) | flags[2]
        active = [a for a, stop in zip(active, done.tolist()) if not stop]
        if not active:
            break
    _, d2 = _lloyd_pass(x, x_sq, centroids, with_sums=False)
    return centroids[d2.sum(1).argmin()]


def _reseed_empty(x, x_sq, d2: torch.Tensor, empty: torch.Tensor, centroids: torch.Tensor) -> bool:
    """Farthest-first re-seeding: each empty cluster (in id order) moves onto the point farthest from
    every centroid and re-seeded point so far (ties to the lower index). False if every point
    already sits on a centroid, so there is nothing to move to.
    """
    d2 = d2.clone()
    moved = False
    for cluster in torch.nonzero(empty).flatten().tolist():
        far = int(d2.argmax())
        if not d2[far] > 0:
            break
        centroids[cluster] = x[far]
        d2 = torch.minimum(d2, _sq_dist_to_rows(x, x_sq, torch.tensor([far], device=x.device))[0])
        moved = True
    return moved


# ----------------------------------------------------------------------------- faiss backend


def _faiss_centroids(x: torch.Tensor, k: int, *, n_init: int, max_iter: int, tol: float, seed: int) -> torch.Tensor:
    """faiss.Kmeans from each of n_init k-means++ seedings, max_iter iterations each (tol is not used).

    faiss's own seeding (k random points, best of nredo) lands in poor local minima on
    hierarchical data, e.g. two centroids in one coarse blob, so the seeding is the torch one.
    """
    faiss = _import_faiss()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    seeds = _kmeans_plus_plus(x, (x * x).sum(1), k, n_init, gen).to("cpu", torch.float32).numpy()
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    n, d = data.shape
    best, best_obj = None, float("inf")
    for restart in range(n_init):
        model = faiss.Kmeans(
            d,
            k,
            niter=max_iter,
            seed=seed + restart,
            gpu=faiss.get_num_gpus() > 0,
            verbose=False,
            # faiss subsamples to 256 points per centroid by default; cluster all points instead.
            max_points_per_centroid=n // k + 1,
            min_points_per_centroid=1,
        )
        obj = model.train(data, init_centroids=seeds[restart])
        if obj < best_obj:
            best, best_obj = model.centroids, obj
    return torch.from_numpy(best.copy()).to(device=x.device, dtype=x.dtype)


def _import_faiss():
    return require("faiss", package="faiss-cpu", extra="faiss", feature="kmeans backend 'faiss'")


@functools.cache
def _faiss_usable(on_gpu: bool) -> bool:
    try:
        faiss = _import_faiss()
    except ImportError:
        return False
    return not on_gpu or faiss.get_num_gpus() > 0


# ----------------------------------------------------------------------------- registry and API

KMeansBackend = Callable[..., torch.Tensor]

BACKENDS: dict[str, KMeansBackend] = {
    "torch": _torch_centroids,
    "faiss": _faiss_centroids,
}


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """Map a backend name ('auto', 'torch', 'faiss') to a registered backend that can run here.

    Raises ValueError for an unknown name and MissingDependencyError when 'faiss' is asked for but
    not installed, so a run can fail before its first epoch rather than after it.
    """
    if name == "auto":
        on_gpu = device is not None and torch.device(device).type != "cpu"
        return "faiss" if _faiss_usable(on_gpu) else "torch"
    if name not in BACKENDS:
        raise ValueError(f"unknown kmeans backend {name!r}; valid backends are {['auto', *BACKENDS]}")
    if name == "faiss":
        _import_faiss()
    return name


def kmeans(
    features: torch.Tensor,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cluster the rows of `features` (N, D) into k clusters.

    Returns (assignments, centroids, inertia): int64 cluster ids (N,) on the features' device,
    centroids (k, D) in the features' dtype and device, and inertia = sum_i ||x_i - c(x_i)||^2
    as a Python float. Computation is in float32, or float64 for float64 input. The same seed
    gives the same result within a backend and device.
    """
    features = check_features(features)
    n = features.shape[0]
    k = check_count(k, "k")
    if k > n:
        raise ValueError(f"k={k} clusters is more than the {n} samples; need k <= number of samples")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be >= 1, got n_init={n_init}, max_iter={max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    name = resolve_backend(backend, features.device)

    dtype = torch.promote_types(features.dtype, torch.float32)
    # Distances in bf16 would scramble the assignments: no autocast, even if the caller runs under one.
    with torch.autocast(features.device.type, enabled=False):
        x = features.detach().to(dtype)
        mean = x.mean(0)
        x = x - mean
        centroids = BACKENDS[name](x, k, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed)
        labels, inertia = _assign_exact(x, centroids)
    return labels, (centroids + mean).to(features.dtype), inertia


def _assign_exact(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Nearest-centroid labels and the inertia from explicit differences (no cancellation)."""
    labels, _ = _lloyd_pass(x, (x * x).sum(1), centroids[None], with_sums=False)
    labels = labels[0]
    inertia = torch.zeros((), dtype=torch.float64, device=x.device)
    step = _chunk_rows(x.shape[1])
    for start in range(0, x.shape[0], step):
        diff = x[start : start + step] - centroids[labels[start : start + step]]
        inertia += (diff * diff).sum(dtype=torch.float64)
    return labels, float(inertia)
