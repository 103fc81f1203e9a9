"""Sub-class discovery without fine labels (issue #35): the pure functions on features whose
sub-cluster counts are known (1 included), the per-cluster scores against an independent count,
and the silhouette against a brute-force reference."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ncfine.analysis.discovery import (
    CRITERIA,
    MIN_CLUSTER_POINTS,
    choose_k,
    discover_subclasses,
    nearest_to_centroid,
    silhouette_score,
)


def _blobs(k: int, n: int = 240, d: int = 16, separation: float = 8.0, seed: int = 0):
    """n points in k well separated isotropic Gaussian blobs (unit noise) in d dims."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)
    labels = torch.arange(n) % k
    return centres[labels] + torch.randn(n, d, generator=g), labels


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_criterion_finds_the_number_of_blobs_including_one(criterion, k):
    x, labels = _blobs(k)
    found = choose_k(x, 6, criterion=criterion, backend="torch", n_init=3)
    assert found["k"] == k, found["scores"]
    assert set(found["scores"]) == set(range(1, 7))  # a score (or None) recorded for every k
    if k > 1:
        # The clusters are the blobs (up to their numbering).
        table = torch.zeros(k, k)
        table.index_put_((found["labels"], labels), torch.ones(len(labels)), accumulate=True)
        assert int(table.max(1).values.sum()) == len(labels)


def test_the_default_criterion_finds_five_blobs_in_128_dims():
    x, _ = _blobs(5, n=500, d=128, separation=10.0)
    assert choose_k(x, 8, backend="torch", n_init=3)["k"] == 5


def test_prediction_strength_scores_one_at_k1_and_low_past_the_truth():
    x, _ = _blobs(2)
    scores = choose_k(x, 5, criterion="prediction_strength", backend="torch", n_init=3)["scores"]
    assert scores[1] == 1.0 and scores[2] > 0.9 and min(scores[3], scores[4], scores[5]) < 0.8


def _brute_force_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    values = []
    for i in range(len(x)):
        d = np.linalg.norm(x - x[i], axis=1)
        own = labels == labels[i]
        if own.sum() == 1:
            values.append(0.0)
            continue
        a = d[own].sum() / (own.sum() - 1)
        b = min(d[labels == other].mean() for other in np.unique(labels) if other != labels[i])
        values.append((b - a) / max(a, b))
    return float(np.mean(values))


def test_silhouette_matches_a_brute_force_reference_in_chunks():
    x, _ = _blobs(3, n=61, d=5, separation=2.0)
    labels = torch.randint(0, 4, (61,), generator=torch.Generator().manual_seed(1))
    labels[7] = 4  # a cluster of one point: s = 0 there
    expected = _brute_force_silhouette(x.double().numpy(), labels.numpy())
    assert silhouette_score(x, labels, chunk_rows=7) == pytest.approx(expected, rel=1e-10)


def _hierarchy_with_known_subclasses():
    """Superclass 0: one blob (k = 1); 1: two; 2: three; 3: 6 points (too small to cluster)."""
    parts, coarse, fine = [], [], []
    next_fine = 0
    for c, (k, n) in enumerate([(1, 150), (2, 150), (3, 150), (1, 6)]):
        x, sub = _blobs(k, n=n, seed=c)
        parts.append(x + 50.0 * c)  # superclasses far apart, as collapsed features are
        coarse.append(torch.full((n,), c))
        fine.append(sub + next_fine)
        next_fine += k
    return torch.cat(parts), torch.cat(coarse), torch.cat(fine)


