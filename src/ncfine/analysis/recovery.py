"""Fine-class recovery: do features trained on coarse labels still separate the fine classes?

Protocol of Yang, Steinhardt & Hu (ICML 2023, "Are Neurons Actually Collapsed?"): within each
coarse class, cluster the features with k-means into as many clusters as the coarse class has fine
classes, and score the clusters against the fine labels by the best one-to-one matching
(Hungarian accuracy). High accuracy means the fine structure survived neural collapse.

This module also re-exports `kmeans` and the probes, so that every recovery tool is importable
from `ncfine.analysis.recovery`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ncfine.analysis._validation import check_features, check_labels, check_several_classes
from ncfine.analysis.kmeans import kmeans, resolve_backend
from ncfine.analysis.probes import knn_probe, linear_probe

__all__ = [
    "cluster_accuracy",
    "cluster_agreement",
    "fine_recovery",
    "reconstructed_fine_accuracy",
    "kmeans",
    "knn_probe",
    "linear_probe",
    "resolve_backend",
]


# ----------------------------------------------------------------------------- cluster scores


def _label_array(labels, name: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{name} must be integer ids, got dtype {labels.dtype}")
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of ids, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integer ids, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def _contingency(pred, true) -> np.ndarray:
    """Counts n_ij of samples in cluster i (rows) with class j (columns), over the ids present."""
    pred, true = _label_array(pred, "pred"), _label_array(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred has {pred.size} entries but true has {true.size}; they must match")
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(true, return_inverse=True)
    n_true = int(t.max()) + 1
    counts = np.bincount(p * n_true + t, minlength=(int(p.max()) + 1) * n_true)
    return counts.reshape(-1, n_true)


def _matched(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one matching with the most samples (Hungarian algorithm)."""
    return linear_sum_assignment(table, maximize=True)


def cluster_accuracy(pred, true) -> float:
    """Accuracy under the best one-to-one matching of cluster ids to class ids.

    acc = max over injective maps m of (1/N) sum_i [m(pred_i) == true_i], found by the Hungarian
    algorithm on the contingency table. With more clusters than classes (or fewer), the samples of
    unmatched clusters (classes) count as wrong. Takes torch tensors (any device) or numpy arrays.
    """
    table = _contingency(pred, true)
    rows, cols = _matched(table)
    return float(table[rows, cols].sum() / table.sum())


def cluster_agreement(pred, true) -> dict[str, float]:
    """Hungarian accuracy (`cluster_accuracy`), NMI and ARI of cluster ids `pred` against class ids
    `true`, from one contingency table; any number of clusters and classes."""
    table = _contingency(pred, true)
    rows, cols = _matched(table)
    return {"acc": float(table[rows, cols].sum() / table.sum()), "nmi": _nmi(table), "ari": _ari(table)}


def _nmi(table: np.ndarray) -> float:
    """Normalized mutual information, arithmetic normalisation: MI / ((H(U) + H(V)) / 2).

    Same values and edge cases as sklearn.metrics.normalized_mutual_info_score (1.0 when both
    labelings are a single cluster). Computed from the table in float64 rather than with
    torchmetrics, whose float32 version returns 0.0 for that edge case.
    """
    if table.shape[0] == table.shape[1] == 1:
        return 1.0
    n = table.sum()
    nz = table > 0
    rows, cols = table.sum(1, keepdims=True), table.sum(0, keepdims=True)
    nij = table[nz].astype(np.float64)
    mi = float(np.sum(nij / n * (np.log(nij * n) - np.log((rows * cols)[nz].astype(np.float64)))))
    if abs(mi) < np.finfo(np.float64).eps:
        return 0.0

    def entropy(counts):
        p = counts[counts > 0] / n
        return float(-(p * np.log(p)).sum())

    return mi / ((entropy(rows.ravel()) + entropy(cols.ravel())) / 2)


