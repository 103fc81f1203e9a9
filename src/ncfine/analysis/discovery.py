"""Sub-class discovery without fine labels: what a network separates inside each of its classes.

The published recipe for hidden stratification (GEORGE: Sohoni et al., NeurIPS 2020, "No Subclass
Left Behind"): cluster each superclass's penultimate features, choose the number of clusters
automatically, and score every cluster with the model's own head; the worst cluster's accuracy
measures how unevenly the class is learned. Here, for each superclass c with features X_c (n_c, D):

1. k-means (`ncfine.analysis.kmeans`, torch or faiss) for every k = 1..max_k, on the features
   centred per superclass (optionally projected onto their top `pca_dim` principal axes);
2. k chosen by a criterion from the registry `CRITERIA`, each scoring every k, and each able to
   answer k = 1 ("nothing inside this class"):

   gap                  Gap(k) = E*[log W*_k] - log W_k, W_k the k-means inertia, E* over `refs`
                        uniform samples of the data's bounding box in its principal axes; the
                        smallest k with Gap(k) >= Gap(k+1) - s_{k+1}   (Tibshirani, Walther & Hastie 2001)
   prediction_strength  PS(k): cluster two random halves; the least of the test half's clusters'
                        fractions of point pairs that the training half's centroids keep together,
                        averaged over `repeats` splits; PS(1) = 1; the largest k with
                        PS(k) >= `threshold` (0.8)                   (Tibshirani & Walther 2005)
   silhouette           mean silhouette s(k) for k >= 2 (Rousseeuw 1987); the best k, or k = 1 when
                        no k reaches `threshold` (0.25: "no substantial structure",
                        Kaufman & Rousseeuw 1990)
   bic                  BIC of the spherical Gaussian mixture k-means fits (X-means: Pelleg &
                        Moore 2000); the k with the largest BIC

3. per discovered cluster: its size, the model's coarse accuracy and mean cross-entropy on it
   (from its logits), and, only where fine labels are given, its composition by fine class, the
   ARI / NMI / Hungarian accuracy of the clusters against the fine classes and the number of fine
   classes present (the k to find).

Which criterion is the default, and why, is measured in docs/RESULTS.md ("Sub-classes without fine
labels"). Everything here is pure torch / numpy: tensors in, dicts out (no Lightning, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ncfine.analysis._validation import check_features, check_labels
from ncfine.analysis.kmeans import kmeans, resolve_backend
from ncfine.analysis.recovery import cluster_agreement

# A cluster of fewer points is not a finding; a superclass that cannot hold two such is "too small".
MIN_CLUSTER_POINTS = 5
DEFAULT_MAX_K = 8


# ----------------------------------------------------------------------------- one superclass's fits


class _Fits:
    """k-means of one superclass's points for k = 1..K, computed once and shared by the criteria."""

    def __init__(self, x: torch.Tensor, max_k: int, *, n_init: int, seed: int, backend: str):
        self.x, self.n_init, self.seed, self.backend = x, n_init, seed, backend
        self.labels: dict[int, torch.Tensor] = {}
        self.centroids: dict[int, torch.Tensor] = {}
        self.inertia: dict[int, float] = {}
        for k in range(1, max_k + 1):
            self.labels[k], self.centroids[k], self.inertia[k] = fit_kmeans(
                x, k, n_init=n_init, seed=seed, backend=backend
            )


def fit_kmeans(x: torch.Tensor, k: int, *, n_init: int = 10, seed: int = 0, backend: str = "auto"):
    """(labels, centroids, inertia) of k-means with k clusters; k = 1 is the mean, exactly."""
    if k == 1:
        centre = x.double().mean(0, keepdim=True)
        inertia = float(((x.double() - centre) ** 2).sum())
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device), centre.to(x.dtype), inertia
    return kmeans(x, k, n_init=n_init, seed=seed, backend=backend)


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.double(), centroids.double()).argmin(1)


# ----------------------------------------------------------------------------- criteria

# A criterion takes the fits of k = 1..K and returns (chosen k, {k: score or None}).
Criterion = Callable[..., tuple[int, dict[int, float | None]]]


