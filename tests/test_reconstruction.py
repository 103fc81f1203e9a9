"""The fine labels reconstructed end to end (`reconstructed_fine_accuracy`, issue #39): superclass
from the head, fine class from k-means inside it, scored 10-way. Checked against an independent
computation (scikit-learn's k-means per predicted superclass and a brute-force matching), on cases
with a known answer, and through a training run's keys and baselines."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from ncfine.analysis.recovery import fine_recovery, reconstructed_fine_accuracy
from ncfine.analysis.training_keys import predict_coarse, recovery_keys

# 5 superclasses of 2 fine classes each: fine f belongs to superclass f % 5 (CIFAR-10's mod-5 pairs).
NUM_FINE, NUM_COARSE = 10, 5


def _blobs(n_per_fine=40, dim=16, spread=0.05, seed=0):
    """Tight, far-apart blobs, one per fine class: k-means has one answer inside any group."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_FINE, dim, generator=g, dtype=torch.float64) * 10
    fine = torch.arange(NUM_FINE).repeat_interleave(n_per_fine)
    h = centres[fine] + spread * torch.randn(len(fine), dim, generator=g, dtype=torch.float64)
    return h, fine % NUM_COARSE, fine, centres


def _reference(h, predicted, coarse, fine):
    """Independent: scikit-learn k-means inside each predicted superclass, then the best of all
    one-to-one maps of its clusters to that superclass's fine classes, counted sample by sample."""
    h, predicted, coarse, fine = (t.numpy() for t in (h, predicted, coarse, fine))
    children = {c: sorted(set(fine[coarse == c].tolist())) for c in set(coarse.tolist())}
    correct = 0
    for group in sorted(set(predicted.tolist())):
        members = predicted == group
        targets = children.get(group, [])
        if not targets:
            continue
        k = min(len(targets), int(members.sum()))
        ids = (
            np.zeros(int(members.sum()), int)
            if k == 1
            else KMeans(k, n_init=10, random_state=0).fit(h[members]).labels_
        )
        truth = fine[members]
        best = max(
            sum(int(np.sum((ids == j) & (truth == t))) for j, t in enumerate(perm))
            for perm in itertools.permutations(targets, k)
        )
        correct += best
    return correct / len(fine)


def test_right_superclasses_give_the_per_superclass_recovery():
    h, coarse, fine, _ = _blobs()
    result = reconstructed_fine_accuracy(h, coarse, coarse, fine)
    assert result["acc"] == 1.0 and result["coarse_acc"] == 1.0 and result["num_clusters"] == NUM_FINE
    assert result["acc"] == fine_recovery(h, coarse, fine)["acc"]


def test_misclassified_samples_are_wrong_and_the_rest_right():
    # 30 samples sent to the wrong superclass, with features at a fine class of the superclass they
    # are sent to (what a network that misclassifies them sees): they join that blob and are wrong.
    h, coarse, fine, centres = _blobs()
    predicted = coarse.clone()
    g = torch.Generator().manual_seed(1)
    wrong = torch.randperm(len(fine), generator=g)[:30]
    predicted[wrong] = (coarse[wrong] + 1) % NUM_COARSE
    h[wrong] = centres[predicted[wrong]]  # fine class `predicted` (< 5) belongs to superclass `predicted`
    result = reconstructed_fine_accuracy(h, predicted, coarse, fine)
    n = len(fine)
    assert result["coarse_acc"] == pytest.approx((n - 30) / n)
    assert result["acc"] == pytest.approx((n - 30) / n)
    assert result["acc_given_coarse"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_an_independent_computation(seed):
    # Blobs wider than the tight case, a head that errs on a fifth of the samples at random, and the
    # misclassified samples left where they are: k-means inside a group sees two blobs plus strays.
    h, coarse, fine, _ = _blobs(n_per_fine=30, spread=1.0, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    predicted = coarse.clone()
    wrong = torch.rand(len(fine), generator=g) < 0.2
    predicted[wrong] = torch.randint(0, NUM_COARSE, (int(wrong.sum()),), generator=g)
    ours = reconstructed_fine_accuracy(h, predicted, coarse, fine, n_init=10)["acc"]
    assert ours == pytest.approx(_reference(h, predicted, coarse, fine), abs=1e-12)
    assert ours <= float((predicted == coarse).double().mean())


def test_an_empty_or_unknown_predicted_superclass_costs_its_samples():
    h, coarse, fine, _ = _blobs(n_per_fine=10)
    predicted = coarse.clone()
    predicted[coarse == 4] = 3  # superclass 4 never predicted: its samples land in 3, all wrong
    result = reconstructed_fine_accuracy(h, predicted, coarse, fine)
    assert result["acc"] <= 0.8 + 1e-12 and result["coarse_acc"] == pytest.approx(0.8)
    # A predicted id that no sample is labelled with (a head with more outputs than the data's classes).
    predicted = coarse.clone()
    predicted[:5] = 7
    assert reconstructed_fine_accuracy(h, predicted, coarse, fine)["acc"] == pytest.approx(1 - 5 / len(fine))


def test_bad_input_is_one_line():
    h, coarse, fine, _ = _blobs(n_per_fine=5)
    with pytest.raises(ValueError, match="predicted must have shape"):
        reconstructed_fine_accuracy(h, coarse[:-1], coarse, fine)
    with pytest.raises(ValueError, match="negative class id -1"):
        reconstructed_fine_accuracy(h, coarse - 1, coarse, fine)
    with pytest.raises(ValueError, match="several"):
        reconstructed_fine_accuracy(h, coarse, torch.randint(0, 5, coarse.shape), fine)
    with pytest.raises(ValueError, match="unknown normalize 'zca'"):
        reconstructed_fine_accuracy(h, coarse, coarse, fine, normalize="zca")


def test_recovery_keys_log_it_only_with_predictions_and_the_head_predicts_by_argmax():
    h, coarse, fine, _ = _blobs(n_per_fine=10)
    assert "fine/test/reconstructed_acc" not in recovery_keys("test", h, coarse, fine)
    keys = recovery_keys("test", h, coarse, fine, predicted=coarse)
    assert keys["fine/test/reconstructed_acc"] == 1.0
    assert "fine/test/reconstructed_acc" not in recovery_keys(
        "test", h, coarse, fine, predicted=coarse, reconstruct=False
    )
    weight = torch.randn(NUM_COARSE, h.shape[1], dtype=torch.float64)
    bias = torch.randn(NUM_COARSE, dtype=torch.float64)
    expected = (h @ weight.T + bias).argmax(1)
    assert torch.equal(predict_coarse(h, weight, bias), expected)
    # bf16 features (the analysis pass under autocast) are scored in float32, not in bf16.
    low = h.float().to(torch.bfloat16)
    assert predict_coarse(low, weight.float(), bias.float()).dtype == torch.long
    assert torch.equal(predict_coarse(low, weight, bias), (low.double() @ weight.T + bias).argmax(1))
