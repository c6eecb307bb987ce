"""bnstudy.reference against known answers: separable sets, an independent minimization of the
same penalized likelihood (scipy), C chosen on validation, and the exact half-plane search
against brute force over directions."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp

from bnstudy import reference
from bnstudy.data import Dataset


def _dataset(x_train, y_train, x_val, y_val, x_test, y_test, num_classes):
    """A Dataset as `bnstudy.data` makes them: float32 inputs, int32 labels."""
    xs = [np.asarray(a, dtype=np.float32) for a in (x_train, x_val, x_test)]
    ys = [np.asarray(a, dtype=np.int32) for a in (y_train, y_val, y_test)]
    return Dataset("toy", xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], num_classes=num_classes)


def _blobs(rng, n_per_class, centers, scale):
    centers = np.asarray(centers, dtype=np.float64)
    x = np.concatenate([c + scale * rng.normal(size=(n_per_class, len(c))) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per_class)
    return x, y


# ---------------------------------------------------------------------------------------------
# Logistic regression
# ---------------------------------------------------------------------------------------------


def test_logistic_separates_a_linearly_separable_set():
    rng = np.random.default_rng(0)
    centers = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]
    splits = [_blobs(rng, n, centers, 0.3) for n in (40, 20, 20)]
    ds = _dataset(*(a for s in splits for a in s), num_classes=3)
    out = reference.logistic(ds)
    assert out["train_acc"] == 1.0
    assert out["val_acc"] == 1.0 and out["test_acc"] == 1.0
    assert out["converged"] is True
    assert [p["C"] for p in out["path"]] == list(reference.DEFAULT_CS)


def _penalized_nll(C, x, y, k):
    """C * sum_i CE + ||W||^2 / 2 (intercepts unpenalized) and its gradient; params (W, b) flat.
    k = 2: the binomial form with one weight vector, as scikit-learn fits 2 classes."""
    n, d = x.shape
    rows = 1 if k == 2 else k

    def f(params):
        w = params[: rows * d].reshape(rows, d)
        b = params[rows * d :]
        z = x @ w.T + b
        if k == 2:
            z = np.concatenate([np.zeros((n, 1)), z], axis=1)
        log_p = z - logsumexp(z, axis=1, keepdims=True)
        onehot = np.eye(z.shape[1])[y]
        loss = -C * np.sum(log_p * onehot) + 0.5 * np.sum(w**2)
        dz = C * (np.exp(log_p) - onehot)
        if k == 2:
            dz = dz[:, 1:]
        grad = np.concatenate([(dz.T @ x + w).ravel(), dz.sum(axis=0)])
        return loss, grad

    return f, rows * (d + 1)


def _independent_test_loss(C, x, y, x_test, y_test, k):
    f, size = _penalized_nll(C, x, y, k)
    scale = 1.0 / (C * len(y))  # minimize the objective over C n: gradients of order one

    def scaled(params):
        value, grad = f(params)
        return scale * value, scale * grad

    res = minimize(scaled, np.zeros(size), jac=True, method="BFGS", options={"gtol": 1e-10})
    assert np.linalg.norm(res.jac) < 1e-8, res.message
    d = x.shape[1]
    rows = 1 if k == 2 else k
    w, b = res.x[: rows * d].reshape(rows, d), res.x[rows * d :]
    z = x_test @ w.T + b
    if k == 2:
        z = np.concatenate([np.zeros((len(z), 1)), z], axis=1)
    log_p = z - logsumexp(z, axis=1, keepdims=True)
    return float(-np.mean(log_p[np.arange(len(y_test)), y_test]))


@pytest.mark.parametrize("k", [3, 2])
@pytest.mark.parametrize("C", [0.1, 10.0])
def test_logistic_matches_an_independent_minimization(k, C):
    # Overlapping classes: the penalized optimum is finite and unique. The reported test loss
    # is the mean cross-entropy of the fitted probabilities, so it matches the independent
    # optimum's only if the probabilities do; the test split doubles as the training split to
    # compare the likelihood term of the objective too.
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(k, 3))
    x, y = _blobs(rng, 20, centers, 1.0)
    x = x.astype(np.float32).astype(np.float64)  # what the Dataset stores
    x_test, y_test = _blobs(rng, 15, centers, 1.0)
    x_test = x_test.astype(np.float32).astype(np.float64)
    for xt, yt in ((x_test, y_test), (x, y)):
        ds = _dataset(x, y, x, y, xt, yt, num_classes=k)
        out = reference.logistic(ds, Cs=[C])
        assert out["converged"] is True and out["C"] == C
        expected = _independent_test_loss(C, x, y, xt, yt, k)
        assert abs(out["test_loss"] - expected) < 1e-6


def _one_feature_case(val_label):
    # Train: 20 points of class 0 at x = -1, 10 of class 1 at x = +1 (separable). Strong
    # regularization (C -> 0) leaves w ~ 0 and the unpenalized intercept predicts the majority
    # class 0 everywhere; weak regularization predicts class 1 at x = +1. Validation: points at
    # x = +1, all labelled `val_label`.
    x_train = np.array([[-1.0]] * 20 + [[1.0]] * 10)
    y_train = np.array([0] * 20 + [1] * 10)
    x_val = np.ones((10, 1))
    y_val = np.full(10, val_label)
    return _dataset(x_train, y_train, x_val, y_val, x_train, y_train, num_classes=2)


def test_strong_regularization_wins_on_validation():
    out = reference.logistic(_one_feature_case(val_label=0))
    assert out["val_acc"] == 1.0
    # Several small Cs tie at 1.0; the tie goes to the smallest, which is the grid's edge.
    assert out["C"] == min(reference.DEFAULT_CS)
    assert out["C_at_edge"] is True
    assert out["train_acc"] == pytest.approx(20 / 30)
    assert sum(p["val_acc"] == 1.0 for p in out["path"]) > 1


def test_weak_regularization_wins_on_validation():
    out = reference.logistic(_one_feature_case(val_label=1))
    assert out["val_acc"] == 1.0 and out["train_acc"] == 1.0
    assert min(reference.DEFAULT_CS) < out["C"] < max(reference.DEFAULT_CS)
    assert out["C_at_edge"] is False
    # The smallest C that reaches the best validation accuracy; the smaller ones do worse.
    for p in out["path"]:
        assert (p["val_acc"] == 1.0) == (p["C"] >= out["C"])


def test_chosen_C_maximizes_validation_accuracy_over_the_grid():
    rng = np.random.default_rng(2)

    # 2 informative features + 8 noise features, few training points: the grid's Cs differ.
    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 10))
        x[:, 0] += 1.5 * (y == 1)
        x[:, 1] += 1.5 * (y == 2)
        return x, y

    ds = _dataset(*split(30), *split(200), *split(200), num_classes=3)
    out = reference.logistic(ds)
    accs = [p["val_acc"] for p in out["path"]]
    best = max(accs)
    assert out["val_acc"] == best
    assert out["C"] == min(p["C"] for p in out["path"] if p["val_acc"] == best)
    assert len(set(accs)) > 1  # the choice is not a trivial tie over the whole grid
    assert out["converged"] is True


def test_logistic_rejects_bad_input():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 2)), np.arange(12) % 3
    ok = dict(x_val=x, y_val=y, x_test=x, y_test=y, num_classes=3)
    with pytest.raises(ValueError, match="no examples of classes \\[2\\]"):
        reference.logistic(_dataset(x, np.arange(12) % 2, **ok))
    with pytest.raises(ValueError, match="labels must lie in"):
        reference.logistic(_dataset(x, y, **{**ok, "y_test": y + 1}))
    with pytest.raises(ValueError, match="features"):
        reference.logistic(_dataset(x, y, **{**ok, "x_val": np.ones((12, 3))}))
    with pytest.raises(ValueError, match="shape"):
        reference.logistic(_dataset(x, y[:5], **ok))
    with pytest.raises(ValueError, match="positive"):
        reference.logistic(_dataset(x, y, **ok), Cs=[1.0, -1.0])
    with pytest.raises(ValueError, match="non-finite"):
        reference.logistic(_dataset(np.where(x > 1, np.nan, x), y, **ok))


# ---------------------------------------------------------------------------------------------
# Best half-plane
# ---------------------------------------------------------------------------------------------


def _accuracy_by_direction(x, y, thetas):
    """For each direction: the best accuracy of "class 1 iff w . x >= t" over every threshold t
    (each projected value, and +inf for all class 0)."""
    w = np.stack([np.cos(thetas), np.sin(thetas)])
    z = x @ w  # (n, m)
    order = np.argsort(z, axis=0)
    zs = np.take_along_axis(z, order, axis=0)
    ys = y[order]
    n = len(y)
    zeros_below = np.concatenate([np.zeros((1, len(thetas))), np.cumsum(ys == 0, axis=0)])
    ones_above = np.sum(y == 1) - np.concatenate(
        [np.zeros((1, len(thetas))), np.cumsum(ys == 1, axis=0)]
    )
    correct = zeros_below + ones_above  # cut k: the k smallest are class 0
    allowed = np.ones_like(correct, dtype=bool)
    allowed[1:n] = zs[1:] > zs[:-1]  # a threshold cannot split equal values
    return np.max(np.where(allowed, correct, -1), axis=0) / n


def _brute_force(x, y, m=200_000):
    """Fine grid of directions (a lower bound), and one direction inside every arc between the
    critical directions (perpendicular to a difference of two points: exact)."""
    grid = np.linspace(0.0, 2 * np.pi, m, endpoint=False)
    i, j = np.triu_indices(len(x), 1)
    d = x[j] - x[i]
    base = np.arctan2(d[:, 1], d[:, 0])
    critical = np.unique(np.mod(np.concatenate([base + np.pi / 2, base - np.pi / 2]), 2 * np.pi))
    mids = 0.5 * (critical + np.append(critical[1:], critical[0] + 2 * np.pi))
    return _accuracy_by_direction(x, y, grid).max(), _accuracy_by_direction(x, y, mids).max()


def _check_line(out, x, y):
    w, b = np.array(out["w"]), out["b"]
    assert np.linalg.norm(w) == pytest.approx(1.0)
    assert out["train_acc"] == np.mean((x @ w + b > 0) == y)


def test_half_plane_separable():
    rng = np.random.default_rng(4)
    x, y = _blobs(rng, 50, [[-1.0, 2.0], [1.0, -2.0]], 0.5)
    xt, yt = _blobs(rng, 50, [[-1.0, 2.0], [1.0, -2.0]], 0.5)
    out = reference.best_half_plane(x, y, xt, yt)
    assert out["train_acc"] == 1.0 and out["test_acc"] == 1.0
    _check_line(out, x, y)


def test_half_plane_xor_gets_three_of_four():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    out = reference.best_half_plane(x, y, x, y)
    assert out["train_acc"] == 0.75 and out["test_acc"] == 0.75
    _check_line(out, x, y)


@pytest.mark.parametrize("seed", range(8))
def test_half_plane_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 8 + seed % 6
    x = rng.normal(size=(n, 2))
    y = rng.integers(0, 2, n)
    out = reference.best_half_plane(x, y, x, y)
    grid, exact = _brute_force(x, y)
    assert out["train_acc"] >= grid  # at least as good as any direction of a fine grid
    assert out["train_acc"] == grid == exact
    _check_line(out, x, y)


@pytest.mark.parametrize("seed", range(4))
def test_half_plane_collinear_points(seed):
    # A 3x3 lattice: many exactly collinear triples, where the search's argument needs the
    # rotation about the outermost point of the boundary line.
    rng = np.random.default_rng(seed)
    x = np.array([[i, j] for i in range(3) for j in range(3)], dtype=np.float64)
    y = rng.integers(0, 2, len(x))
    out = reference.best_half_plane(x, y, x, y)
    assert out["train_acc"] == _brute_force(x, y)[1]
    _check_line(out, x, y)


@pytest.mark.parametrize("seed", range(4))
def test_half_plane_collinear_up_to_rounding(seed):
    # The same lattice scaled and shifted: collinear points are now collinear only up to
    # rounding, and the answer must be the exact lattice's (no float-noise-only sets counted,
    # none lost to inconsistent angle comparisons).
    rng = np.random.default_rng(10 + seed)
    lattice = rng.integers(-4, 5, size=(25, 2)).astype(np.float64)
    y = rng.integers(0, 2, len(lattice))
    x = lattice * 0.37 + np.array([0.1, -0.3])
    out = reference.best_half_plane(x, y, x, y)
    assert out["train_acc"] == _brute_force(lattice, y, m=2000)[1]
    _check_line(out, x, y)


def test_half_plane_constant_and_duplicates():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert reference.best_half_plane(x, [1, 1, 1], x, [1, 1, 1])["train_acc"] == 1.0
    assert reference.best_half_plane(x, [0, 0, 0], x, [0, 0, 0])["train_acc"] == 1.0
    # duplicates with opposite labels: at most one of them is right
    out = reference.best_half_plane(x, [0, 1, 1], x, [0, 1, 1])
    assert out["train_acc"] == pytest.approx(2 / 3)


def test_half_plane_rejects_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2-D inputs"):
        reference.best_half_plane(np.zeros((4, 3)), [0, 1, 0, 1], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="2-D inputs"):
        reference.best_half_plane(x, [0, 1, 0, 1], np.zeros(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="binary labels"):
        reference.best_half_plane(x, [0, 1, 2, 1], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="binary labels"):
        reference.best_half_plane(x, [0, 1, 0, 1], x, [0, 1, -1, 1])
    with pytest.raises(ValueError, match="shape"):
        reference.best_half_plane(x, [0, 1, 0], x, [0, 1, 0, 1])


# ---------------------------------------------------------------------------------------------
# fit: one flat row
# ---------------------------------------------------------------------------------------------


def test_fit_row_two_d_binary_and_otherwise():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)  # XOR-like: not linearly separable
    row = reference.fit(_dataset(x, y, x, y, x, y, num_classes=2))
    assert set(row) == {
        "C",
        "train_acc",
        "val_acc",
        "test_acc",
        "test_loss",
        "n_iter",
        "converged",
        "C_at_edge",
        "halfplane_train_acc",
        "halfplane_test_acc",
        "halfplane_w0",
        "halfplane_w1",
        "halfplane_b",
    }
    assert all(type(v) in (float, bool, int) for v in row.values())
    assert row["halfplane_train_acc"] >= row["train_acc"]  # the best half-plane by training error
    assert row["halfplane_train_acc"] == _brute_force(x, y, m=20_000)[1]

    x3 = rng.normal(size=(60, 3))
    row3 = reference.fit(_dataset(x3, y, x3, y, x3, y, num_classes=2))
    assert not any(k.startswith("halfplane_") for k in row3)
