"""The analysis of one set of features under the keys training logs (pure torch).

The NC and fine-recovery callbacks, the layer-wise callback and `ncfine-analyze` all call these,
so a metric means the same thing wherever it is logged:

    nc/<split>/<m>          nc_metrics against the coarse labels (and the classifier W, b when
                            given: nc2_equinorm_w, nc3, nc4)                Papyan, Han & Donoho 2020
    nc/<split>/fine/<m>     nc_metrics against the fine labels (no classifier)
    fine/<split>/kmeans_<mode>_{acc,nmi,ari}
                            k-means per superclass / globally, Hungarian accuracy, NMI, ARI
                                                                            Yang, Steinhardt & Hu 2023
    fine/<split>/reconstructed_acc
                            the fine labels reconstructed end to end: superclass predicted by the
                            head, fine class by k-means inside it (needs the predictions)
    fine/probe_acc          linear probe of the fine labels, fit on train, scored on test
    fine/knn_acc            cosine k-NN of test against train

`regroup_key` renames them for another owner: a layer (`layer/<name>/...`, ncfine.analysis.layerwise)
or a baseline (`baseline/<input|init>/...`, ncfine.analysis.baselines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ncfine.analysis.collapse import nc_metrics
from ncfine.analysis.probes import knn_probe, linear_probe
from ncfine.analysis.recovery import fine_recovery, reconstructed_fine_accuracy
from ncfine.analysis.settings import RECOVERY_MODES, RecoverySettings, resolve_settings


def collapse_keys(
    split: str,
    h: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor | None = None,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    num_coarse: int | None = None,
    num_fine: int | None = None,
) -> dict[str, float]:
    """`nc/<split>/...` against the coarse labels (with the classifier when given) and, when `fine`
    labels are given, `nc/<split>/fine/...` against them."""
    result = nc_metrics(h, coarse, weight, bias, num_classes=num_coarse)
    metrics = {f"nc/{split}/{k}": float(v) for k, v in result.items()}
    if fine is not None:
        result = nc_metrics(h, fine, num_classes=num_fine)
        metrics.update({f"nc/{split}/fine/{k}": float(v) for k, v in result.items()})
    return metrics


def recovery_keys(
    split: str,
    h: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    *,
    modes: Sequence[str] = RECOVERY_MODES,
    normalize: str = "none",
    kmeans_backend: str = "auto",
    kmeans_n_init: int = 10,
    kmeans_max_iter: int = 100,
    seed: int = 0,
    reconstruct: bool = True,
    predicted: torch.Tensor | None = None,
) -> dict[str, float]:
    """`fine/<split>/kmeans_<mode>_{acc,nmi,ari}` for each of `modes` (see `fine_recovery`) and,
    with `reconstruct` and the predicted superclass of every sample (`predicted`),
    `fine/<split>/reconstructed_acc` (see `reconstructed_fine_accuracy`)."""
    metrics: dict[str, float] = {}
    for mode in modes:
        result = fine_recovery(
            h,
            coarse,
            fine,
            mode=mode,
            normalize=normalize,
            backend=kmeans_backend,
            n_init=kmeans_n_init,
            max_iter=kmeans_max_iter,
            seed=seed,
        )
        for name in ("acc", "nmi", "ari"):
            metrics[f"fine/{split}/kmeans_{mode}_{name}"] = float(result[name])
    if reconstruct and predicted is not None:
        metrics.update(
            reconstruction_keys(
                split,
                h,
                predicted,
                coarse,
                fine,
                normalize=normalize,
                kmeans_backend=kmeans_backend,
                kmeans_n_init=kmeans_n_init,
                kmeans_max_iter=kmeans_max_iter,
                seed=seed,
            )
        )
    return metrics


def reconstruction_keys(
    split: str,
    h: torch.Tensor,
    predicted: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    *,
    normalize: str = "none",
    kmeans_backend: str = "auto",
    kmeans_n_init: int = 10,
    kmeans_max_iter: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """`fine/<split>/reconstructed_acc`: k-means of `h` inside each predicted superclass, scored
    10-way against the fine labels (`reconstructed_fine_accuracy`)."""
    result = reconstructed_fine_accuracy(
        h,
        predicted,
        coarse,
        fine,
        normalize=normalize,
        backend=kmeans_backend,
        n_init=kmeans_n_init,
        max_iter=kmeans_max_iter,
        seed=seed,
    )
    return {f"fine/{split}/reconstructed_acc": float(result["acc"])}


def predict_coarse(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The superclass a linear head predicts for each row of `h`: argmax_c (W h + b)_c, in float32
    or wider (the features may be bf16)."""
    dtype = torch.promote_types(h.dtype, torch.float32)
    logits = h.to(dtype) @ weight.to(device=h.device, dtype=dtype).T
    if bias is not None:
        logits = logits + bias.to(device=h.device, dtype=dtype)
    return logits.argmax(dim=1)


