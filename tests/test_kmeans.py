"""k-means: agreement with scikit-learn, determinism, edge cases and errors, for both backends."""

import sys

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from ncfine.analysis import kmeans as kmeans_module
from ncfine.analysis.kmeans import kmeans, resolve_backend
from ncfine.analysis.recovery import cluster_accuracy
from ncfine.utils.errors import MissingDependencyError

BACKENDS = ["torch", "faiss"]


def blobs(n_per=60, k=6, d=8, spread=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=gen) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    return centers[labels] + spread * torch.randn(k * n_per, d, generator=gen), labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_separated_blobs_match_sklearn_partition(backend):
    x, truth = blobs()
    labels, centroids, inertia = kmeans(x, 6, backend=backend, seed=1)
    sk = KMeans(6, n_init=10, random_state=0).fit(x.numpy())
    assert cluster_accuracy(labels, truth) == 1.0
    assert cluster_accuracy(labels, sk.labels_) == 1.0
    assert inertia == pytest.approx(sk.inertia_, rel=1e-4)
    # Centroids are the cluster means of the returned assignment.
    for j in range(6):
        torch.testing.assert_close(centroids[j], x[labels == j].mean(0), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_data_inertia_within_one_percent_of_sklearn(backend):
    x = torch.rand(1500, 6, generator=torch.Generator().manual_seed(3))
    _, _, inertia = kmeans(x, 12, backend=backend, n_init=5)
    sk = KMeans(12, n_init=5, random_state=0).fit(x.numpy())
    assert abs(inertia - sk.inertia_) / sk.inertia_ < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_return_types_and_reported_inertia(backend):
    x = torch.rand(300, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels, centroids, inertia = kmeans(x, 4, backend=backend)
    assert labels.dtype == torch.int64 and labels.shape == (300,) and labels.device == x.device
    assert centroids.dtype == torch.float64 and centroids.shape == (4, 5)
    assert isinstance(inertia, float)
    assert inertia == pytest.approx(float(((x - centroids[labels]) ** 2).sum()), rel=1e-6)
    # Every point sits with its nearest centroid.
    assert torch.equal(torch.cdist(x, centroids).argmin(1), labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_result_and_seeds_matter(backend):
    x = torch.rand(400, 4, generator=torch.Generator().manual_seed(5))
    first = kmeans(x, 7, n_init=1, seed=11, backend=backend)
    second = kmeans(x, 7, n_init=1, seed=11, backend=backend)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and first[2] == second[2]
    inertias = {kmeans(x, 7, n_init=1, seed=s, backend=backend)[2] for s in range(5)}
    assert len(inertias) > 1


def test_torch_backend_batched_restarts_pick_the_best():
    x = torch.rand(400, 4, generator=torch.Generator().manual_seed(5))
    singles = [kmeans(x, 7, n_init=1, seed=s, backend="torch")[2] for s in range(4)]
    best_of_many = kmeans(x, 7, n_init=8, seed=0, backend="torch")[2]
    assert best_of_many <= max(singles)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_equal_n_and_k_one(backend):
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    labels, _, inertia = kmeans(x, 9, backend=backend)
    assert sorted(labels.tolist()) == list(range(9)) and inertia == pytest.approx(0.0, abs=1e-8)
    labels, centroids, inertia = kmeans(x, 1, backend=backend)
    assert labels.eq(0).all()
    torch.testing.assert_close(centroids[0], x.mean(0))
    assert inertia == pytest.approx(float(((x - x.mean(0)) ** 2).sum()), rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_sample_cluster_and_duplicates(backend):
    x, _ = blobs(n_per=30, k=2, d=3)
    outlier = torch.full((1, 3), 500.0)
    labels, _, _ = kmeans(torch.cat([x, outlier]), 3, backend=backend)
    assert (labels == labels[-1]).sum() == 1
    # Three distinct points repeated: k = 5 leaves clusters that can only duplicate; no crash.
    dup = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).repeat(7, 1)
    labels, _, inertia = kmeans(dup, 5, backend=backend)
    # faiss splits empty clusters by nudging a copy of a centroid, hence the loose tolerance.
    assert inertia == pytest.approx(0.0, abs=1e-4) and labels.shape == (21,)


def test_empty_clusters_are_reseeded_at_the_farthest_points(monkeypatch):
    x, truth = blobs(n_per=40, k=4, d=2)
    # A seeding that puts every centroid on one point: all but one cluster start empty.
    monkeypatch.setattr(kmeans_module, "_kmeans_plus_plus", lambda x, x_sq, k, r, gen: x[:1].expand(r, k, -1).clone())
    labels, _, _ = kmeans(x, 4, n_init=1, backend="torch")
    assert labels.unique().numel() == 4
    assert cluster_accuracy(labels, truth) == 1.0


def test_collapsed_features_far_from_origin_keep_their_structure():
    # Tiny spread around a huge offset: float32 expansion without centring would lose it.
    x, truth = blobs(n_per=50, k=3, d=16, spread=0.3)
    x = (x * 1e-3 + 1e4).float()
    labels, _, _ = kmeans(x, 3, backend="torch")
    assert cluster_accuracy(labels, truth) == 1.0


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(5, 2)
    with pytest.raises(ValueError, match="k=6 clusters is more than the 5 samples"):
        kmeans(x, 6)
    with pytest.raises(ValueError, match="positive integer"):
        kmeans(x, 0)
    with pytest.raises(ValueError, match=r"unknown kmeans backend 'sklearn'.*'auto', 'torch', 'faiss'"):
        kmeans(x, 2, backend="sklearn")
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf in 1 of 5 rows"):
        kmeans(bad, 2)


def test_missing_faiss_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    kmeans_module._faiss_usable.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"kmeans backend 'faiss'.*pip install 'ncfine\[faiss\]'"):
            kmeans(torch.rand(10, 2), 2, backend="faiss")
        assert resolve_backend("auto") == "torch"
    finally:
        kmeans_module._faiss_usable.cache_clear()


def test_auto_prefers_faiss_on_cpu_when_installed():
    assert resolve_backend("auto", "cpu") == "faiss"
    assert resolve_backend("torch") == "torch"


def test_numpy_free_contract_accepts_integer_features():
    x = torch.tensor(np.array([[0, 0], [0, 1], [10, 10], [10, 11]]))
    labels, centroids, _ = kmeans(x, 2, backend="torch")
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert centroids.is_floating_point()


def test_k_may_be_any_integer_type_but_not_bool_or_float():
    x, _ = blobs(n_per=10, k=3, d=2)
    reference = kmeans(x, 3, n_init=1, backend="torch")[2]
    assert kmeans(x, np.int64(3), n_init=1, backend="torch")[2] == reference  # e.g. k = labels.max() + 1 in numpy
    assert kmeans(x, torch.tensor(3), n_init=1, backend="torch")[2] == reference
    for bad in (True, 3.0, torch.tensor(3.0), np.float64(3)):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            kmeans(x, bad)
