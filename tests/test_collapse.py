"""nc_metrics / NCAccumulator against an independent float64 numpy reference, exact simplex ETFs,
invariances, the float32 cancellation trap, and every input error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncfine.analysis.collapse import NCAccumulator, nc_metrics

KEYS = ("nc1", "nc1_cdnv", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc2_etf_error")
WEIGHT_KEYS = ("nc2_equinorm_w", "nc3", "nc4")


# ---------------------------------------------------------------------------------------------
# Reference: straight from the definitions, numpy float64, explicit D x D matrices.
# ---------------------------------------------------------------------------------------------
def reference(h, y, weight=None, bias=None):
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    classes = np.unique(y)
    c = len(classes)
    n, _ = h.shape
    idx = np.searchsorted(classes, y)
    mus = np.stack([h[idx == k].mean(axis=0) for k in range(c)])
    mu_g = mus.mean(axis=0)
    m = mus - mu_g
    e = h - mus[idx]
    sigma_w = e.T @ e / n
    sigma_b = m.T @ m / c
    out = {"nc1": np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / c}
    s2 = np.array([np.mean(np.sum(e[idx == k] ** 2, axis=1)) for k in range(c)])
    pairs = [(i, j) for i in range(c) for j in range(i + 1, c)]
    out["nc1_cdnv"] = np.mean([(s2[i] + s2[j]) / (2 * np.sum((mus[i] - mus[j]) ** 2)) for i, j in pairs])
    norms = np.linalg.norm(m, axis=1)
    out["nc2_equinorm"] = norms.std(ddof=1) / norms.mean()
    cos = np.array([m[i] @ m[j] / (norms[i] * norms[j]) for i, j in pairs])
    out["nc2_equiangle"] = cos.std(ddof=1) if len(cos) > 1 else 0.0
    out["nc2_maxangle"] = np.mean(np.abs(cos + 1 / (c - 1)))
    g = m @ m.T
    out["nc2_etf_error"] = np.linalg.norm(g / np.linalg.norm(g) - (np.eye(c) - 1 / c) / np.sqrt(c - 1))
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64)[classes]
        wn = np.linalg.norm(w, axis=1)
        out["nc2_equinorm_w"] = wn.std(ddof=1) / wn.mean()
        out["nc3"] = np.sum((w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2)
        logits = h @ w.T + (0 if bias is None else np.asarray(bias, dtype=np.float64)[classes])
        dist = ((h[:, None, :] - mus[None, :, :]) ** 2).sum(-1)
        out["nc4"] = np.mean(logits.argmax(1) != dist.argmin(1))
    out["num_classes_present"] = c
    return out


def random_problem(n=600, d=16, c=6, seed=0, spread=2.0, noise=1.0, imbalanced=True, shift=3.0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.linspace(1.0, 4.0, c) if imbalanced else torch.ones(c)
    labels = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=g)
    labels[:c] = torch.arange(c)  # every class present
    means = spread * torch.randn(c, d, generator=g, dtype=torch.float64) + shift * torch.randn(
        d, generator=g, dtype=torch.float64
    )
    features = means[labels] + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = (means - means.mean(0)) + 1.5 * spread * torch.randn(c, d, generator=g, dtype=torch.float64)
    bias = 0.5 * torch.randn(c, generator=g, dtype=torch.float64)
    return features, labels, weight, bias


def assert_metrics_close(got, expected, rtol, atol=0.0, keys=None):
    keys = keys or [k for k in expected if k != "num_classes_present"]
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key in keys:
        assert got[key] == pytest.approx(expected[key], rel=rtol, abs=atol), key
    assert got["num_classes_present"] == expected["num_classes_present"]


# ---------------------------------------------------------------------------------------------
# Against the reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,d,c,seed",
    [(600, 16, 6, 0), (400, 8, 2, 0), (500, 5, 12, 2), (300, 40, 10, 3)],
    ids=["C<D", "C=2", "C>D", "wide"],
)
def test_matches_numpy_reference(n, d, c, seed):
    features, labels, weight, bias = random_problem(n, d, c, seed)
    inputs = [t.clone() for t in (features, labels, weight, bias)]
    got = nc_metrics(features, labels, weight, bias)
    expected = reference(features.numpy(), labels.numpy(), weight.numpy(), bias.numpy())
    assert_metrics_close(got, expected, rtol=1e-6, atol=1e-12)
    for before, after in zip(inputs, (features, labels, weight, bias)):
        assert torch.equal(before, after)  # inputs are never modified in place
    assert 0.0 < got["nc4"] < 0.9  # the test exercises real disagreements
    assert set(nc_metrics(features, labels)) == set(KEYS) | {"num_classes_present"}


def test_c_equals_two_has_trivial_nc2():
    features, labels, _, _ = random_problem(300, 7, 2, seed=5)
    got = nc_metrics(features, labels)
    # Two centred means are opposite: equal norms, one pair at cos = -1 = -1/(C-1).
    assert got["nc2_equinorm"] == pytest.approx(0.0, abs=1e-12)
    assert got["nc2_equiangle"] == 0.0
    assert got["nc2_maxangle"] == pytest.approx(0.0, abs=1e-12)
    assert got["nc2_etf_error"] == pytest.approx(0.0, abs=1e-12)
    assert got["nc1"] > 0


# ---------------------------------------------------------------------------------------------
# Exact neural collapse: every metric vanishes
# ---------------------------------------------------------------------------------------------
def simplex_etf(c, d, scale, seed):
    g = torch.Generator().manual_seed(seed)
    vertices = math.sqrt(c / (c - 1)) * (torch.eye(c, dtype=torch.float64) - 1.0 / c)  # rows: unit-norm ETF
    basis, _ = torch.linalg.qr(torch.randn(d, c, generator=g, dtype=torch.float64))  # orthonormal columns
    return scale * vertices @ basis.T


@pytest.mark.parametrize("with_bias", [True, False])
def test_simplex_etf_gives_zero(with_bias):
    c, d = 6, 20
    etf = simplex_etf(c, d, scale=4.0, seed=0)
    g = torch.Generator().manual_seed(1)
    shift = 5.0 * torch.randn(d, generator=g, dtype=torch.float64)
    if not with_bias:  # without a bias the shift must be invisible to the classifier
        shift -= etf.T @ torch.linalg.lstsq(etf.T, shift).solution
    labels = torch.cat([torch.full((k + 3,), i) for i, k in enumerate(range(c))])  # imbalanced
    features = shift + etf[labels]
    bias = -etf @ shift if with_bias else None
    got = nc_metrics(features, labels, weight=etf.clone(), bias=bias)
    for key in KEYS + WEIGHT_KEYS:
        assert abs(got[key]) < 1e-10, (key, got[key])
    assert got["num_classes_present"] == c


# ---------------------------------------------------------------------------------------------
# Invariances
# ---------------------------------------------------------------------------------------------
def test_permutation_relabelling_and_scale_invariance():
    features, labels, weight, bias = random_problem(500, 12, 7, seed=4)
    base = nc_metrics(features, labels, weight, bias)

    order = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    assert_metrics_close(nc_metrics(features[order], labels[order], weight, bias), base, rtol=1e-10)

    relabel = torch.randperm(7, generator=torch.Generator().manual_seed(1))  # class k -> relabel[k]
    new_weight = torch.empty_like(weight)
    new_weight[relabel] = weight
    new_bias = torch.empty_like(bias)
    new_bias[relabel] = bias
    assert_metrics_close(nc_metrics(features, relabel[labels], new_weight, new_bias), base, rtol=1e-10)

    scale = 37.0  # logits W h + b scale by scale**2
    scaled = nc_metrics(features * scale, labels, weight * scale, bias * scale**2)
    assert_metrics_close(scaled, base, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Numerics: float32 cancellation and the float32 pseudo-inverse
# ---------------------------------------------------------------------------------------------
def test_float32_cancellation_is_avoided():
    """||mu|| ~ 20 with within-class std 1e-4: the one-pass float32 E[hh^T] - mu mu^T loses Sigma_W."""
    n, d, c = 4000, 64, 4
    g = torch.Generator().manual_seed(0)
    shift = torch.randn(d, generator=g, dtype=torch.float64)
    shift *= 20.0 / shift.norm()
    means = shift + 0.5 * torch.randn(c, d, generator=g, dtype=torch.float64)
    labels = torch.arange(n) % c
    features = (means[labels] + 1e-4 * torch.randn(n, d, generator=g, dtype=torch.float64)).float()

    truth = reference(features.double().numpy(), labels.numpy())
    got = nc_metrics(features, labels)
    assert got["nc1"] >= 0
    assert got["nc1"] == pytest.approx(truth["nc1"], rel=1e-6)
    assert got["nc1_cdnv"] == pytest.approx(truth["nc1_cdnv"], rel=1e-6)

    # What a naive float32 one-pass computation would give instead.
    true_trace = (
        sum(((features.double()[labels == k] - features.double()[labels == k].mean(0)) ** 2).sum() for k in range(c))
        / n
    )
    naive = torch.zeros((), dtype=torch.float32)
    for k in range(c):
        h = features[labels == k]
        mu = h.mean(0)
        naive += (h.square().mean(0) - mu.square()).sum() * (h.shape[0] / n)
    assert abs(float(naive) - float(true_trace)) > 0.5 * float(true_trace)


def test_nearly_collapsed_nc1_is_small_and_never_negative():
    """C = 10, D = 512, within std 1e-6: a float32 pinv with its default cutoff is garbage here."""
    n, d, c = 2000, 512, 10
    g = torch.Generator().manual_seed(3)
    means = 10.0 + torch.randn(c, d, generator=g, dtype=torch.float64)
    labels = torch.arange(n) % c
    features = means[labels] + 1e-6 * torch.randn(n, d, generator=g, dtype=torch.float64)
    truth = reference(features.numpy(), labels.numpy())["nc1"]
    got = nc_metrics(features.float(), labels)["nc1"]
    float64_got = nc_metrics(features, labels)["nc1"]
    assert float64_got == pytest.approx(truth, rel=1e-6)
    assert got >= 0.0
    assert got == pytest.approx(reference(features.float().double().numpy(), labels.numpy())["nc1"], rel=1e-6)

    # The trap being avoided: Sigma_B and Sigma_W in float32, numpy pinv at its default cutoff.
    x = features.float().numpy()
    mus = np.stack([x[labels.numpy() == k].mean(0) for k in range(c)])
    m = mus - mus.mean(0)
    e = x - mus[labels.numpy()]
    naive = np.trace((e.T @ e / n) @ np.linalg.pinv(m.T @ m / c)) / c
    assert abs(naive - truth) > 1e3 * truth


def reference_nc1_svd(h, y):
    """nc1 from the SVD of M itself (singular values resolved to eps * s_max, not sqrt(eps) as a Gram's)."""
    h = np.asarray(h, dtype=np.float64)
    classes, idx = np.unique(np.asarray(y), return_inverse=True)
    mus = np.stack([h[idx == k].mean(axis=0) for k in range(len(classes))])
    m = mus - mus.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    rank = min(len(classes) - 1, h.shape[1])
    e = h - mus[idx]
    return np.sum((e @ (vt[:rank].T / s[:rank])) ** 2) / h.shape[0]


def test_close_fine_classes_inside_coarse_classes():
    """Fine labels of coarse-collapsed float32 features (||mu|| = 20, std 1e-4): the fine means differ
    by ~1e-7 ||M||, below a Gram matrix's resolution. Their directions carry nearly all of NC1
    (the fine classes are not separated), and ||mu_c - mu_c'||^2 must not come from the Gram form."""
    coarse_classes, fine_per_coarse, per_class, d = 4, 5, 500, 16
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(coarse_classes, d, generator=g, dtype=torch.float64)
    coarse *= 20.0 / coarse.norm(dim=1, keepdim=True)
    fine = torch.arange(coarse_classes * fine_per_coarse).repeat_interleave(per_class)
    features = (
        coarse[fine // fine_per_coarse] + 1e-4 * torch.randn(len(fine), d, generator=g, dtype=torch.float64)
    ).float()
    x, y = features.double().numpy(), fine.numpy()
    truth_nc1 = reference_nc1_svd(x, y)
    truth_cdnv = reference(x, y)["nc1_cdnv"]
    assert truth_nc1 > 100  # fine classes overlap: far from collapsed
    acc = NCAccumulator(coarse_classes * fine_per_coarse, chunk_size=997)
    acc.update(features, fine)
    for got in (nc_metrics(features, fine, path="class"), nc_metrics(features, fine, path="feature"), acc.compute()):
        assert got["nc1"] == pytest.approx(truth_nc1, rel=1e-6)
        assert got["nc1_cdnv"] == pytest.approx(truth_cdnv, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Paths, chunks, dtypes, empty classes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d,c", [(400, 20, 6), (500, 6, 15)], ids=["C<D", "C>D"])
def test_class_and_feature_paths_agree(n, d, c):
    features, labels, weight, bias = random_problem(n, d, c, seed=7)
    by_class = nc_metrics(features, labels, weight, bias, path="class")
    by_feature = nc_metrics(features, labels, weight, bias, path="feature")
    assert_metrics_close(by_class, by_feature, rtol=1e-9)
    assert_metrics_close(nc_metrics(features, labels, weight, bias), by_class, rtol=1e-9)


def test_tiny_chunks_equal_one_chunk():
    features, labels, weight, bias = random_problem(517, 9, 5, seed=8)
    whole = nc_metrics(features, labels, weight, bias, chunk_size=10_000)
    assert_metrics_close(nc_metrics(features, labels, weight, bias, chunk_size=7), whole, rtol=1e-10)


def test_bfloat16_and_float32_inputs_are_summed_in_float64():
    features, labels, weight, bias = random_problem(400, 10, 4, seed=9)
    for dtype in (torch.bfloat16, torch.float32):
        low = features.to(dtype)
        got = nc_metrics(low, labels, weight.to(dtype), bias.to(dtype))
        exact = nc_metrics(low.double(), labels, weight.to(dtype).double(), bias.to(dtype).double())
        assert_metrics_close(got, exact, rtol=1e-12)


def test_empty_classes_are_left_out():
    features, labels, weight, bias = random_problem(450, 10, 7, seed=10)
    ids = torch.tensor([0, 1, 3, 4, 6, 7, 8])  # 9 classes declared, 2 and 5 empty
    full_weight = torch.zeros(9, 10, dtype=torch.float64)
    full_bias = torch.full((9,), 1e6, dtype=torch.float64)  # empty classes' huge bias must be ignored
    full_weight[ids], full_bias[ids] = weight, bias
    got = nc_metrics(features, ids[labels], full_weight, full_bias, num_classes=9)
    assert got["num_classes_present"] == 7
    assert_metrics_close(got, nc_metrics(features, labels, weight, bias), rtol=1e-12)
    expected = reference(features.numpy(), ids[labels].numpy(), full_weight.numpy(), full_bias.numpy())
    assert_metrics_close(got, expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------
def batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    cuts = sorted(torch.randint(1, n, (12,), generator=g).unique().tolist())
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, n])]


def test_streaming_equals_batch():
    features, labels, weight, bias = random_problem(700, 12, 6, seed=11)
    features = features + 50.0  # a big common offset: merges must stay stable
    weight, bias = weight_padded(weight, 8), bias_padded(bias, 8)  # classes 6 and 7 empty
    expected = nc_metrics(features, labels, weight, bias, num_classes=8)
    acc = NCAccumulator(num_classes=8, weight=weight, bias=bias, chunk_size=64)
    empty = (features[:0], labels[:0])  # a batch with no rows is a no-op in either pass
    acc.update(*empty)
    for part in batches(700, 0):
        acc.update(features[part], labels[part])
    without_nc4 = acc.compute()
    assert "nc4" not in without_nc4
    acc.second_pass(*empty)
    for part in reversed(batches(700, 1)):  # any batching and order
        acc.second_pass(features[part].float().double(), labels[part])
    got = acc.compute()
    assert_metrics_close(got, expected, rtol=1e-10, atol=1e-14)
    assert got["num_classes_present"] == 6
    for key in without_nc4:
        assert without_nc4[key] == got[key]


def weight_padded(weight, c):
    out = torch.randn(c, weight.shape[1], dtype=weight.dtype)
    out[: weight.shape[0]] = weight
    return out


def bias_padded(bias, c):
    out = torch.full((c,), 1e6, dtype=bias.dtype)
    out[: bias.shape[0]] = bias
    return out


def test_streaming_float32_cancellation_and_feature_path():
    g = torch.Generator().manual_seed(12)
    n, d, c = 3000, 8, 20  # C > D: feature path
    means = 20.0 + torch.randn(c, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    features = (means[labels] + 1e-4 * torch.randn(n, d, generator=g, dtype=torch.float64)).float()
    acc = NCAccumulator(num_classes=c)
    for part in batches(n, 2):
        acc.update(features[part], labels[part])
    expected = nc_metrics(features, labels)
    assert_metrics_close(acc.compute(), expected, rtol=1e-10)
    assert_metrics_close(acc.compute(path="class"), expected, rtol=1e-9)


def test_merged_accumulators_equal_one():
    features, labels, weight, bias = random_problem(600, 10, 5, seed=13)
    parts = [NCAccumulator(5, weight=weight, bias=bias) for _ in range(3)]
    for i, part in enumerate(batches(600, 3)):
        parts[i % 3].update(features[part], labels[part])
    merged = parts[0].merge(parts[1]).merge(parts[2])
    merged.second_pass(features, labels)
    assert_metrics_close(merged.compute(), nc_metrics(features, labels, weight, bias), rtol=1e-10)


def test_second_pass_must_see_the_same_samples():
    features, labels, weight, _ = random_problem(300, 6, 3, seed=14)
    acc = NCAccumulator(3, weight=weight)
    acc.update(features, labels)
    kept = features.clone()
    acc.second_pass(features[:200], labels[:200])
    assert torch.equal(kept, features)
    with pytest.raises(ValueError, match="second_pass\\(\\) saw 200 samples but update\\(\\) saw 300"):
        acc.compute()
    with pytest.raises(ValueError, match="frozen"):
        acc.update(features, labels)
    with pytest.raises(ValueError, match="needs the classifier"):
        NCAccumulator(3).second_pass(features, labels)
    with pytest.raises(ValueError, match="num_classes, an int >= 2, got 1"):
        NCAccumulator(1)  # at construction, not at the first compute()


def test_accumulator_reports_bad_input_at_compute():
    features, labels, _, _ = random_problem(100, 4, 3, seed=15)
    acc = NCAccumulator(3)
    acc.update(features, labels)
    bad = labels.clone()
    bad[:5] = 7
    acc.update(features, bad)
    with pytest.raises(ValueError, match="5 class ids outside \\[0, 3\\)"):
        acc.compute()
    acc = NCAccumulator(3)
    poisoned = features.clone()
    poisoned[[1, 4], 2] = float("nan")
    acc.update(poisoned, labels)
    with pytest.raises(ValueError, match="NaN or Inf in 2 of 100 rows"):
        acc.compute()
    with pytest.raises(ValueError, match="D=5"):
        acc.update(torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_nan_and_inf_rows_are_counted():
    features, labels, _, _ = random_problem(200, 5, 3, seed=16)
    features[[3, 50, 51], [0, 2, 4]] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    features[50, 1] = float("nan")  # two bad values in one row still count one row
    with pytest.raises(ValueError, match="NaN or Inf in 3 of 200 rows"):
        nc_metrics(features, labels, chunk_size=16)


@pytest.mark.parametrize(
    "make_args,match",
    [
        (lambda f, y, w: (f, y + 10, None, {"num_classes": 5}), "class id 1[0-4], outside \\[0, 5\\)"),
        (lambda f, y, w: (f, -y - 1, None, {}), "negative class id"),
        (lambda f, y, w: (f, y[:-1], None, {}), "labels must have shape \\(60,\\)"),
        (lambda f, y, w: (f[0], y, None, {}), "shape \\(N, D\\)"),
        (lambda f, y, w: (f[:0], y[:0], None, {}), "empty"),
        (lambda f, y, w: (f, torch.zeros_like(y), None, {}), "at least 2 classes"),
        (lambda f, y, w: (f, y.float(), None, {}), "integer class ids"),
        (lambda f, y, w: (f, y, w[:, :-1], {}), "weight must be a tensor of shape"),
        (lambda f, y, w: (f, y, w, {"bias": torch.zeros(7)}), "bias must be a tensor of shape"),
        (lambda f, y, w: (f, y, None, {"path": "diagonal"}), "path must be one of"),
        (lambda f, y, w: (f, y, None, {"chunk_size": 0}), "chunk_size must be a positive int"),
        (lambda f, y, w: (f, y, None, {"num_classes": 0}), "num_classes must be a positive int"),
    ],
    ids=[
        "label>=C",
        "label<0",
        "length",
        "1-D",
        "empty",
        "one class",
        "float labels",
        "weight",
        "bias",
        "path",
        "chunk",
        "num_classes",
    ],
)
def test_bad_input_is_a_clear_value_error(make_args, match):
    features, labels, weight, _ = random_problem(60, 4, 3, seed=17)
    f, y, w, kwargs = make_args(features, labels, weight)
    with pytest.raises(ValueError, match=match) as info:
        nc_metrics(f, y, w, **kwargs)
    assert "\n" not in str(info.value)


def test_coincident_means_give_inf_nc1_not_zero():
    g = torch.Generator().manual_seed(18)
    features = torch.randn(100, 3, generator=g, dtype=torch.float64)
    labels = torch.arange(100) % 2
    features[labels == 1] = features[labels == 0]  # identical classes: no separation at all
    assert nc_metrics(features, labels)["nc1"] == math.inf


def test_means_equal_up_to_rounding_are_coincident():
    """The same samples in another order: the two class means differ only by summation rounding
    (~eps ||mu||), which must not count as a separating direction (NC1 ~ 1e32 instead of inf)."""
    g = torch.Generator().manual_seed(19)
    features = 100.0 + torch.randn(1000, 3, generator=g, dtype=torch.float64)
    labels = torch.arange(1000) % 2
    features[labels == 1] = features[labels == 0][torch.randperm(500, generator=g)]
    for path in ("class", "feature"):
        assert nc_metrics(features, labels, path=path, chunk_size=7)["nc1"] == math.inf
