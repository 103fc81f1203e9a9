"""Fine-class recovery, cluster scores and probes on hierarchical Gaussian mixtures with known structure."""

import itertools

import numpy as np
import pytest
import torch
from sklearn import metrics

from ncfine.analysis.recovery import (
    _ari,
    _contingency,
    _nmi,
    cluster_accuracy,
    fine_recovery,
    kmeans,
    knn_probe,
    linear_probe,
)
from ncfine.callbacks import FineRecoveryCallback
from ncfine.utils.errors import ConfigError


def hierarchical_mixture(
    n, *, num_coarse=4, fine_per_coarse=2, dim=16, coarse_sep=20.0, fine_sep=4.0, noise=1.0, seed=0
):
    """Coarse means far apart, fine offsets around each coarse mean, isotropic noise; balanced fine classes.

    Returns draw(draw_seed) -> (x, coarse, fine): the means depend on `seed` only, so draws with
    different draw seeds (train and test, say) come from one mixture.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse_means = torch.randn(num_coarse, dim, generator=gen) * coarse_sep
    fine_offsets = torch.randn(num_coarse, fine_per_coarse, dim, generator=gen) * fine_sep

    def draw(draw_seed):
        g = torch.Generator().manual_seed(1000 + draw_seed)
        fine = torch.arange(num_coarse * fine_per_coarse).repeat(n // (num_coarse * fine_per_coarse) + 1)[:n]
        fine = fine[torch.randperm(n, generator=g)]
        coarse = fine // fine_per_coarse
        x = (
            coarse_means[coarse]
            + fine_offsets[coarse, fine % fine_per_coarse]
            + noise * torch.randn(n, dim, generator=g)
        )
        return x, coarse, fine

    return draw


# ----------------------------------------------------------------------------- cluster_accuracy


def brute_force_accuracy(pred, true):
    clusters, classes = sorted(set(pred)), sorted(set(true))
    best = 0
    if len(clusters) <= len(classes):
        for image in itertools.permutations(classes, len(clusters)):
            m = dict(zip(clusters, image))
            best = max(best, sum(m[p] == t for p, t in zip(pred, true)))
    else:
        for image in itertools.permutations(clusters, len(classes)):
            m = dict(zip(image, classes))
            best = max(best, sum(m.get(p) == t for p, t in zip(pred, true)))
    return best / len(pred)


@pytest.mark.parametrize("n_clusters,n_classes", [(4, 4), (3, 5), (5, 3)])
def test_cluster_accuracy_equals_brute_force(n_clusters, n_classes):
    rng = np.random.default_rng(n_clusters * 10 + n_classes)
    for _ in range(5):
        true = rng.integers(0, n_classes, 40)
        pred = np.where(rng.random(40) < 0.6, true % n_clusters, rng.integers(0, n_clusters, 40))
        assert cluster_accuracy(pred, true) == pytest.approx(brute_force_accuracy(pred.tolist(), true.tolist()))


def test_cluster_accuracy_ignores_cluster_names_and_accepts_tensors():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.7, true, rng.integers(0, 5, 200))
    base = cluster_accuracy(pred, true)
    perm = rng.permutation(5) + 100  # arbitrary, non-contiguous ids
    assert cluster_accuracy(perm[pred], true) == pytest.approx(base)
    assert cluster_accuracy(torch.from_numpy(pred), torch.from_numpy(true)) == pytest.approx(base)
    assert cluster_accuracy(true, true) == 1.0
    assert cluster_accuracy(np.zeros(4, dtype=int), np.array([0, 0, 1, 1])) == 0.5


def test_cluster_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="must match"):
        cluster_accuracy(np.zeros(3, dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integer ids"):
        cluster_accuracy(np.zeros(3), np.zeros(3, dtype=int))


@pytest.mark.parametrize("seed", range(4))
def test_nmi_and_ari_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.5, true, rng.integers(0, 4, 300))
    table = _contingency(pred, true)
    assert _nmi(table) == pytest.approx(metrics.normalized_mutual_info_score(true, pred), abs=1e-12)
    assert _ari(table) == pytest.approx(metrics.adjusted_rand_score(true, pred), abs=1e-12)


def test_nmi_and_ari_edge_cases_match_sklearn():
    for true, pred in [([0, 0, 0], [1, 1, 1]), ([0, 0, 1, 1], [0, 0, 0, 0]), ([0, 1, 2, 3], [0, 0, 1, 1])]:
        table = _contingency(np.array(pred), np.array(true))
        assert _nmi(table) == pytest.approx(metrics.normalized_mutual_info_score(true, pred))
        assert _ari(table) == pytest.approx(metrics.adjusted_rand_score(true, pred))


# ----------------------------------------------------------------------------- fine_recovery


@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("mode", ["per_coarse", "global"])
def test_separated_fine_classes_are_recovered(mode, backend):
    x, coarse, fine = hierarchical_mixture(800)(0)
    result = fine_recovery(x, coarse, fine, mode=mode, backend=backend, n_init=3)
    assert result["acc"] > 0.98 and result["nmi"] > 0.9 and result["ari"] > 0.9
    assert len(result["per_coarse_acc"]) == 4 and min(result["per_coarse_acc"]) > 0.95
    assert result["num_clusters"] == 8 and result["coarse_classes"] == [0, 1, 2, 3]
    assert result["chance_acc"] == pytest.approx(0.5)


def test_without_fine_offsets_recovery_is_chance():
    x, coarse, fine = hierarchical_mixture(800, fine_sep=0.0)(0)
    result = fine_recovery(x, coarse, fine, mode="per_coarse", backend="torch", n_init=3)
    assert result["chance_acc"] == pytest.approx(0.5)
    assert 0.5 <= result["acc"] < 0.6
    # Pooled NMI/ARI also credit the coarse split: 8 clusters that know only the 4 coarse classes
    # score NMI = log 4 / ((log 8 + log 8) / 2) = 2/3 and ARI = 3/7 here, against 1.0 when separated.
    assert result["nmi"] < 0.7 and result["ari"] < 0.45


def test_pooled_accuracy_is_the_size_weighted_mean_of_per_coarse_accuracies():
    x, coarse, fine = hierarchical_mixture(600, num_coarse=3, fine_per_coarse=3, fine_sep=1.5)(1)
    keep = torch.ones(600, dtype=torch.bool)
    keep[(coarse == 2).nonzero().flatten()[:120]] = False  # unequal class sizes
    x, coarse, fine = x[keep], coarse[keep], fine[keep]
    for mode in ("per_coarse", "global"):
        result = fine_recovery(x, coarse, fine, mode=mode, backend="torch", n_init=2)
        sizes = torch.bincount(coarse).double()
        weighted = float((torch.tensor(result["per_coarse_acc"], dtype=torch.float64) * sizes).sum() / sizes.sum())
        assert result["acc"] == pytest.approx(weighted)


def test_per_coarse_scores_equal_the_hungarian_accuracy_of_the_pooled_assignment():
    x, coarse, fine = hierarchical_mixture(400, fine_sep=1.0)(2)
    result = fine_recovery(x, coarse, fine, backend="torch", n_init=2, seed=4)
    pooled = torch.empty(400, dtype=torch.long)
    for c in range(4):
        members = coarse == c
        pooled[members] = kmeans(x[members], 2, n_init=2, seed=4, backend="torch")[0] + 2 * c
    assert result["acc"] == pytest.approx(cluster_accuracy(pooled, fine))
    assert result["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(fine.numpy(), pooled.numpy()))
    assert result["ari"] == pytest.approx(metrics.adjusted_rand_score(fine.numpy(), pooled.numpy()))


@pytest.mark.parametrize("normalize", ["none", "center", "l2", "center_l2"])
def test_collapsed_features_far_from_origin(normalize):
    # Features after collapse: huge coarse means, a residual 1e-4 of their size that still holds the fine classes.
    x, coarse, fine = hierarchical_mixture(400, coarse_sep=1e4, fine_sep=1.0, noise=0.1)(3)
    result = fine_recovery(x.float(), coarse, fine, normalize=normalize, backend="torch", n_init=2)
    assert result["acc"] > 0.98


def test_chance_is_the_majority_fine_class_per_coarse_class():
    coarse = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    fine = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 4])
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    result = fine_recovery(x, coarse, fine, backend="torch", n_init=1)
    assert result["chance_acc"] == pytest.approx((3 + 3) / 10)
    assert result["num_clusters"] == 2 + 3


def test_single_fine_class_and_single_sample_coarse_classes():
    x, coarse, fine = hierarchical_mixture(200, num_coarse=2)(0)
    x = torch.cat([x, torch.randn(5, 16), torch.randn(1, 16)])
    coarse = torch.cat([coarse, torch.full((5,), 2), torch.tensor([3])])
    fine = torch.cat([fine, torch.full((5,), 4), torch.tensor([5])])
    result = fine_recovery(x, coarse, fine, mode="per_coarse", backend="torch", n_init=2)
    assert result["per_coarse_acc"][2:] == [1.0, 1.0]  # one fine class each: one cluster, always right
    assert result["num_clusters"] == 4 + 1 + 1 and result["acc"] > 0.98
    result = fine_recovery(x, coarse, fine, mode="global", backend="torch", n_init=2)
    assert result["num_clusters"] == 6 and len(result["per_coarse_acc"]) == 4


def test_fine_recovery_is_deterministic_and_validates_input():
    x, coarse, fine = hierarchical_mixture(300, fine_sep=0.5)(0)
    assert fine_recovery(x, coarse, fine, seed=3) == fine_recovery(x, coarse, fine, seed=3)
    with pytest.raises(ValueError, match="unknown fine-recovery mode 'local'"):
        fine_recovery(x, coarse, fine, mode="local")
    with pytest.raises(ValueError, match=r"unknown normalize 'zscore'.*'center_l2'"):
        fine_recovery(x, coarse, fine, normalize="zscore")
    with pytest.raises(ValueError, match="fine must have shape"):
        fine_recovery(x, coarse, fine[:-1])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fine_recovery(bad, coarse, fine)


# ----------------------------------------------------------------------------- probes


def probe_data():
    """Train and test draws of one mixture with 6 fine classes."""
    x_train, _, y_train = hierarchical_mixture(600, num_coarse=3, noise=2.0, seed=7)(0)
    x_test, _, y_test = hierarchical_mixture(300, num_coarse=3, noise=2.0, seed=7)(1)
    return x_train, y_train, x_test, y_test


def test_linear_probe_beats_chance_and_is_deterministic():
    data = probe_data()
    first = linear_probe(*data, max_iter=30)
    assert first["acc"] > 0.9 and first["train_acc"] > 0.9  # chance is 1/6
    assert linear_probe(*data, max_iter=30) == first
    unscaled = linear_probe(*data, standardize=False, weight_decay=0.0, max_iter=50, num_classes=8)
    assert unscaled["acc"] > 0.9


def test_linear_probe_reaches_the_sklearn_optimum():
    from sklearn.linear_model import LogisticRegression

    from ncfine.analysis.probes import _fit_softmax_regression

    x, _, y = hierarchical_mixture(600, num_coarse=3, noise=4.0, fine_sep=1.0, seed=7)(0)
    x = ((x - x.mean(0)) / x.std(0, unbiased=False)).double()
    decay = 1e-3

    def objective(theta):
        logits = x @ theta[:-1] + theta[-1]
        return float(torch.nn.functional.cross_entropy(logits, y) + 0.5 * decay * (theta[:-1] ** 2).sum())

    ours = objective(_fit_softmax_regression(x, y, 6, decay, max_iter=200))
    sk = LogisticRegression(C=1 / (decay * 600), max_iter=5000, tol=1e-10).fit(x.numpy(), y.numpy())
    reference = objective(torch.cat([torch.from_numpy(sk.coef_.T), torch.from_numpy(sk.intercept_)[None]]))
    assert ours == pytest.approx(reference, rel=1e-6)


def test_linear_probe_on_uninformative_features_is_near_chance():
    x_train, y_train, x_test, y_test = probe_data()
    noise = torch.Generator().manual_seed(0)
    result = linear_probe(torch.randn(600, 16, generator=noise), y_train, torch.randn(300, 16, generator=noise), y_test)
    assert result["acc"] < 0.35


@pytest.mark.parametrize("temperature", [None, 0.07])
def test_knn_probe_beats_chance_and_is_deterministic(temperature):
    data = probe_data()
    first = knn_probe(*data, k=10, chunk_size=64, temperature=temperature)
    assert first["acc"] > 0.9
    assert knn_probe(*data, k=10, chunk_size=7, temperature=temperature) == first


def test_knn_tie_goes_to_the_more_similar_neighbour():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0])
    test = torch.tensor([[1.0, 0.2], [0.2, 1.0]])
    assert knn_probe(train, labels, test, torch.tensor([1, 0]), k=2)["acc"] == 1.0


def test_probes_validate_input():
    x_train, y_train, x_test, y_test = probe_data()
    with pytest.raises(ValueError, match="16 dimensions but test_features have 15"):
        linear_probe(x_train, y_train, x_test[:, :15], y_test)
    bad = x_test.clone()
    bad[3, 3] = float("inf")
    with pytest.raises(ValueError, match="test_features contain NaN or Inf"):
        knn_probe(x_train, y_train, bad, y_test)
    with pytest.raises(ValueError, match="outside"):
        linear_probe(x_train, y_train, x_test, y_test, num_classes=3)


def test_analysis_ignores_a_callers_autocast():
    # Uniform points: bf16 distances would move some assignments and so the centroids.
    points = torch.rand(1500, 6, generator=torch.Generator().manual_seed(0))
    plain = kmeans(points, 12, n_init=2, backend="torch")
    x_train, y_train, x_test, y_test = probe_data()
    probes = (linear_probe(x_train, y_train, x_test, y_test, max_iter=20), knn_probe(x_train, y_train, x_test, y_test))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = kmeans(points, 12, n_init=2, backend="torch")
        assert (
            linear_probe(x_train, y_train, x_test, y_test, max_iter=20),
            knn_probe(x_train, y_train, x_test, y_test),
        ) == probes
    assert torch.equal(under_autocast[1], plain[1]) and under_autocast[2] == plain[2]


def test_low_precision_features_are_normalized_in_float32():
    # Collapsed-looking bf16 features: l2 in bf16 would round the unit rows to 8 bits and lose the residuals.
    gen = torch.Generator().manual_seed(0)
    fine = torch.randint(0, 6, (1200,), generator=gen)
    coarse = fine // 2
    x = (torch.randn(3, 32, generator=gen) * 200 + 300)[coarse] + torch.randn(6, 32, generator=gen)[fine]
    x = (x + 0.2 * torch.randn(1200, 32, generator=gen)).bfloat16()
    kwargs = dict(normalize="l2", backend="torch", n_init=2)
    assert fine_recovery(x, coarse, fine, **kwargs) == fine_recovery(x.float(), coarse, fine, **kwargs)


def test_linear_probe_without_standardization_handles_large_features():
    # Raw features of norm ~1e4: every step on the line-search grid overshoots at first; the probe
    # must shrink its steps instead of stopping at W = 0 (chance accuracy).
    x_train, y_train, x_test, y_test = probe_data()
    result = linear_probe(x_train * 1e3 + 1e3, y_train, x_test * 1e3 + 1e3, y_test, standardize=False, max_iter=50)
    assert result["acc"] > 0.9


def test_probe_arguments_are_validated():
    x_train, y_train, x_test, y_test = probe_data()
    with pytest.raises(ValueError, match="weight_decay >= 0"):
        linear_probe(x_train, y_train, x_test, y_test, weight_decay=float("nan"))
    data = (x_train, y_train, x_test, y_test)
    assert knn_probe(*data, k=np.int64(10)) == knn_probe(*data, k=10)


def test_callback_rejects_an_unknown_normalize_at_construction():
    # A typo fails before training, not after the first epoch inside fine_recovery.
    with pytest.raises(ConfigError, match=r"unknown fine-recovery normalize 'centre'.*'center'"):
        FineRecoveryCallback(normalize="centre")


def test_probes_take_sparse_class_ids_as_they_are():
    # Ids are renumbered in order, so these give exactly the 0..5 results; 10**12 sizes no matrix.
    x_train, y_train, x_test, y_test = probe_data()
    ids = torch.tensor([3, 5, 7, 11, 42, 10**12])
    for probe in (linear_probe, knn_probe):
        assert probe(x_train, ids[y_train], x_test, ids[y_test]) == probe(x_train, y_train, x_test, y_test)