def test_discovery_per_superclass_scores_and_fine_composition():
    x, coarse, fine = _hierarchy_with_known_subclasses()
    # A head that is right everywhere except on fine class 2 (one of superclass 1's two blobs),
    # where it says superclass 0: hidden stratification the clusters must expose.
    predicted = coarse.clone()
    predicted[fine == 2] = 0
    logits = 5.0 * F.one_hot(predicted, 4).float()
    result = discover_subclasses(x, coarse, logits=logits, fine=fine, max_k=5, backend="torch", n_init=3)
    entries = {e["coarse"]: e for e in result["superclasses"]}
    assert [entries[c]["k"] for c in range(4)] == [1, 2, 3, 1]
    assert entries[3]["note"].startswith("too small to cluster (6 samples")
    assert entries[2]["note"] is None  # 150 samples: every k <= 5 tried
    for c in range(4):
        assert entries[c]["fine"]["true_k"] == entries[c]["k"]
        if entries[c]["k"] > 1:
            assert entries[c]["fine"]["ari"] == pytest.approx(1.0)
    # Superclass 1: one cluster is fine class 2 entirely, the model gets it all wrong.
    one = entries[1]
    assert one["accuracy"] == pytest.approx(0.5)
    worst = one["clusters"][one["worst_cluster"]]
    assert worst["fine_counts"] == {2: 75} and worst["accuracy"] == 0.0 and worst["size"] == 75
    other = one["clusters"][1 - one["worst_cluster"]]
    assert other["accuracy"] == 1.0 and other["fine_counts"] == {1: 75}
    # The loss is the mean cross-entropy of the logits on the cluster's samples.
    rows = (coarse == 1) & (result["assignments"] == one["worst_cluster"])
    assert worst["loss"] == pytest.approx(float(F.cross_entropy(logits[rows].double(), coarse[rows])))
    # Assignments and distances cover every sample; each cluster's nearest samples are its own.
    assert result["assignments"].shape == coarse.shape and bool((result["distances"] >= 0).all())
    rows_1 = torch.nonzero(coarse == 1).flatten().tolist()
    nearest = nearest_to_centroid(result["assignments"], result["distances"], rows_1, 4)
    for cluster, members in nearest.items():
        assert len(members) == 4 and all(int(result["assignments"][m]) == cluster for m in members)
        assert [float(result["distances"][m]) for m in members] == sorted(
            float(result["distances"][m]) for m in members
        )


def test_without_fine_labels_or_logits_those_keys_are_absent():
    x, coarse, _ = _hierarchy_with_known_subclasses()
    result = discover_subclasses(x, coarse, max_k=4, backend="torch", n_init=2)
    for entry in result["superclasses"]:
        assert "fine" not in entry and "accuracy" not in entry and "worst_cluster" not in entry
        assert all(set(cluster) == {"cluster", "size"} for cluster in entry["clusters"])


def test_bad_max_k_and_criterion_fail_with_one_line():
    x, coarse, _ = _hierarchy_with_known_subclasses()
    with pytest.raises(ValueError, match=r"max_k must be a positive integer .* got 0"):
        discover_subclasses(x, coarse, max_k=0)
    # 151 > superclass 0's 150 samples; superclass 3 (6 samples) is too small to cluster and not the reason.
    with pytest.raises(ValueError, match=r"max_k=151 is larger than superclass 0's 150 samples; use max_k <= 150"):
        discover_subclasses(x, coarse, max_k=151)
    with pytest.raises(ValueError, match=r"unknown discovery criterion 'elbow'; valid criteria are \["):
        discover_subclasses(x, coarse, criterion="elbow")
    with pytest.raises(ValueError, match=r"logits must have shape \(456, C\)"):
        discover_subclasses(x, coarse, logits=torch.zeros(3, 4))


def test_discovery_is_deterministic_for_a_seed():
    x, coarse, fine = _hierarchy_with_known_subclasses()
    a = discover_subclasses(x, coarse, fine=fine, max_k=4, backend="torch", n_init=2, seed=3)
    b = discover_subclasses(x, coarse, fine=fine, max_k=4, backend="torch", n_init=2, seed=3)
    assert torch.equal(a["assignments"], b["assignments"])
    assert a["superclasses"] == b["superclasses"]


def test_gap_statistic_is_invariant_to_scale():
    x, _ = _blobs(2)
    small = choose_k(x, 4, criterion="gap", backend="torch", n_init=2)
    large = choose_k(1000.0 * x, 4, criterion="gap", backend="torch", n_init=2)
    assert small["k"] == large["k"] == 2
    for k in small["scores"]:
        assert math.isclose(small["scores"][k], large["scores"][k], rel_tol=1e-3, abs_tol=1e-3)


def test_pca_projection_keeps_the_clusters():
    x, _ = _blobs(3, d=64)
    assert choose_k(x, 5, backend="torch", n_init=2, pca_dim=4)["k"] == 3


def test_a_superclass_too_large_for_max_k_clusters_only_up_to_its_size():
    # 12 samples: at least MIN_CLUSTER_POINTS per sub-cluster allows k <= 2, and the note says so.
    x, _ = _blobs(2, n=12, separation=20.0)
    result = discover_subclasses(x, torch.zeros(12, dtype=torch.long), max_k=8, backend="torch", n_init=2)
    [entry] = result["superclasses"]
    assert (
        entry["note"] == f"k <= {12 // MIN_CLUSTER_POINTS} tried (12 samples, >= {MIN_CLUSTER_POINTS} per sub-cluster)"
    )
    assert set(entry["scores"]) == {1, 2}