def _gap(fits: _Fits, max_k: int, *, refs: int = 10, **_) -> tuple[int, dict[int, float | None]]:
    """Tibshirani, Walther & Hastie (2001), reference (b): uniform in the principal-axes bounding box."""
    x = fits.x.double()
    centred = x - x.mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    z = centred @ vt.T
    lo, span = z.min(0).values, z.max(0).values - z.min(0).values
    gen = torch.Generator(device="cpu").manual_seed(fits.seed)
    ref_logw = torch.empty(refs, max_k, dtype=torch.float64)
    for b in range(refs):
        sample = (lo.cpu() + span.cpu() * torch.rand(z.shape, generator=gen, dtype=torch.float64)) @ vt.cpu()
        sample = sample.to(fits.x.device, fits.x.dtype)
        for k in range(1, max_k + 1):
            # Fewer restarts on the references: only their mean log inertia is used.
            inertia = fit_kmeans(sample, k, n_init=max(1, fits.n_init // 3), seed=fits.seed + b, backend=fits.backend)[
                2
            ]
            ref_logw[b, k - 1] = math.log(max(inertia, 1e-300))
    logw = torch.tensor([math.log(max(fits.inertia[k], 1e-300)) for k in range(1, max_k + 1)], dtype=torch.float64)
    gap = ref_logw.mean(0) - logw
    s = ref_logw.std(0, unbiased=False) * math.sqrt(1 + 1 / refs)
    chosen = max_k
    for k in range(1, max_k):
        if gap[k - 1] >= gap[k] - s[k]:
            chosen = k
            break
    return chosen, {k: float(gap[k - 1]) for k in range(1, max_k + 1)}


def _prediction_strength(
    fits: _Fits, max_k: int, *, threshold: float = 0.8, repeats: int = 5, **_
) -> tuple[int, dict[int, float | None]]:
    """Tibshirani & Walther (2005): the largest k whose clusters a second half of the data reproduces."""
    x = fits.x
    n = x.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(fits.seed)
    scores: dict[int, float | None] = {1: 1.0}
    for k in range(2, max_k + 1):
        strengths = []
        for r in range(repeats):
            order = torch.randperm(n, generator=gen).to(x.device)
            train, test = x[order[: n // 2]], x[order[n // 2 :]]
            if min(train.shape[0], test.shape[0]) < k:
                continue
            seed = fits.seed + r
            _, train_centroids, _ = fit_kmeans(train, k, n_init=fits.n_init, seed=seed, backend=fits.backend)
            test_labels, _, _ = fit_kmeans(test, k, n_init=fits.n_init, seed=seed, backend=fits.backend)
            predicted = _nearest(test, train_centroids)
            strengths.append(_pair_agreement(test_labels, predicted, k))
        scores[k] = float(np.mean(strengths)) if strengths else None
    chosen = max([k for k, s in scores.items() if s is not None and s >= threshold], default=1)
    return chosen, scores


def _pair_agreement(labels: torch.Tensor, predicted: torch.Tensor, k: int) -> float:
    """min over clusters j of labels (with >= 2 points) of the fraction of its point pairs that
    `predicted` puts together."""
    table = torch.zeros(k, k, dtype=torch.float64, device=labels.device)
    table.index_put_((labels, predicted), torch.ones_like(labels, dtype=torch.float64), accumulate=True)
    sizes = table.sum(1)
    together = (table * (table - 1)).sum(1)
    pairs = sizes * (sizes - 1)
    keep = sizes >= 2
    if not bool(keep.any()):
        return 0.0
    return float((together[keep] / pairs[keep]).min())


def silhouette_score(x: torch.Tensor, labels: torch.Tensor, chunk_rows: int = 2048) -> float:
    """Mean silhouette (Rousseeuw 1987) s_i = (b_i - a_i) / max(a_i, b_i), Euclidean distances,
    s_i = 0 for a point alone in its cluster; in row chunks (memory O(chunk_rows x N))."""
    x = x.double()
    n = x.shape[0]
    ids, labels = torch.unique(labels, return_inverse=True)
    k = ids.numel()
    if k < 2:
        raise ValueError("the silhouette needs at least 2 clusters")
    one_hot = F.one_hot(labels, k).double()
    counts = one_hot.sum(0)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_rows):
        rows = slice(start, start + chunk_rows)
        sums = torch.cdist(x[rows], x) @ one_hot  # (chunk, k): summed distances to each cluster
        own = labels[rows]
        own_count = counts[own]
        a = sums.gather(1, own[:, None])[:, 0] / (own_count - 1).clamp_min(1)
        others = sums / counts
        others.scatter_(1, own[:, None], float("inf"))
        b = others.min(1).values
        s = (b - a) / torch.maximum(a, b).clamp_min(1e-300)
        total += torch.where(own_count > 1, s, torch.zeros_like(s)).sum()
    return float(total / n)


def _silhouette(fits: _Fits, max_k: int, *, threshold: float = 0.25, **_) -> tuple[int, dict[int, float | None]]:
    scores: dict[int, float | None] = {1: None}
    for k in range(2, max_k + 1):
        scores[k] = silhouette_score(fits.x, fits.labels[k])
    best = max(range(2, max_k + 1), key=lambda k: scores[k], default=1)
    return (best if best > 1 and scores[best] >= threshold else 1), scores


def _bic(fits: _Fits, max_k: int, **_) -> tuple[int, dict[int, float | None]]:
    """Pelleg & Moore (2000): BIC of identical spherical Gaussians at the k-means centroids."""
    n, d = fits.x.shape
    scores: dict[int, float | None] = {}
    for k in range(1, max_k + 1):
        if n <= k:
            scores[k] = None
            continue
        variance = max(fits.inertia[k] / (d * (n - k)), 1e-300)
        sizes = torch.bincount(fits.labels[k], minlength=k).double().cpu()
        sizes = sizes[sizes > 0]
        loglik = (
            float((sizes * torch.log(sizes / n)).sum()) - n * d / 2 * math.log(2 * math.pi * variance) - d * (n - k) / 2
        )
        params = (k - 1) + k * d + 1
        scores[k] = loglik - params / 2 * math.log(n)
    chosen = max((k for k, s in scores.items() if s is not None), key=lambda k: scores[k])
    return chosen, scores


CRITERIA: dict[str, Criterion] = {
    "gap": _gap,
    "prediction_strength": _prediction_strength,
    "silhouette": _silhouette,
    "bic": _bic,
}


def choose_k(
    features: torch.Tensor,
    max_k: int = DEFAULT_MAX_K,
    *,
    criterion: str = "prediction_strength",
    n_init: int = 10,
    seed: int = 0,
    backend: str = "auto",
    pca_dim: int | None = None,
    **options,
) -> dict:
    """The number of clusters in `features` (N, D) by `criterion`, and k-means at that k.

    Returns {"k", "scores" ({k: score, None where the criterion has none}), "labels" (N,) int64 on
    the features' device, "distances" (N,) float64: each point's distance to its cluster's centroid}.
    options: the criterion's own (gap: refs; prediction_strength: threshold, repeats; silhouette:
    threshold).
    """
    features = check_features(features)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown discovery criterion {criterion!r}; valid criteria are {list(CRITERIA)}")
    _check_max_k(max_k)
    x = _prepare(features, pca_dim)
    fits = _Fits(x, max_k, n_init=n_init, seed=seed, backend=backend)
    k, scores = CRITERIA[criterion](fits, max_k, **options)
    labels = fits.labels[k]
    distances = (x.double() - fits.centroids[k].double()[labels]).norm(dim=1)
    return {"k": int(k), "scores": scores, "labels": labels, "distances": distances}


def _prepare(features: torch.Tensor, pca_dim: int | None) -> torch.Tensor:
    """Centred (k-means and the criteria are translation invariant; centring keeps float32 exact
    when collapsed features sit far from the origin), optionally onto the top `pca_dim` axes."""
    x = features.detach().to(torch.promote_types(features.dtype, torch.float32))
    x = x - x.double().mean(0).to(x.dtype)
    if pca_dim is not None and pca_dim < x.shape[1]:
        _, _, vt = torch.linalg.svd(x.double(), full_matrices=False)
        x = (x.double() @ vt[:pca_dim].T).to(x.dtype)
    return x


def _check_max_k(max_k) -> None:
    if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
        raise ValueError(f"max_k must be a positive integer (1 allows only 'nothing inside'), got {max_k!r}")


# ----------------------------------------------------------------------------- the whole analysis


def discover_subclasses(
    features: torch.Tensor,
    coarse: torch.Tensor,
    *,
    logits: torch.Tensor | None = None,
    fine: torch.Tensor | None = None,
    max_k: int = DEFAULT_MAX_K,
    criterion: str = "prediction_strength",
    n_init: int = 10,
    seed: int = 0,
    backend: str = "auto",
    pca_dim: int | None = None,
    **options,
) -> dict:
    """Sub-clusters of every superclass (module docstring), scored by the model's head and, where
    `fine` labels are given, against them.

    features (N, D), coarse (N,) int ids; logits (N, C) of the model's coarse head (for each
    cluster's accuracy and loss); fine (N,) int ids or None (then no fine-label keys at all).

    Returns {"criterion", "max_k", "superclasses": [one dict per coarse id present, ascending:
      coarse, n, k, scores, note (str or None), accuracy / loss (with logits), clusters: [{cluster,
      size, accuracy, loss (with logits), fine_counts {fine id: count} (with fine)}], worst_cluster
      (with logits: the cluster of lowest accuracy), fine: {true_k, acc, nmi, ari} (with fine)],
     "assignments": (N,) int64 cluster of each sample within its superclass,
     "distances": (N,) float64 distance of each sample to its cluster's centroid}.

    A superclass of fewer than 2 * MIN_CLUSTER_POINTS samples is not clustered (k = 1, with a note);
    only k <= n / MIN_CLUSTER_POINTS are tried, and max_k larger than a clusterable superclass's size
    is an error (naming it).
    """
    features = check_features(features)
    n = features.shape[0]
    coarse = check_labels(coarse, n, "coarse").to(features.device)
    if fine is not None:
        fine = check_labels(fine, n, "fine").to(features.device)
    if logits is not None:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits must have shape ({n}, C) to match the features, got {shape}")
        if int(coarse.max()) >= logits.shape[1]:
            raise ValueError(f"coarse id {int(coarse.max())} has no logit: the head has {logits.shape[1]} outputs")
        logits = logits.to(features.device).double()
    if criterion not in CRITERIA:
        raise ValueError(f"unknown discovery criterion {criterion!r}; valid criteria are {list(CRITERIA)}")
    _check_max_k(max_k)
    resolve_backend(backend, features.device)
    ids, sizes = torch.unique(coarse, return_counts=True)
    for c, size in zip(ids.tolist(), sizes.tolist()):
        if size >= 2 * MIN_CLUSTER_POINTS and max_k > size:
            raise ValueError(f"max_k={max_k} is larger than superclass {c}'s {size} samples; use max_k <= {size}")

    assignments = torch.zeros(n, dtype=torch.long, device=features.device)
    distances = torch.zeros(n, dtype=torch.float64, device=features.device)
    correct = loss = None
    if logits is not None:
        correct = (logits.argmax(1) == coarse).double()
        loss = F.cross_entropy(logits, coarse, reduction="none")
    superclasses = []
    for c in ids.tolist():
        rows = torch.nonzero(coarse == c).flatten()
        size = rows.numel()
        entry: dict = {"coarse": int(c), "n": int(size), "note": None}
        usable_k = min(max_k, size // MIN_CLUSTER_POINTS)
        if size < 2 * MIN_CLUSTER_POINTS or usable_k < 2:
            entry["note"] = (
                f"too small to cluster ({size} samples; sub-clusters need >= {MIN_CLUSTER_POINTS} each): k = 1"
                if size < 2 * MIN_CLUSTER_POINTS
                else "max_k = 1: k = 1"
            )
            found = {"k": 1, "scores": {1: None}, "labels": torch.zeros(size, dtype=torch.long, device=features.device)}
            found["distances"] = (features[rows].double() - features[rows].double().mean(0)).norm(dim=1)
        else:
            if usable_k < max_k:
                entry["note"] = f"k <= {usable_k} tried ({size} samples, >= {MIN_CLUSTER_POINTS} per sub-cluster)"
            found = choose_k(
                features[rows],
                usable_k,
                criterion=criterion,
                n_init=n_init,
                seed=seed,
                backend=backend,
                pca_dim=pca_dim,
                **options,
            )
        k, labels = found["k"], found["labels"]
        assignments[rows], distances[rows] = labels, found["distances"].to(distances.device)
        entry.update(k=k, scores={int(key): value for key, value in found["scores"].items()})
        clusters = [{"cluster": j, "size": int((labels == j).sum())} for j in range(k)]
        if logits is not None:
            entry.update(accuracy=float(correct[rows].mean()), loss=float(loss[rows].mean()))
            for cluster in clusters:
                members = rows[labels == cluster["cluster"]]
                cluster.update(accuracy=float(correct[members].mean()), loss=float(loss[members].mean()))
            entry["worst_cluster"] = min(clusters, key=lambda cl: (cl["accuracy"], -cl["size"]))["cluster"]
        if fine is not None:
            fine_c = fine[rows]
            for cluster in clusters:
                values, counts = torch.unique(fine_c[labels == cluster["cluster"]], return_counts=True)
                cluster["fine_counts"] = {int(v): int(m) for v, m in zip(values.tolist(), counts.tolist())}
            entry["fine"] = {"true_k": int(torch.unique(fine_c).numel()), **cluster_agreement(labels, fine_c)}
        entry["clusters"] = clusters
        superclasses.append(entry)
    return {
        "criterion": criterion,
        "max_k": max_k,
        "superclasses": superclasses,
        "assignments": assignments,
        "distances": distances,
    }


def nearest_to_centroid(assignments: torch.Tensor, distances: torch.Tensor, rows: Sequence[int], count: int) -> dict:
    """{cluster: up to `count` of `rows` (positions into assignments) nearest their centroid, nearest first}."""
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    out: dict[int, list[int]] = {}
    for cluster in torch.unique(assignments[rows_t]).tolist():
        members = rows_t[assignments[rows_t] == cluster]
        order = torch.argsort(distances[members].cpu(), stable=True)[:count]
        out[int(cluster)] = members[order].tolist()
    return out