def _ari(table: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from the pair-confusion counts, as in scikit-learn."""
    n = int(table.sum())
    sum_sq = int((table.astype(np.int64) ** 2).sum())
    rows, cols = table.sum(1).astype(np.int64), table.sum(0).astype(np.int64)
    fp = int((table @ cols).sum()) - sum_sq
    fn = int((table.T @ rows).sum()) - sum_sq
    tp = sum_sq - n
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


# ----------------------------------------------------------------------------- normalisations


def _center_per_coarse(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Subtract each coarse class's mean: what is left is the residual that collapse shrinks."""
    return torch.cat([seg - seg.mean(0) for seg in torch.split(x, sizes)])


def _l2(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return F.normalize(x, dim=1)


NORMALIZERS: dict[str, Callable[[torch.Tensor, list[int]], torch.Tensor]] = {
    "none": lambda x, sizes: x,
    "center": _center_per_coarse,
    "l2": _l2,
    "center_l2": lambda x, sizes: _l2(_center_per_coarse(x, sizes), sizes),
}


# ----------------------------------------------------------------------------- clustering modes


def _cluster_per_coarse(x, sizes, fine_per_coarse, num_fine, kmeans_kwargs) -> tuple[torch.Tensor, int]:
    """k-means within each coarse class with k = its number of fine classes; ids offset per class."""
    pieces, offset = [], 0
    for seg, k in zip(torch.split(x, sizes), fine_per_coarse):
        k = min(k, seg.shape[0])
        if k == 1:
            ids = torch.zeros(seg.shape[0], dtype=torch.long, device=x.device)
        else:
            ids = kmeans(seg, k, **kmeans_kwargs)[0]
        pieces.append(ids + offset)
        offset += k
    return torch.cat(pieces), offset


def _cluster_global(x, sizes, fine_per_coarse, num_fine, kmeans_kwargs) -> tuple[torch.Tensor, int]:
    """k-means over all samples with k = the number of fine classes present."""
    k = min(num_fine, x.shape[0])
    return kmeans(x, k, **kmeans_kwargs)[0], k


MODES = {"per_coarse": _cluster_per_coarse, "global": _cluster_global}


def fine_recovery(
    features: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    *,
    mode: str = "per_coarse",
    normalize: str = "none",
    n_init: int = 10,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    backend: str = "auto",
) -> dict:
    """Cluster the features and score the clusters against the fine labels.

    mode:
      - ``per_coarse`` (the paper's protocol): k-means within each coarse class, k = number of
        distinct fine labels in it (at most its sample count; a class with one fine label is one
        cluster). Cluster ids are offset per coarse class, so the pooled Hungarian accuracy is the
        sum of the per-class matches over N.
      - ``global``: k-means over all samples, k = number of distinct fine labels.
    normalize: ``none``, ``center`` (subtract each coarse class's mean), ``l2`` (unit rows) or
      ``center_l2`` (both, in that order).

    Returns a dict:
      acc, nmi, ari        Hungarian accuracy, normalized mutual information, adjusted Rand index
                           of the clusters against the fine labels (in per_coarse mode NMI and ARI
                           also credit the coarse split: clusters that know only the coarse class
                           score well above 0; compare acc with chance_acc instead);
      per_coarse_acc       accuracy of that matching restricted to each coarse class (list, in
                           the order of coarse_classes);
      coarse_classes       the coarse ids present, ascending;
      chance_acc           accuracy of the best constant label per coarse class (its majority
                           fine class): what a clustering that finds nothing scores;
      num_clusters         total number of clusters used.
    """
    features = check_features(features)
    n = features.shape[0]
    coarse = check_labels(coarse, n, "coarse").to(features.device)
    fine = check_labels(fine, n, "fine").to(features.device)
    check_several_classes(fine, "fine", "fine recovery")
    if mode not in MODES:
        raise ValueError(f"unknown fine-recovery mode {mode!r}; valid modes are {list(MODES)}")
    if normalize not in NORMALIZERS:
        raise ValueError(f"unknown normalize {normalize!r}; valid values are {list(NORMALIZERS)}")
    resolve_backend(backend, features.device)

    # Sort by coarse class once so that every class is a contiguous slice; scores ignore order.
    order = torch.argsort(coarse, stable=True)
    # Normalise in float32 at least (as k-means computes): l2 in bf16 would round the unit rows to
    # 8 bits and lose the small residuals that carry the fine classes.
    x = features.detach()[order].to(torch.promote_types(features.dtype, torch.float32))
    coarse_np, fine_np = coarse[order].cpu().numpy(), fine[order].cpu().numpy()
    coarse_ids, sizes = np.unique(coarse_np, return_counts=True)
    sizes = sizes.tolist()
    pairs = _contingency(coarse_np, fine_np)  # (coarse present) x (fine present)
    fine_per_coarse = (pairs > 0).sum(1).tolist()

    x = NORMALIZERS[normalize](x, sizes)
    kmeans_kwargs = dict(n_init=n_init, max_iter=max_iter, tol=tol, seed=seed, backend=backend)
    pred, num_clusters = MODES[mode](x, sizes, fine_per_coarse, pairs.shape[1], kmeans_kwargs)
    pred = pred.cpu().numpy()

    table = _contingency(pred, fine_np)
    rows, cols = _matched(table)
    cluster_ids, fine_ids = np.unique(pred), np.unique(fine_np)
    mapped = np.full(int(cluster_ids.max()) + 1, -1, dtype=np.int64)
    mapped[cluster_ids[rows]] = fine_ids[cols]
    correct = mapped[pred] == fine_np
    bounds = np.cumsum([0, *sizes])
    return {
        "acc": float(correct.mean()),
        "nmi": _nmi(table),
        "ari": _ari(table),
        "per_coarse_acc": [float(correct[a:b].mean()) for a, b in zip(bounds[:-1], bounds[1:])],
        "coarse_classes": [int(c) for c in coarse_ids],
        "chance_acc": float(pairs.max(1).sum() / n),
        "num_clusters": num_clusters,
    }


# ----------------------------------------------------------------------------- end to end


def reconstructed_fine_accuracy(
    features: torch.Tensor,
    predicted: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    *,
    normalize: str = "none",
    n_init: int = 10,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    backend: str = "auto",
) -> dict:
    """Accuracy of the fine labels reconstructed end to end: superclass from the network, fine
    class from k-means inside it (the 10-class accuracy Yang, Steinhardt & Hu 2023 set beside the
    accuracy of the same network trained on the fine labels).

    Each sample i goes to its predicted superclass c^_i (`predicted`, e.g. the argmax of the coarse
    head). The samples of each predicted superclass c are clustered by k-means into |F(c)| clusters,
    F(c) the fine classes of superclass c (read off the true (coarse, fine) pairs), and the clusters
    are matched one-to-one to F(c) by the Hungarian algorithm on the counts of their samples' true
    fine labels. With f^_i the fine class matched to i's cluster,

        acc = (1/N) sum_i [f^_i == fine_i]  <=  coarse_acc = (1/N) sum_i [c^_i == coarse_i],

    since a sample sent to the wrong superclass can only get one of that superclass's fine labels.
    A predicted superclass with no fine classes in the data (or one sample per cluster) is handled
    as in `fine_recovery`: k is at most its sample count, a single fine class is one cluster.

    Returns acc, coarse_acc, acc_given_coarse (acc / coarse_acc: the fine accuracy on the samples
    whose superclass is right) and num_clusters.
    """
    features = check_features(features)
    n = features.shape[0]
    coarse = check_labels(coarse, n, "coarse").to(features.device)
    fine = check_labels(fine, n, "fine").to(features.device)
    predicted = check_labels(predicted, n, "predicted").to(features.device)
    check_several_classes(fine, "fine", "fine-label reconstruction")
    if normalize not in NORMALIZERS:
        raise ValueError(f"unknown normalize {normalize!r}; valid values are {list(NORMALIZERS)}")
    resolve_backend(backend, features.device)

    coarse_np, fine_np = coarse.cpu().numpy(), fine.cpu().numpy()
    # The hierarchy as the data show it: each fine class belongs to the one superclass it is labelled with.
    pairs = np.unique(np.stack([fine_np, coarse_np], axis=1), axis=0)
    if np.unique(pairs[:, 0]).size != pairs.shape[0]:
        raise ValueError("fine labels must each belong to one coarse class; some fine class appears under several")
    children = {int(c): pairs[pairs[:, 1] == c, 0] for c in np.unique(pairs[:, 1])}

    # Group by predicted superclass (a contiguous slice each), as fine_recovery groups by the true one.
    order = torch.argsort(predicted, stable=True)
    x = features.detach()[order].to(torch.promote_types(features.dtype, torch.float32))
    pred_np = predicted[order].cpu().numpy()
    fine_sorted = fine_np[order.cpu().numpy()]
    groups, sizes = np.unique(pred_np, return_counts=True)
    x = NORMALIZERS[normalize](x, sizes.tolist())
    kmeans_kwargs = dict(n_init=n_init, max_iter=max_iter, tol=tol, seed=seed, backend=backend)

    correct, num_clusters, start = 0, 0, 0
    for group, size in zip(groups.tolist(), sizes.tolist()):
        segment, truth = x[start : start + size], fine_sorted[start : start + size]
        start += size
        targets = children.get(group, np.empty(0, dtype=np.int64))
        if targets.size == 0:
            continue  # a superclass that no sample belongs to: every sample sent there is wrong
        k = min(targets.size, size)
        ids = np.zeros(size, dtype=np.int64) if k == 1 else kmeans(segment, k, **kmeans_kwargs)[0].cpu().numpy()
        num_clusters += k
        # counts[j, t]: samples of cluster j whose true fine class is targets[t]; other fine classes never match.
        counts = (ids[:, None] == np.arange(k)[None, :]).T.astype(np.int64) @ (
            truth[:, None] == targets[None, :]
        ).astype(np.int64)
        rows, cols = _matched(counts)
        correct += int(counts[rows, cols].sum())
    coarse_acc = float((predicted == coarse).float().mean())
    acc = correct / n
    return {
        "acc": acc,
        "coarse_acc": coarse_acc,
        "acc_given_coarse": acc / coarse_acc if coarse_acc > 0 else 0.0,
        "num_clusters": num_clusters,
    }