def probe_keys(
    train_h: torch.Tensor,
    train_fine: torch.Tensor,
    test_h: torch.Tensor,
    test_fine: torch.Tensor,
    *,
    probe: bool = True,
    probe_weight_decay: float = 1e-4,
    probe_max_iter: int = 100,
    knn: bool = True,
    knn_k: int = 20,
    num_fine: int | None = None,
) -> dict[str, float]:
    """`fine/probe_acc` (linear probe fit on train, scored on test) and `fine/knn_acc` (cosine k-NN
    of test against train), each when asked for."""
    metrics: dict[str, float] = {}
    if probe:
        result = linear_probe(
            train_h,
            train_fine,
            test_h,
            test_fine,
            weight_decay=probe_weight_decay,
            max_iter=probe_max_iter,
            num_classes=num_fine,
        )
        metrics["fine/probe_acc"] = float(result["acc"])
    if knn:
        metrics["fine/knn_acc"] = float(knn_probe(train_h, train_fine, test_h, test_fine, k=knn_k)["acc"])
    return metrics


# The groups of the keys above, which `regroup_key` renames.
KEY_GROUPS = ("nc", "fine")


def regroup_key(prefix: str, key: str) -> str:
    """A training key under another prefix: its group (`nc`, `fine`) replaced by `prefix`.

    `regroup_key("layer/layer3", "nc/train/nc1") == "layer/layer3/train/nc1"`,
    `regroup_key("baseline/input", "fine/test/kmeans_per_coarse_acc") == "baseline/input/test/kmeans_per_coarse_acc"`,
    `regroup_key("baseline/init", "fine/probe_acc") == "baseline/init/probe_acc"`.
    """
    group, _, rest = key.partition("/")
    if group not in KEY_GROUPS or not rest:
        raise ValueError(f"{key!r} is not an nc/ or fine/ metric key")
    return f"{prefix}/{rest}"


# (h, coarse, fine) of one split
SplitFeatures = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def feature_metrics(
    splits: Mapping[str, SplitFeatures],
    *,
    num_coarse: int | None = None,
    num_fine: int | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    fine: bool = True,
    nc_splits: Sequence[str] | None = None,
    recovery_splits: Sequence[str] = ("test",),
    predicted: Mapping[str, torch.Tensor] | None = None,
    settings: RecoverySettings | None = None,
    **recovery,
) -> dict[str, float]:
    """Every training key (module docstring) for one set of features per split.

    `fine=False` (coarse and fine labels are the same classes) leaves out everything fine.
    NC runs on `nc_splits` (default: every split given), k-means on `recovery_splits` that are
    given, the reconstruction on those of them that `predicted` ({split: predicted superclass per
    sample}) covers, the probes when both `train` and `test` are given; `settings` (a
    `RecoverySettings`, or its fields as keywords `recovery`; default `RecoverySettings()`) say how.
    """
    settings = resolve_settings(settings, recovery, "feature_metrics")
    metrics: dict[str, float] = {}
    for split in nc_splits if nc_splits is not None else list(splits):
        if split in splits:
            h, coarse, fine_labels = splits[split]
            metrics.update(
                collapse_keys(
                    split,
                    h,
                    coarse,
                    fine_labels if fine else None,
                    weight=weight,
                    bias=bias,
                    num_coarse=num_coarse,
                    num_fine=num_fine,
                )
            )
    if not fine:
        return metrics
    for split in recovery_splits:
        if split in splits:
            h, coarse, fine_labels = splits[split]
            metrics.update(
                recovery_keys(
                    split,
                    h,
                    coarse,
                    fine_labels,
                    predicted=(predicted or {}).get(split),
                    **settings.kmeans_options(),
                )
            )
    if (settings.probe or settings.knn) and "train" in splits and "test" in splits:
        (train_h, _, train_fine), (test_h, _, test_fine) = splits["train"], splits["test"]
        metrics.update(
            probe_keys(train_h, train_fine, test_h, test_fine, num_fine=num_fine, **settings.probe_options())
        )
    return metrics
