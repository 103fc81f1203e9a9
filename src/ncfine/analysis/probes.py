"""How linearly (and locally) decodable the fine labels are from the features.

- `linear_probe`: multinomial logistic regression fit on train features, scored on test.
- `knn_probe`: cosine k-nearest-neighbour classification of test features against train features
  (the protocol of Wu et al. 2018 and Caron et al. 2021, DINO, when `temperature` is set).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ncfine.analysis._validation import check_count, check_features, check_labels, check_several_classes


def _check_split(train_features, train_labels, test_features, test_labels, num_classes):
    train_features = check_features(train_features, "train_features")
    test_features = check_features(test_features, "test_features")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train_features have {train_features.shape[1]} dimensions but test_features have "
            f"{test_features.shape[1]}; both must come from the same feature extractor"
        )
    if train_features.device != test_features.device:
        raise ValueError(
            f"train_features are on {train_features.device} but test_features on {test_features.device}; "
            "put both on the same device"
        )
    train_labels = check_labels(train_labels, train_features.shape[0], "train_labels", num_classes)
    test_labels = check_labels(test_labels, test_features.shape[0], "test_labels", num_classes)
    check_several_classes(train_labels, "train_labels", "a probe")
    device = train_features.device
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    if num_classes is None:
        # Only the ids that occur matter: renumber them 0..K-1 in order (accuracy and the k-NN
        # tie-break by smaller id are unchanged), so sparse ids like {3, 7, 10**9} cost K columns.
        ids, inverse = torch.unique(torch.cat([train_labels, test_labels]), return_inverse=True)
        train_labels, test_labels = inverse[: train_labels.shape[0]], inverse[train_labels.shape[0] :]
        num_classes = ids.numel()
    return train_features, train_labels, test_features, test_labels, num_classes


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    max_iter: int = 100,
    standardize: bool = True,
) -> dict[str, float]:
    """Fit softmax regression on train, report test and train accuracy.

    Minimises  mean_i CE(W x_i + b, y_i) + (weight_decay / 2) ||W||_F^2  (no penalty on b; the same
    optimum as scikit-learn's LogisticRegression with C = 1 / (weight_decay * N)) by full-batch
    L-BFGS from W = 0, b = 0 (see `_fit_softmax_regression`): a convex problem and a deterministic
    solver, so two calls give identical results. With `standardize`, features are shifted and
    scaled by the train mean and standard deviation (constant features keep scale 1).
    Runs on the features' device in float32 (float64 for float64 input).
    Returns {"acc": test accuracy, "train_acc": train accuracy}.
    """
    if not weight_decay >= 0 or max_iter < 1:  # `not >=` also rejects NaN
        raise ValueError(f"need weight_decay >= 0 and max_iter >= 1, got {weight_decay} and {max_iter}")
    x_train, y_train, x_test, y_test, num_classes = _check_split(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    dtype = torch.promote_types(x_train.dtype, torch.float32)
    x_train, x_test = x_train.detach().to(dtype), x_test.detach().to(dtype)
    if standardize:
        mean = x_train.mean(0)
        std = x_train.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    with torch.autocast(x_train.device.type, enabled=False):  # full precision even inside a caller's autocast
        theta = _fit_softmax_regression(x_train, y_train, num_classes, weight_decay, max_iter)
        weight, bias = theta[:-1], theta[-1]
        test_acc = (torch.addmm(bias, x_test, weight).argmax(1) == y_test).double().mean()
        train_acc = (torch.addmm(bias, x_train, weight).argmax(1) == y_train).double().mean()
    return {"acc": float(test_acc), "train_acc": float(train_acc)}


# Step lengths tried along each L-BFGS direction, longest first; 0 (stay put) is last so it wins only
# when every step makes the objective worse.
_STEPS = [2.0**j for j in range(1, -8, -1)] + [0.0]
_REFINE = [2.0 ** (j / 4) for j in range(2, -3, -1)]


def _fit_softmax_regression(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int,
    history: int = 10,
    check_every: int = 10,
    grad_tol: float = 1e-6,
) -> torch.Tensor:
    """L-BFGS (Nocedal 1980; history 10) for the softmax-regression objective.

    Returns theta (D + 1, C): rows 0..D-1 are W, the last row is b. Built to launch few kernels
    and never wait for the host inside an iteration, because at probe sizes (50k x 512) the GPU
    work per iteration is tens of microseconds: torch.optim.LBFGS, with its two-loop recursion and
    several host syncs per iteration, took 0.3 s on an H100 for 10k and for 50k rows alike.
    - the gradient is analytic: X^T (softmax(Z) - Y) / N + weight_decay * W;
    - the inverse-Hessian product uses the compact form (Byrd, Nocedal & Schnabel 1994, eq. 3.6):
      a handful of small matrix products and two triangular solves instead of 4 x history kernels;
    - the line search is a grid: the logits are linear in the step t, Z(t) = Z + t X d, so one
      (N, D) x (D, C) product gives the objective at every step in `_STEPS`; the best one is
      refined by the factors in `_REFINE` and taken (t = 0 when nothing improves);
    - a pair with s^T y <= 1e-10 is stored as zeros and masked out instead of branching on it.
    Convergence (max |gradient| <= grad_tol, or no step improves) is read every `check_every`
    iterations; on CUDA those blocks of iterations are replayed as one CUDA graph.
    """
    n, d = x.shape
    dev, dtype = x.device, x.dtype
    one_hot = F.one_hot(y, num_classes).to(dtype)
    decay = torch.full((d + 1, 1), float(weight_decay), dtype=dtype, device=dev)
    decay[d] = 0.0
    steps = torch.tensor(_STEPS, dtype=dtype, device=dev)
    refine = torch.tensor(_REFINE, dtype=dtype, device=dev)
    rows = max(1, (1 << 25) // (len(_STEPS) * num_classes))

    def gradient(z, theta):
        r = (torch.softmax(z, 1) - one_hot) / n
        return torch.cat([x.t() @ r, r.sum(0, keepdim=True)]) + decay * theta

    def best_step(z, zd, quad, steps):
        """The step in `steps` with the lowest objective; quad = (|W|^2, W.dW, |dW|^2) * weight_decay / 2."""
        ce = torch.zeros(len(steps), dtype=dtype, device=dev)
        for start in range(0, n, rows):
            zt = torch.addcmul(z[None, start : start + rows], steps[:, None, None], zd[None, start : start + rows])
            picked = zt.gather(2, y[start : start + rows].expand(len(steps), -1)[..., None])[..., 0]
            ce += (torch.logsumexp(zt, 2) - picked).sum(1)
        powers = torch.stack([torch.ones_like(steps), 2 * steps, steps * steps])
        # take(), not steps[argmin]: indexing with a 0-d tensor would copy the index to the host.
        return steps.take((ce / n + quad @ powers).argmin())

    # Optimiser state, updated in place so that a captured CUDA graph can replay the iterations.
    theta = torch.zeros((d + 1, num_classes), dtype=dtype, device=dev)
    z = torch.zeros((n, num_classes), dtype=dtype, device=dev)
    g = gradient(z, theta)
    # Rows 0..m-1 hold the steps s, rows m..2m-1 the gradient changes y, oldest first.
    pairs = torch.zeros((2 * history, theta.numel()), dtype=dtype, device=dev)
    unused = torch.ones(history, dtype=dtype, device=dev)
    gamma = 1.0 / g.norm().clamp_min(torch.finfo(dtype).tiny)  # first step: unit-length steepest descent
    last_step = torch.ones((), dtype=dtype, device=dev)

    def iterate():
        direction = -_inverse_hessian_times(g.reshape(-1), pairs, unused, gamma).view_as(g)
        direction = torch.where((g * direction).sum() < 0, direction, -gamma * g)
        zd = torch.addmm(direction[d], x, direction[:d])
        w_dw = torch.stack([theta[:d].reshape(-1), direction[:d].reshape(-1)])
        gram = w_dw @ w_dw.t()
        quad = (0.5 * weight_decay) * torch.stack([gram[0, 0], gram[0, 1], gram[1, 1]])  # ||W + t dW||^2 in t
        t = best_step(z, zd, quad, steps)
        t = best_step(z, zd, quad, t * refine)
        step = t * direction
        theta.add_(step)
        z.add_(t * zd)
        g_new = gradient(z, theta)
        change = g_new - g
        curvature = (step * change).sum()
        keep = curvature > 1e-10
        new_pair = torch.where(keep, torch.stack([step.reshape(-1), change.reshape(-1)]), 0.0)
        pairs.copy_(torch.cat([pairs[1:history], new_pair[:1], pairs[history + 1 :], new_pair[1:]]))
        unused.copy_(torch.cat([unused[1:], (~keep).to(dtype)[None]]))
        # No step on the grid improved (t = 0): the direction is far too long for these features (raw,
        # unstandardized features of norm 1e3 and more), and repeating it would stall at W = 0 for good.
        # Shrink the initial inverse Hessian so that the next grid reaches 2^-8 times shorter steps.
        gamma.copy_(torch.where(keep, curvature / (change * change).sum(), torch.where(t > 0, gamma, gamma * 2.0**-8)))
        g.copy_(g_new)
        last_step.copy_(t)

    def iterate_block():
        for _ in range(check_every):
            iterate()

    done = 0
    if dev.type == "cuda" and _USE_CUDA_GRAPHS and max_iter > check_every:
        iterate_block = _as_cuda_graph(iterate, iterate_block)
        done = 1  # the warm-up iteration before capture
    while done < max_iter:
        if max_iter - done >= check_every:
            iterate_block()
            done += check_every
        else:
            iterate()
            done += 1
        if done % check_every == 0 and bool((g.abs().max() <= grad_tol) | (last_step == 0)):
            break
    return theta


# A probe iteration is ~90 tiny kernels: on a GPU the host's launch overhead, not the GPU, sets the
# pace, so the iterations are captured once as a CUDA graph and replayed (H100, 50k x 512, 10
# classes, 100 iterations: 207 ms eager, 77 ms replayed, bitwise the same result).
_USE_CUDA_GRAPHS = True


def _as_cuda_graph(warm_up: Callable[[], None], block: Callable[[], None]) -> Callable[[], None]:
    """Run warm_up once (kernels and cuBLAS handles must exist before capture), record block as a
    CUDA graph without running it, and return the graph's replay; block itself if capture fails."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        warm_up()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            block()
    except RuntimeError as exc:  # an op that cannot be captured on this torch/CUDA: stay eager
        warnings.warn(f"linear_probe: CUDA graph capture failed ({exc}); running eagerly", RuntimeWarning, stacklevel=2)
        return block
    return graph.replay


def _inverse_hessian_times(
    g: torch.Tensor, pairs: torch.Tensor, unused: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """H g for the L-BFGS inverse Hessian H of the stored pairs, initial matrix gamma * I.

    Compact form: H = gamma I + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S^T; gamma Y^T],
    with R the upper triangle of S^T Y and D its diagonal (pairs as columns, oldest first). An unused
    pair is all zeros with a 1 on R's diagonal, which leaves the product as if it were absent.
    """
    m = unused.shape[0]
    gram = pairs @ pairs.t()
    sy, yy = gram[:m, m:], gram[m:, m:]
    r = torch.triu(sy) + torch.diag(unused)
    proj = pairs @ g
    u = torch.linalg.solve_triangular(r, proj[:m, None], upper=True)[:, 0]
    v = torch.diagonal(sy) * u + gamma * (yy @ u) - gamma * proj[m:]
    p = torch.linalg.solve_triangular(r.t(), v[:, None], upper=False)[:, 0]
    return gamma * g + pairs.t() @ torch.cat([p, -gamma * u])


def knn_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
    chunk_size: int = 4096,
    temperature: float | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Cosine k-NN accuracy of test rows against train rows.

    Each test row takes its k most cosine-similar train rows. Without `temperature` the label is
    the majority vote; a tie goes to the tied class with the larger summed similarity, then to the
    smaller class id. With `temperature` T each neighbour votes exp(s / T) (s = cosine similarity;
    DINO uses T = 0.07). Test rows are processed `chunk_size` at a time, so peak memory is about
    chunk_size x N_train similarities. Returns {"acc": test accuracy}.
    """
    k = check_count(k, "k")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0 or None, got {temperature}")
    x_train, y_train, x_test, y_test, num_classes = _check_split(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    k = min(k, x_train.shape[0])
    dtype = torch.promote_types(x_train.dtype, torch.float32)
    x_train = F.normalize(x_train.detach().to(dtype), dim=1)
    x_test = F.normalize(x_test.detach().to(dtype), dim=1)
    correct = torch.zeros((), dtype=torch.long, device=x_train.device)
    for start in range(0, x_test.shape[0], chunk_size):
        with torch.autocast(x_train.device.type, enabled=False):  # bf16 similarities would reorder neighbours
            sims, idx = (x_test[start : start + chunk_size] @ x_train.t()).topk(k, dim=1)
        # One-hot products rather than scatter_add_: float atomics on CUDA would make ties order-dependent.
        one_hot = F.one_hot(y_train[idx], num_classes).to(dtype)
        if temperature is None:
            weights = torch.stack([torch.ones_like(sims), sims], dim=1)
            counts, similarity = torch.bmm(weights, one_hot).unbind(1)
            # Among the classes with the most votes, the larger summed similarity wins.
            top = counts == counts.max(1, keepdim=True).values
            votes = torch.where(top, similarity, torch.full_like(similarity, -torch.inf))
        else:
            votes = torch.bmm(torch.exp(sims / temperature)[:, None, :], one_hot)[:, 0]
        correct += (votes.argmax(1) == y_test[start : start + chunk_size]).sum()
    return {"acc": float(correct) / x_test.shape[0]}
