"""The study's convex linear reference: the best linear classifier, solved to optimality.

The verdict asks whether networks with BatchNorm but no activation beat a linear classifier.
The reference for that is not a trained deep linear network (its optimizer may stop short of
the optimum) but the linear classifiers themselves, each fitted to convergence:

    logistic         L2-penalized logistic regression (multinomial for > 2 classes) with
                     scikit-learn's lbfgs, run to convergence for every C of a log-spaced grid;
                     C chosen on validation accuracy
    best_half_plane  2-D inputs, 2 classes: the half-plane with the fewest training errors, by
                     an exact exhaustive search in O(n^2 log n)
    fit              both for one `bnstudy.data.Dataset`, as one flat row of plain Python values

No JAX: numpy, scipy and scikit-learn only.
"""

from __future__ import annotations

import warnings

import numpy as np

DEFAULT_CS = tuple(float(10.0**k) for k in range(-4, 5))  # inverse L2 strength: 1e-4 .. 1e4
# lbfgs settings. tol is the gradient tolerance on scikit-learn's scaled objective (mean loss +
# penalty / (C n)); at 1e-8 lbfgs stops on its relative-reduction test (~64 machine epsilons)
# on the study's data, i.e. at the optimum to float64 precision. The most iterations seen on the
# study's data are ~400 (mnist1d, C = 1e4): MAX_ITER leaves a wide margin.
MAX_ITER = 10_000
TOL = 1e-8
# best_half_plane: directions seen from one point that differ by less than this (radians) are
# taken as parallel, so points collinear up to rounding are handled like exactly collinear ones.
ANGLE_TOL = 1e-11


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def logistic(ds, Cs=DEFAULT_CS, *, max_iter: int = MAX_ITER, tol: float = TOL) -> dict:
    """L2-penalized logistic regression on `ds.x_train`, C chosen on validation accuracy.

    For each C in `Cs` scikit-learn's `LogisticRegression(solver="lbfgs")` minimizes, full
    batch and from zero (no warm start, so each fit is independent of the others),

        C * sum_i CE(softmax(W x_i + b), y_i) + ||W||_F^2 / 2     (intercepts b unpenalized)

    with one weight row per class (multinomial) when there are more than 2 classes, and the
    binomial loss with one weight vector when there are 2. The chosen C has the highest
    validation accuracy; ties go to the smallest C (the strongest regularization).

    Returns, for the chosen C: C, train_acc, val_acc, test_acc, test_loss (mean cross-entropy
    on the test split, nats), n_iter (lbfgs iterations of that fit), converged (every fit of the
    grid stopped before max_iter and without a ConvergenceWarning), C_at_edge (the chosen C is
    the smallest or the largest of the grid: the grid may be too narrow), and `path`: one dict
    per C of the grid (C, val_acc, n_iter, converged).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x_train, y_train, x_val, y_val, x_test, y_test = _check_dataset(ds)
    Cs = _check_Cs(Cs)
    if int(max_iter) < 1 or not tol > 0:
        raise ValueError(f"max_iter must be >= 1 and tol > 0, got {max_iter!r}, {tol!r}")

    fits, path = [], []
    # One thread: these problems are small, and BLAS/OpenMP threads cost more than they save
    # (measured ~15x slower on a loaded 2-core machine).
    with threadpool_limits(limits=1):
        for C in Cs:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf = LogisticRegression(C=C, solver="lbfgs", max_iter=int(max_iter), tol=tol)
                clf.fit(x_train, y_train)
            warned = False
            for w in caught:
                if issubclass(w.category, ConvergenceWarning):
                    warned = True
                else:  # not ours to swallow
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            n_iter = int(np.max(clf.n_iter_))
            fits.append(clf)
            path.append(
                {
                    "C": C,
                    "val_acc": _accuracy(clf.predict(x_val), y_val),
                    "n_iter": n_iter,
                    "converged": n_iter < int(max_iter) and not warned,
                }
            )

    val_correct = [round(p["val_acc"] * len(y_val)) for p in path]  # exact counts for the tie
    best = val_correct.index(max(val_correct))  # first = smallest C among the ties
    clf = fits[best]
    return {
        "C": Cs[best],
        "train_acc": _accuracy(clf.predict(x_train), y_train),
        "val_acc": path[best]["val_acc"],
        "test_acc": _accuracy(clf.predict(x_test), y_test),
        "test_loss": _mean_cross_entropy(clf, x_test, y_test),
        "n_iter": path[best]["n_iter"],
        "converged": all(p["converged"] for p in path),
        "C_at_edge": best in (0, len(Cs) - 1),
        "path": path,
    }


def best_half_plane(x_train, y_train, x_test, y_test) -> dict:
    """The half-plane classifier of 2-D, 2-class data with the fewest training errors.

    A half-plane classifier predicts class 1 where w . x + b > 0 and class 0 elsewhere, for any
    w != 0 (both orientations) and b; the two constant classifiers are included.

    What is searched, and why it is exact. If a classifier puts some training points in class
    1, let p be the one of them with the smallest w . x: its class-1 set is {x : w . (x - p) >=
    0}, a closed half-plane whose boundary passes through the training point p. If other
    training points lie on that boundary, rotating the line slightly about the outermost of them
    along the line, q, moves the rest strictly inside without moving anything else: the same set
    is {q and its duplicates} plus the points strictly inside an open half-plane whose boundary
    passes through q and through no other training point. The search enumerates, for every
    training point as pivot, every such set: the points strictly inside are those whose
    direction from the pivot lies in an open half-circle (s, s + pi) with no direction on its
    ends; as s turns, one point leaves at s = its angle and one enters at s = its angle - pi, so
    sorting these 2(n - 1) events and taking cumulative sums gives every set in O(n log n) per
    pivot, O(n^2 log n) in all. Each such set is realized by a real half-plane (shift the line
    off the pivot), so the maximum over them, and over the empty set, is exactly the best
    training accuracy. (Equivalently: the search covers every line through two training points,
    both orientations, the points on the line assigned as a slight rotation or shift allows.)

    Floating point: directions are compared by their atan2 angles; seen from one pivot, events
    closer than ANGLE_TOL (1e-11 rad) are taken as one, i.e. directions that are parallel up to
    rounding count as parallel (points collinear up to rounding are handled like exactly
    collinear ones, and no set is counted that only float noise in the angles produces). What
    this can miss is a set realizable only within a wedge of directions narrower than 1e-11 rad;
    with continuous noise in the inputs (the study's 2-D sets) none occurs in practice. The
    returned w is in the middle of the best set's wedge of directions, b is the best threshold
    along w (halfway between two consecutive distinct projections), and train_acc is the
    accuracy of that line, recomputed directly.

    Returns train_acc, test_acc, w (tuple of 2 floats, unit length) and b (float).
    """
    x_train, y_train = _check_binary_2d(x_train, y_train, "train")
    x_test, y_test = _check_binary_2d(x_test, y_test, "test")
    if len(y_train) == 0:
        raise ValueError("best_half_plane needs at least one training point")

    w = _best_direction(x_train, y_train)
    b = _best_threshold(x_train @ w, y_train)
    return {
        "train_acc": _accuracy(_half_plane_predict(x_train, w, b), y_train),
        "test_acc": _accuracy(_half_plane_predict(x_test, w, b), y_test),
        "w": (float(w[0]), float(w[1])),
        "b": float(b),
    }


def fit(ds) -> dict:
    """The linear reference of one dataset, as one flat row of plain Python values.

    `logistic(ds)` always (without its per-C `path`); when the inputs are 2-D and there are 2
    classes, also `best_half_plane` on the train and test splits, its keys prefixed
    `halfplane_` (the line as halfplane_w0, halfplane_w1, halfplane_b).
    """
    row = {k: v for k, v in logistic(ds).items() if k != "path"}
    if ds.x_train.shape[1] == 2 and int(ds.num_classes) == 2:
        hp = best_half_plane(ds.x_train, ds.y_train, ds.x_test, ds.y_test)
        row.update(
            halfplane_train_acc=hp["train_acc"],
            halfplane_test_acc=hp["test_acc"],
            halfplane_w0=hp["w"][0],
            halfplane_w1=hp["w"][1],
            halfplane_b=hp["b"],
        )
    return row


# ---------------------------------------------------------------------------------------------
# Logistic regression: checks and scores
# ---------------------------------------------------------------------------------------------


def _check_dataset(ds):
    """The six arrays of `ds` as float64 inputs and int64 labels, checked against each other."""
    num_classes = int(ds.num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    out, dim = [], None
    for split in ("train", "val", "test"):
        x = np.asarray(getattr(ds, f"x_{split}"))
        y = np.asarray(getattr(ds, f"y_{split}"))
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
            raise ValueError(
                f"{split} split: need x of shape (n, d) and y of shape (n,) with n >= 1, "
                f"got {x.shape} and {y.shape}"
            )
        if dim is not None and x.shape[1] != dim:
            raise ValueError(f"{split} split has {x.shape[1]} features, train has {dim}")
        dim = x.shape[1]
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{split} split: x has non-finite values")
        y = _int_labels(y, f"{split} split")
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{split} split: labels must lie in [0, {num_classes})")
        out += [x, y]
    missing = sorted(set(range(num_classes)) - set(np.unique(out[1]).tolist()))
    if missing:
        raise ValueError(f"train split has no examples of classes {missing}")
    return out


def _check_Cs(Cs) -> list[float]:
    Cs = np.atleast_1d(np.asarray(Cs, dtype=np.float64))
    if Cs.ndim != 1 or len(Cs) == 0 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise ValueError(f"Cs must be a non-empty list of positive finite numbers, got {Cs}")
    if len(np.unique(Cs)) != len(Cs):
        raise ValueError(f"Cs has repeated values: {Cs}")
    return sorted(float(c) for c in Cs)


def _int_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def _mean_cross_entropy(clf, x: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p(y | x) from the logits (stable for confident predictions, unlike log(proba))."""
    from scipy.special import logsumexp

    z = clf.decision_function(x)
    if z.ndim == 1:  # binomial: p(class 1) = sigmoid(z) = softmax([0, z])[1]
        z = np.stack([np.zeros_like(z), z], axis=1)
    log_p = z - logsumexp(z, axis=1, keepdims=True)
    column = np.searchsorted(clf.classes_, y)  # every class is in the training split (checked)
    return float(-np.mean(log_p[np.arange(len(y)), column]))


# ---------------------------------------------------------------------------------------------
# Best half-plane: exhaustive search over pivots and half-circles of directions
# ---------------------------------------------------------------------------------------------


def _check_binary_2d(x, y, split: str):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(
            f"best_half_plane needs 2-D inputs of shape (n, 2); {split} x has shape {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{split}: y must have shape ({len(x)},), got {y.shape}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{split}: x has non-finite values")
    y = _int_labels(y, split)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(
            f"best_half_plane needs binary labels in {{0, 1}}; {split} labels include "
            f"{sorted(set(np.unique(y).tolist()) - {0, 1})}"
        )
    return x, y


def _best_direction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit w of a best half-plane (class 1 where w . x is large); (1, 0) if a constant wins."""
    v = np.where(y == 1, 1, -1)  # class 1 on a point: +1 correct if y = 1, -1 if y = 0
    n0 = int(np.sum(y == 0))
    best_score, best_theta = n0, None  # the empty class-1 set: everything class 0
    two_pi = 2.0 * np.pi
    for i in range(len(x)):
        d = x - x[i]
        same = (d[:, 0] == 0) & (d[:, 1] == 0)  # the pivot and its duplicates: always class 1
        base = n0 + int(v[same].sum())
        if same.all():
            if base > best_score:
                best_score, best_theta = base, 0.0
            continue
        a = np.arctan2(d[~same, 1], d[~same, 0])
        vv = v[~same]
        m = len(a)
        # The open half-circle (s, s + pi) of directions seen from the pivot, as s turns: point
        # j leaves it at s = a_j and enters at s = a_j - pi. One sorted list of these events,
        # so every state below is one consistent sweep.
        events = np.mod(np.concatenate([a, a - np.pi]), two_pi)
        change = np.concatenate([-vv, vv])
        order = np.argsort(events, kind="stable")
        gaps = np.diff(np.append(events[order], events[order[0]] + two_pi))
        # Start the sweep in the middle of the widest gap, so no group of events wraps around.
        widest = int(np.argmax(gaps))
        origin = events[order[widest]] + 0.5 * gaps[widest]
        order = np.roll(order, -(widest + 1))
        turned = np.mod(events[order] - origin, two_pi)  # increasing, in (0, 2 pi)
        rank = np.empty(2 * m, dtype=np.int64)
        rank[order] = np.arange(2 * m)
        inside = rank[:m] < rank[m:]  # leaves before it enters: inside at the start
        state = int(vv[inside].sum()) + np.cumsum(change[order])
        # Events closer than ANGLE_TOL are one event (parallel directions up to rounding): only
        # the states after a whole group count. The last event always ends a group.
        after = np.append(turned[1:], turned[0] + two_pi)
        ends = np.flatnonzero(after - turned > ANGLE_TOL)
        k = ends[int(np.argmax(state[ends]))]
        if base + int(state[k]) > best_score:
            best_score = base + int(state[k])
            s = origin + 0.5 * (turned[k] + after[k])  # the middle of the gap after the group
            best_theta = s + 0.5 * np.pi  # w points to the middle of (s, s + pi)
    if best_theta is None:
        return np.array([1.0, 0.0])
    return np.array([np.cos(best_theta), np.sin(best_theta)])


def _best_threshold(z: np.ndarray, y: np.ndarray) -> float:
    """b of the best rule "class 1 iff z + b > 0" along one direction, halfway between values."""
    order = np.argsort(z, kind="stable")
    zs, ys = z[order], y[order]
    n = len(zs)
    # Cut after position k (0..n): zs[:k] class 0, zs[k:] class 1; only between distinct values.
    correct = np.concatenate([[0], np.cumsum(ys == 0)]) + np.concatenate(
        [[int(np.sum(ys == 1))], int(np.sum(ys == 1)) - np.cumsum(ys == 1)]
    )
    allowed = np.ones(n + 1, dtype=bool)
    allowed[1:n] = zs[1:] > zs[:-1]
    k = int(np.argmax(np.where(allowed, correct, -1)))
    if k == 0:
        return float(-(zs[0] - 1.0))
    if k == n:
        return float(-(zs[-1] + 1.0))
    return float(-0.5 * (zs[k - 1] + zs[k]))


def _half_plane_predict(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return (x @ w + b > 0).astype(np.int64)
