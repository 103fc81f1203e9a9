"""Neural Collapse metrics NC1-NC4, exact in float64, for N in the millions and any device.

Notation: N samples h_i in R^D with labels y_i; only the C classes that have samples take part
(empty classes are dropped, and with them their classifier rows); n_c samples in class c.

    mu_c    = (1/n_c) sum_{y_i = c} h_i                      class means
    mu_G    = (1/C) sum_c mu_c                                global mean (unweighted over classes)
    M       = [mu_c - mu_G]_c                                 (C, D) centred class means
    e_i     = h_i - mu_{y_i}                                  within-class deviations
    Sigma_W = (1/N) sum_i e_i e_i^T,   Sigma_B = (1/C) M^T M,   G = M M^T (C, C)

    nc1            = Tr(Sigma_W Sigma_B^+) / C                                  Papyan, Han & Donoho 2020 (PNAS)
    nc1_cdnv       = mean_{c<c'} (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^2),
                     s_c^2 = (1/n_c) sum_{y_i=c} ||e_i||^2                        Galanti et al. 2022 (ICLR)
    nc2_equinorm   = std_c ||M_c|| / mean_c ||M_c||        (sample std, n-1)     Papyan et al. 2020
    nc2_equinorm_w = std_c ||w_c|| / mean_c ||w_c||                             Papyan et al. 2020
    nc2_equiangle  = std_{c<c'} cos(M_c, M_c')  (sample std; 0 for C=2, one pair)  Papyan et al. 2020
    nc2_maxangle   = mean_{c<c'} |cos(M_c, M_c') + 1/(C-1)|                     Papyan et al. 2020
    nc2_etf_error  = || G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F                 Zhu et al. 2021; Han et al. 2022
    nc3            = || W/||W||_F - M/||M||_F ||_F^2                            Papyan et al. 2020; Zhu et al. 2021
    nc4            = (1/N) #{i : argmax_c (W h_i + b)_c != argmin_c ||h_i - mu_c||} Papyan et al. 2020

How NC1 is computed without the D x D matrices. With the thin SVD M = U S V^T on its nonzero
spectrum, Sigma_B = (1/C) V S^2 V^T, Sigma_B^+ = C V S^-2 V^T and

    nc1 = Tr(Sigma_W V S^-2 V^T) = (1/N) sum_i ||Q^T e_i||^2,
    Q   = V S^-1                                                        (D, r), r = rank M <= min(C-1, D).

(Equivalently nc1 = Tr(A (G^+)^2) with G = M M^T and A = (1/N) sum_i (M e_i)(M e_i)^T.) The SVD is
taken of M itself, never of a Gram matrix: eigh(M M^T) squares the condition number, so class
means closer than ~1e-6 ||M|| (fine classes inside one coarse class, say) fall below the Gram's
rounding level, and their directions -- where NC1 is largest -- would be dropped. M is first
reduced by a QR factorisation to a C x C factor ("class" path: M^T = Q R, O(D C^2)) or a D x D
factor ("feature" path: M = Q R, O(C D^2)); "auto" takes the smaller. A sum of squares cannot go
negative, unlike Tr(Sigma_W Sigma_B^+) from a float32 pinv. The pseudo-inverse keeps at most
min(C-1, D) singular values (the centring makes 1 a left null vector of M), and of those only
singular values above `10 * max(C, D) * eps_64 * max(s_max, ||[mu_c]_c||_F)`, the float64 rounding
level of M (its entries come from means of size ||mu_c||); smaller ones are treated as zero.

Numerics: two passes (class sums; then deviations from the final means), every chunk cast to
float64 only while it is processed, so memory beyond the features is bounded by the chunk size
(a few copies of `chunk_size x D` float64 plus O(C D + C^2)), whatever N. A one-pass float32
E[hh^T] - mu mu^T, by contrast, loses Sigma_W entirely once ||mu|| is 1e5 times the within-class
spread. Host synchronisations happen a fixed number of times per call, never per chunk.

Streaming: `NCAccumulator` gives the same numbers from batches without storing the features
(see its docstring for the one-pass merge and the second pass that NC4 needs).
"""

from __future__ import annotations

import math

import torch

from ncfine.analysis._validation import check_feature_shape, check_labels

__all__ = ["nc_metrics", "NCAccumulator", "PATHS"]

_F64 = torch.float64
# Singular values of a float64 (C, D) matrix are known to about max(C, D) * eps * (its scale);
# the factor 10 is the margin that keeps rounding noise out of the pseudo-inverse.
_RANK_RTOL = 10.0 * torch.finfo(_F64).eps
# Auto chunk: 2**24 float64 values (128 MiB) per working copy of a chunk, 1024..65536 rows.
_CHUNK_VALUES = 1 << 24
_CHUNK_MIN_ROWS, _CHUNK_MAX_ROWS = 1024, 65536

PATHS = ("auto", "class", "feature")


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def _check_num_classes(num_classes) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")


def _check_path(path: str) -> None:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")


def _chunk_rows(chunk_size: int | None, dim: int) -> int:
    if chunk_size is None:
        return max(_CHUNK_MIN_ROWS, min(_CHUNK_MAX_ROWS, _CHUNK_VALUES // dim))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"chunk_size must be a positive int (rows per chunk) or None for automatic, got {chunk_size!r}"
        )
    return chunk_size


def _classifier(weight, bias, num_classes: int, dim: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weight (C, D) and bias (C,) as float64 on `device`, or (None, None)."""
    if weight is None:
        if bias is not None:
            raise ValueError("bias was given without weight; pass the classifier weight (C, D) too")
        return None, None
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (num_classes, dim):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a tensor of shape (num_classes, D) = ({num_classes}, {dim}), got {shape}")
    weight = weight.detach().to(device=device, dtype=_F64)
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight contains NaN or Inf; the classifier diverged")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (num_classes,):
            shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"bias must be a tensor of shape (num_classes,) = ({num_classes},), got {shape}")
        bias = bias.detach().to(device=device, dtype=_F64)
        if not bool(torch.isfinite(bias).all()):
            raise ValueError("bias contains NaN or Inf; the classifier diverged")
    return weight, bias


def _bad_rows_message(n_bad: int, n: int, name: str = "features") -> str:
    return (
        f"{name} contain NaN or Inf in {n_bad} of {n} rows; "
        "check the training run for divergence (loss NaN) before analysing"
    )


def _count_bad_rows(features: torch.Tensor, rows: int) -> int:
    """Rows with a NaN/Inf, counted chunk by chunk (only on the error path)."""
    bad = torch.zeros((), dtype=torch.int64, device=features.device)
    for start in range(0, features.shape[0], rows):
        bad += (~torch.isfinite(features[start : start + rows]).all(dim=1)).sum()
    return int(bad)


def _require_two_classes(num_present: int, present_ids: torch.Tensor) -> None:
    if num_present < 2:
        raise ValueError(
            f"NC metrics need at least 2 classes with samples, got {num_present} "
            f"(class ids present: {present_ids.tolist()}); NC is undefined for a single class"
        )


# --------------------------------------------------------------------------------------------
# Shared linear algebra
# --------------------------------------------------------------------------------------------
def _inverse_of_kept(
    singular_values: torch.Tensor, max_rank: int, size: int, noise_scale: torch.Tensor
) -> torch.Tensor:
    """1/s on the kept spectrum, 0 elsewhere (singular values descending, from svd).

    Kept: the top `max_rank` singular values that exceed `_RANK_RTOL * size * max(s_max, noise_scale)`.
    """
    top = torch.maximum(singular_values[0], noise_scale.to(singular_values))
    keep = singular_values > top * (_RANK_RTOL * size)
    keep[max_rank:] = False
    safe = torch.where(keep, singular_values, torch.ones_like(singular_values))
    return torch.where(keep, safe.reciprocal(), torch.zeros_like(singular_values))


def _basis_from_class_factor(means_centred: torch.Tensor, noise_scale: torch.Tensor) -> torch.Tensor:
    """Q = V S^-1 via M^T = Q_r R (R: C x C when C <= D) and the SVD R^T = U S W^T, V = Q_r W."""
    c, d = means_centred.shape
    q, r = torch.linalg.qr(means_centred.T)
    _, singular_values, wh = torch.linalg.svd(r.T, full_matrices=False)
    scale = _inverse_of_kept(singular_values, min(c - 1, d), max(c, d), noise_scale)
    return q @ (wh.T * scale)


def _basis_from_feature_factor(means_centred: torch.Tensor, noise_scale: torch.Tensor) -> torch.Tensor:
    """Q = V S^-1 via M = Q_r R (R: D x D when C > D) and the SVD R = U S V^T."""
    c, d = means_centred.shape
    r = torch.linalg.qr(means_centred, mode="r").R
    _, singular_values, vh = torch.linalg.svd(r, full_matrices=False)
    scale = _inverse_of_kept(singular_values, min(c - 1, d), max(c, d), noise_scale)
    return vh.T * scale


_WHITENING_BASES = {"class": _basis_from_class_factor, "feature": _basis_from_feature_factor}


def _whitening_basis(means_centred: torch.Tensor, global_mean: torch.Tensor, path: str) -> torch.Tensor:
    """(D, k) matrix Q with Tr(Sigma_W Sigma_B^+) / C = Tr(Q^T Sigma_W Q); unkept columns are zero."""
    c, d = means_centred.shape
    if path == "auto":
        path = "class" if c <= d else "feature"
    # ||[mu_c]||_F^2 = ||M||_F^2 + C ||mu_G||^2: the size of the uncentred means sets M's rounding level.
    noise_scale = (means_centred.square().sum() + c * global_mean.square().sum()).sqrt()
    return _WHITENING_BASES[path](means_centred, noise_scale)


def _relative_std(values: torch.Tensor) -> torch.Tensor:
    return values.std() / values.mean()


# Pairs with ||M_c - M_c'||^2 below this fraction of ||M_c||^2 + ||M_c'||^2 are recomputed directly.
_CLOSE_PAIR = 1e-3


def _pair_sq_distances(
    means_centred: torch.Tensor, gram: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> torch.Tensor:
    """||M_i - M_j||^2 for the pairs (i, j).

    The Gram form ||M_i||^2 + ||M_j||^2 - 2 <M_i, M_j> costs O(C^2) but carries an absolute error of
    ~ D eps (||M_i||^2 + ||M_j||^2), which swamps the distance of two close class means (fine
    classes within one coarse class); those pairs, found by one comparison, are recomputed as the
    squared norm of the difference, in chunks of pairs (memory bounded, one host sync).
    """
    sq_norms = gram.diagonal()
    size = sq_norms[i] + sq_norms[j]
    sq_dist = (size - 2.0 * gram[i, j]).clamp_min(0.0)
    close = (sq_dist <= _CLOSE_PAIR * size).nonzero().squeeze(1)
    step = max(1, _CHUNK_VALUES // (4 * means_centred.shape[1]))
    for start in range(0, close.shape[0], step):
        k = close[start : start + step]
        sq_dist[k] = (means_centred[i[k]] - means_centred[j[k]]).square().sum(dim=1)
    return sq_dist


def _geometry_metrics(means_centred: torch.Tensor, class_var: torch.Tensor, weight: torch.Tensor | None) -> dict:
    """NC1-CDNV, NC2 and NC3 from the centred means (C, D), s_c^2 (C,) and weight rows (C, D)."""
    c = means_centred.shape[0]
    i, j = torch.triu_indices(c, c, offset=1, device=means_centred.device)  # pairs c < c'
    gram = means_centred @ means_centred.T
    sq_norms = gram.diagonal()
    norms = sq_norms.sqrt()
    inv_norms = 1.0 / norms.clamp_min(torch.finfo(_F64).tiny)
    cosines = (gram * inv_norms[:, None] * inv_norms[None, :])[i, j]
    sq_dist = _pair_sq_distances(means_centred, gram, i, j)
    simplex = torch.eye(c, dtype=_F64, device=gram.device) - 1.0 / c
    out = {
        "nc1_cdnv": ((class_var[i] + class_var[j]) / (2.0 * sq_dist)).mean(),
        "nc2_equinorm": _relative_std(norms),
        # One pair (C = 2) has no spread: its cosine is -1 by construction.
        "nc2_equiangle": cosines.std() if cosines.numel() > 1 else torch.zeros((), dtype=_F64, device=gram.device),
        "nc2_maxangle": (cosines + 1.0 / (c - 1)).abs().mean(),
        "nc2_etf_error": torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - simplex / math.sqrt(c - 1)),
    }
    if weight is not None:
        out["nc2_equinorm_w"] = _relative_std(torch.linalg.vector_norm(weight, dim=1))
        diff = weight / torch.linalg.matrix_norm(weight) - means_centred / torch.linalg.matrix_norm(means_centred)
        out["nc3"] = diff.square().sum()
    return out


def _nc1_or_undefined(nc1: torch.Tensor, basis: torch.Tensor, within_trace: torch.Tensor) -> torch.Tensor:
    """With all class means equal (Sigma_B = 0) NC1 is inf (spread, no separation) or NaN (0/0)."""
    separated = basis.abs().amax() > 0
    undefined = torch.where(within_trace > 0, torch.full_like(nc1, math.inf), torch.full_like(nc1, math.nan))
    return torch.where(separated, nc1, undefined)


def _to_floats(values: dict, num_present: int) -> dict:
    """One device-to-host transfer for all metrics."""
    keys = sorted(values)
    numbers = torch.stack([values[k].to(_F64) for k in keys]).tolist()
    out = dict(zip(keys, numbers))
    out["num_classes_present"] = num_present
    return out


# --------------------------------------------------------------------------------------------
# Batch API
# --------------------------------------------------------------------------------------------
def nc_metrics(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    num_classes: int | None = None,
    *,
    path: str = "auto",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Neural Collapse metrics of `features` (N, D) grouped by `labels` (N,) (Papyan, Han & Donoho 2020,
    PNAS; nc1_cdnv: Galanti et al. 2022, ICLR). Only the C classes with samples take part; with
    mu_c the class means, mu_G = (1/C) sum_c mu_c, M = [mu_c - mu_G]_c (C, D), e_i = h_i - mu_{y_i},
    Sigma_W = (1/N) sum_i e_i e_i^T, Sigma_B = (1/C) M^T M, G = M M^T, W = weight, b = bias:

        nc1            = Tr(Sigma_W Sigma_B^+) / C     (pseudo-inverse on the nonzero spectrum)
        nc1_cdnv       = mean_{c<c'} (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^2),  s_c^2 = mean_{y_i=c} ||e_i||^2
        nc2_equinorm   = std_c ||M_c|| / mean_c ||M_c||  (sample std, n-1); nc2_equinorm_w: rows of W
        nc2_equiangle  = std_{c<c'} cos(M_c, M_c')  (sample std; 0 for C = 2)
        nc2_maxangle   = mean_{c<c'} |cos(M_c, M_c') + 1/(C-1)|
        nc2_etf_error  = || G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F
        nc3            = || W/||W||_F - M/||M||_F ||_F^2
        nc4            = fraction of i with argmax_c (W h_i + b)_c != argmin_c ||h_i - mu_c||

    The module docstring gives the papers per metric and how NC1 is computed (SVD of M, no D x D).

    Args:
        features: (N, D) float tensor (float32, bfloat16, float64, ...) on any device.
        labels: (N,) integer class ids in [0, C).
        weight: optional (C, D) classifier rows; enables `nc2_equinorm_w`, `nc3`, `nc4`.
        bias: optional (C,) classifier bias, used by `nc4`.
        num_classes: C; default labels.max() + 1. Classes without samples are left out.
        path: "class" (C x C factor of M), "feature" (D x D factor) or "auto" (the smaller) for NC1's basis.
        chunk_size: rows processed at once in float64; None picks 1024..65536 rows, 128 MiB per copy.

    Returns:
        {"nc1", "nc1_cdnv", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc2_etf_error",
        ["nc2_equinorm_w", "nc3", "nc4" with weight], "num_classes_present"}: floats (the last an int).

    Raises:
        ValueError: bad shapes or dtypes, labels outside [0, C), NaN/Inf features (with the number
        of bad rows), fewer than 2 classes with samples.
    """
    check_feature_shape(features)
    _check_num_classes(num_classes)
    _check_path(path)
    n, dim = features.shape
    device = features.device
    labels = check_labels(labels, n, num_classes=num_classes).to(device)
    c_all = num_classes if num_classes is not None else int(labels.max()) + 1
    weight, bias = _classifier(weight, bias, c_all, dim, device)
    rows = _chunk_rows(chunk_size, dim)

    # Pass 1: per-class counts and float64 sums.
    counts = torch.zeros(c_all, dtype=_F64, device=device)
    sums = torch.zeros(c_all, dim, dtype=_F64, device=device)
    for start in range(0, n, rows):
        y = labels[start : start + rows]
        sums.index_add_(0, y, features[start : start + rows].to(_F64))
        counts.index_add_(0, y, torch.ones(y.shape[0], dtype=_F64, device=device))
    # A NaN/Inf anywhere poisons its class sum (float64 cannot overflow on float32 input), so the
    # clean case costs one reduction over (C, D); the rows are counted only when something is bad.
    if not bool(torch.isfinite(sums).all()):
        n_bad = _count_bad_rows(features, rows)
        if n_bad:
            raise ValueError(_bad_rows_message(n_bad, n))
        raise ValueError("features are too large to sum in float64 (overflow); rescale them")

    present = counts.nonzero().squeeze(1)
    c = present.numel()
    _require_two_classes(c, present)
    counts = counts[present]
    means = sums[present] / counts[:, None]
    del sums
    global_mean = means.mean(dim=0)
    centred_means = means - global_mean
    compact = torch.full((c_all,), -1, dtype=torch.int64, device=device)
    compact[present] = torch.arange(c, device=device)
    basis = _whitening_basis(centred_means, global_mean, path)
    if weight is not None:
        weight = weight[present]
        bias = bias[present] if bias is not None else None
        right = torch.cat([centred_means, weight]).T.contiguous()
        offset = torch.cat([-0.5 * centred_means.square().sum(1), weight @ global_mean])
        if bias is not None:
            offset[c:] += bias

    # Pass 2: deviations from the final means.
    within_sq = torch.zeros(c, dtype=_F64, device=device)
    whitened_sq = torch.zeros((), dtype=_F64, device=device)
    mismatches = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, n, rows):
        y = compact[labels[start : start + rows]]
        h = features[start : start + rows].to(_F64, copy=True)  # worked on in place below
        h -= global_mean
        if weight is not None:
            # argmin_c ||h - mu_c|| = argmax_c (h~.M_c - ||M_c||^2 / 2) with h~ = h - mu_G; logits = h~ W^T + (W mu_G + b).
            scores = torch.addmm(offset, h, right)
            mismatches += (scores[:, :c].argmax(dim=1) != scores[:, c:].argmax(dim=1)).sum()
        h -= centred_means[y]
        within_sq.index_add_(0, y, torch.linalg.vector_norm(h, dim=1).square_())
        whitened_sq += (h @ basis).square().sum()

    values = _geometry_metrics(centred_means, within_sq / counts, weight)
    values["nc1"] = _nc1_or_undefined(whitened_sq / n, basis, within_sq.sum() / n)
    if weight is not None:
        values["nc4"] = mismatches.to(_F64) / n
    return _to_floats(values, c)


# --------------------------------------------------------------------------------------------
# Streaming API
# --------------------------------------------------------------------------------------------
def _empty_batch(features, labels) -> bool:
    """A (0, D) batch with (0,) labels: nothing to fold in (a rank or a filter left no rows)."""
    return (
        isinstance(features, torch.Tensor)
        and features.ndim == 2
        and features.shape[0] == 0
        and isinstance(labels, torch.Tensor)
        and tuple(labels.shape) == (0,)
    )


class NCAccumulator:
    """Streaming `nc_metrics`: feed batches, get the same numbers without storing the features.

    Pass 1, `update(features, labels)` per batch, keeps O(C D + D^2) float64 state: per-class
    counts n_c, running means m_c, within-class sums of squares SS_c = sum ||h - m_c||^2, and the
    total within-class scatter S_W = sum_i (h_i - m_{y_i})(h_i - m_{y_i})^T (D x D, summed over
    classes). Each chunk is centred at its own per-class means (stable) and merged with Chan, Golub
    & LeVeque's pairwise update (1979): with delta_c = m_c^chunk - m_c and w_c = n_c n_c^chunk /
    (n_c + n_c^chunk),

        m_c  += delta_c n_c^chunk / (n_c + n_c^chunk)
        SS_c += SS_c^chunk + w_c ||delta_c||^2
        S_W  += S_W^chunk + sum_c w_c delta_c delta_c^T

    which is exactly the two-pass scatter, without a catastrophic E[hh^T] - mu mu^T. `compute()`
    then gives nc1 = Tr(Q^T (S_W / N) Q) (Q as in the module docstring), nc1_cdnv, nc2_* and nc3,
    equal to `nc_metrics` on the concatenated batches to float64 rounding (~1e-12 relative).

    NC4 compares each sample's prediction with its nearest *final* class mean, which no one-pass
    statistic can give. So NC4 needs a second pass over the same samples: call
    `second_pass(features, labels)` per batch (any order or batching) after all `update` calls;
    the first call freezes the pass-1 statistics. `compute()` includes `nc4` once the second
    pass has seen exactly the pass-1 sample counts per class, omits it if no second pass was
    made, and raises if the second pass saw different counts. Without a classifier weight there
    is no NC4 and no second pass.

    The D x D scatter makes this O(D^2) memory (32 MiB at D = 2048) and O(N D^2 + chunks C D^2)
    time; `nc_metrics` on stored features needs neither. Labels out of range and NaN/Inf rows
    are counted on the device (no host sync per batch) and reported by `compute()`.

    Args:
        num_classes: C (classes with no samples are left out, as in `nc_metrics`).
        dim: D, default from the first batch.
        device: where the state lives, default the first batch's device.
        weight, bias: optional classifier (C, D) and (C,), as in `nc_metrics`.
        chunk_size: rows processed at once within a batch (None: automatic).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int | None = None,
        device: torch.device | str | None = None,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"NCAccumulator needs num_classes, an int >= 2, got {num_classes!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive int or None, got {dim!r}")
        self.num_classes = num_classes
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self._weight_in, self._bias_in = weight, bias
        if weight is None and bias is not None:
            raise ValueError("bias was given without weight; pass the classifier weight (C, D) too")
        self._chunk_size = chunk_size
        self.reset()

    # ---- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all samples (keeps num_classes, dim, device and classifier)."""
        self.counts = self.means = self.within_sq = self.scatter = None
        self.weight = self.bias = None
        self._bad_rows = self._bad_labels = self._total_rows = None
        self._frozen = None  # set by the first second_pass: the final class means and NC4 operators
        self.second_counts = self.mismatches = None
        if self.dim is not None and self.device is not None:
            self._allocate(self.dim, self.device)

    def _allocate(self, dim: int, device: torch.device) -> None:
        c = self.num_classes
        self.dim, self.device = dim, device
        self.counts = torch.zeros(c, dtype=_F64, device=device)
        self.means = torch.zeros(c, dim, dtype=_F64, device=device)
        self.within_sq = torch.zeros(c, dtype=_F64, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=_F64, device=device)
        self._bad_rows = torch.zeros((), dtype=torch.int64, device=device)
        self._bad_labels = torch.zeros((), dtype=torch.int64, device=device)
        self._total_rows = 0
        self.second_counts = torch.zeros(c, dtype=_F64, device=device)
        self.mismatches = torch.zeros((), dtype=torch.int64, device=device)
        self.weight, self.bias = _classifier(self._weight_in, self._bias_in, c, dim, device)

    def _batch(self, features, labels, name: str):
        """Checked (features, labels, rows) on the state's device; range errors counted, not synced."""
        check_feature_shape(features, name=f"{name}: features")
        if self.counts is None:
            self._allocate(self.dim or features.shape[1], self.device or features.device)
        if features.shape[1] != self.dim:
            raise ValueError(f"{name}: features have D={features.shape[1]}, but this accumulator has dim={self.dim}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != features.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(
                f"{name}: labels must have shape ({features.shape[0]},) to match the features, got {shape}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{name}: labels must be integer class ids, got dtype {labels.dtype}")
        labels = labels.to(self.device, torch.int64)
        out_of_range = (labels < 0) | (labels >= self.num_classes)
        self._bad_labels += out_of_range.sum()
        labels = labels.clamp(0, self.num_classes - 1)  # keeps index_add_ in bounds; compute() raises
        return features, labels, _chunk_rows(self._chunk_size, self.dim)

    def _chunk(self, features, labels, start, rows):
        h = features[start : start + rows].to(self.device, _F64, copy=True)  # worked on in place
        self._bad_rows += (~torch.isfinite(h).all(dim=1)).sum()
        return h, labels[start : start + rows]

    # ---- pass 1 --------------------------------------------------------------------------
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Pass 1: fold a batch (N_b, D) with labels (N_b,) into the running statistics."""
        if self._frozen is not None:
            raise ValueError(
                "update() after second_pass(): the second pass has frozen the class means; call reset() to start over"
            )
        if _empty_batch(features, labels):
            return
        features, labels, rows = self._batch(features, labels, "update")
        c, device = self.num_classes, self.device
        for start in range(0, features.shape[0], rows):
            h, y = self._chunk(features, labels, start, rows)
            n_b = torch.zeros(c, dtype=_F64, device=device).index_add_(
                0, y, torch.ones(y.shape[0], dtype=_F64, device=device)
            )
            m_b = torch.zeros(c, self.dim, dtype=_F64, device=device).index_add_(0, y, h) / n_b.clamp_min(1.0)[:, None]
            h -= m_b[y]
            self._merge(
                n_b, m_b, torch.zeros(c, dtype=_F64, device=device).index_add_(0, y, torch.linalg.vecdot(h, h)), h.T @ h
            )
        self._total_rows += features.shape[0]

    def _merge(self, n_b, m_b, within_sq_b, scatter_b) -> None:
        """Chan et al. merge of another set of per-class (counts, means, SS) and a total scatter."""
        total = self.counts + n_b
        safe = total.clamp_min(1.0)
        delta = m_b - self.means
        pair_weight = self.counts * n_b / safe
        self.means += delta * (n_b / safe)[:, None]
        self.within_sq += within_sq_b + pair_weight * torch.linalg.vecdot(delta, delta)
        self.scatter += scatter_b
        self.scatter.addmm_((delta * pair_weight[:, None]).T, delta)
        self.counts = total

    def merge(self, other: NCAccumulator) -> NCAccumulator:
        """Fold another accumulator's pass-1 statistics into this one (e.g. one per worker)."""
        if not isinstance(other, NCAccumulator) or other.num_classes != self.num_classes:
            raise ValueError("merge() needs an NCAccumulator with the same num_classes")
        if self._frozen is not None or other._frozen is not None:
            raise ValueError("merge() combines pass-1 statistics only; merge before any second_pass()")
        if other.counts is None:
            return self
        if self.counts is None:
            self._allocate(other.dim, self.device or other.device)
        if other.dim != self.dim:
            raise ValueError(f"merge(): dims differ ({self.dim} vs {other.dim})")
        d = self.device
        self._merge(other.counts.to(d), other.means.to(d), other.within_sq.to(d), other.scatter.to(d))
        self._bad_rows += other._bad_rows.to(d)
        self._bad_labels += other._bad_labels.to(d)
        self._total_rows += other._total_rows
        return self

    # ---- pass 2 (NC4 only) ---------------------------------------------------------------
    def _freeze(self) -> dict:
        self._raise_bad_input()
        present = self.counts.nonzero().squeeze(1)
        _require_two_classes(present.numel(), present)
        means = self.means[present]
        global_mean = means.mean(dim=0)
        centred = means - global_mean
        weight = self.weight[present]
        offset = torch.cat([-0.5 * centred.square().sum(1), weight @ global_mean])
        if self.bias is not None:
            offset[present.numel() :] += self.bias[present]
        return {
            "global_mean": global_mean,
            "right": torch.cat([centred, weight]).T.contiguous(),
            "offset": offset,
            "c": present.numel(),
        }

    def second_pass(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Pass 2, for NC4: classify a batch by the classifier and by the nearest final class mean."""
        if self._weight_in is None:
            raise ValueError("second_pass() is only for nc4, which needs the classifier: NCAccumulator(..., weight=W)")
        if self.counts is None:
            raise ValueError("second_pass() before any update(): run the first pass over all samples first")
        if _empty_batch(features, labels):
            return
        if self._frozen is None:
            self._frozen = self._freeze()
        frozen = self._frozen
        features, labels, rows = self._batch(features, labels, "second_pass")
        c = frozen["c"]
        for start in range(0, features.shape[0], rows):
            h, y = self._chunk(features, labels, start, rows)
            h -= frozen["global_mean"]
            scores = torch.addmm(frozen["offset"], h, frozen["right"])
            wrong = scores[:, :c].argmax(dim=1) != scores[:, c:].argmax(dim=1)
            self.mismatches += wrong.sum()
            self.second_counts.index_add_(0, y, torch.ones(y.shape[0], dtype=_F64, device=self.device))

    # ---- results -------------------------------------------------------------------------
    def _raise_bad_input(self) -> None:
        bad_rows, bad_labels = (int(v) for v in torch.stack([self._bad_rows, self._bad_labels]).tolist())
        if bad_rows:
            raise ValueError(_bad_rows_message(bad_rows, self._total_rows))
        if bad_labels:
            raise ValueError(
                f"labels contained {bad_labels} class ids outside [0, {self.num_classes}) for num_classes={self.num_classes}"
            )

    def compute(self, path: str = "auto") -> dict[str, float]:
        """The metrics of all samples seen so far (see the class docstring for NC4)."""
        _check_path(path)
        if self.counts is None:
            raise ValueError("compute() before any update(): the accumulator has no samples")
        self._raise_bad_input()
        present = self.counts.nonzero().squeeze(1)
        c = present.numel()
        _require_two_classes(c, present)
        counts = self.counts[present]
        n = counts.sum()
        means = self.means[present]
        global_mean = means.mean(dim=0)
        centred = means - global_mean
        weight = self.weight[present] if self.weight is not None else None
        basis = _whitening_basis(centred, global_mean, path)
        within = self.scatter / n
        nc1 = (basis * (within @ basis)).sum().clamp_min(0.0)
        within_sq = self.within_sq[present]
        values = _geometry_metrics(centred, within_sq / counts, weight)
        values["nc1"] = _nc1_or_undefined(nc1, basis, within_sq.sum() / n)
        if self._frozen is not None:
            if not torch.equal(self.second_counts, self.counts):
                seen, expected = int(self.second_counts.sum()), int(n)
                raise ValueError(
                    f"second_pass() saw {seen} samples but update() saw {expected} (or per-class counts differ); "
                    "feed second_pass() exactly the samples given to update()"
                )
            values["nc4"] = self.mismatches.to(_F64) / n
        return _to_floats(values, c)
