"""What the study measures on trained models (all functions take models stacked along axis 0;
and models with several candidate norms, as a job's families share them, with the index `norm` of
the one they run: `shared_view`).

- `evaluate`: inference-mode loss and accuracy (running statistics).
- `batch_stat_probe`: accuracy in batch-statistics mode at several test batch sizes and two batch
  compositions (random; one class per batch), and the flip rate: the share of test examples whose
  prediction changes when only their batch-mates are resampled.
- `fold`, `fold_check`: an inference-mode network without nonlinearity (identity activation with
  none/batchnorm/zscore) folded into one affine map x -> x W_eff + b_eff, computed in float64
  from the parameters alone, and compared with the network's own logits.
- `affinity_gap`: how far any network is from affine on test data: the midpoint defect
  ||f((x+y)/2) - (f(x)+f(y))/2|| relative to the logits' spread ||f(x) - mean f||.
- `boundary`: predictions on a 2-D grid, for decision-boundary pictures.
- `init_gradient_norms`: every Linear kernel's gradient norm at initialization, root mean square
  over batches of a given size drawn from the training split (E4's batch dependence).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from flax import nnx

from bnstudy import models, train, vocab

CHUNK = 4096  # examples per step of the inference-mode forward pass (bounds memory)
CONFIDENT = 0.9  # E3: a prediction with at least this inference-mode probability is not a tie
COARSE = 4  # conditional decision boundaries: every COARSE-th grid point (their cost grows with m)
# The probes' programs run a few times each, so on a GPU, XLA's autotuning of their products (on
# by default: it times candidate kernels while compiling) costs far more than it could save: on
# an H100 it was most of a job's compilation (docs/speed.md). Their products keep the models'
# precision (HIGHEST) either way; a CPU ignores the option. The training program, which runs
# thousands of steps, keeps the autotuning. Both compute their products with cuBLAS
# (train.CUBLAS).
ONCE = train.CUBLAS | {"xla_gpu_autotune_level": 0}


@partial(jax.jit, static_argnames="graphdef", compiler_options=ONCE)
def _forward(graphdef, params, stats, x, y, norm):
    """Inference-mode logits per model of x (chunks, CHUNK, features): (chunks, models, CHUNK,
    classes); with labels y (chunks, CHUNK), not None, also each row's cross-entropy and
    prediction, the trainer's own (float32; `train.example_losses`, `train.predictions`):
    (chunks, models, CHUNK) each. With y None it is a program of its own
    (jit keys on the arguments' structure), which compiles faster."""

    def model(p, s, xb, yb):
        z = models.apply(graphdef, p, s, xb, norm=norm)[0]
        if yb is None:
            return (z,)
        return z, train.example_losses(z, yb), train.predictions(z).astype(jnp.int32)

    one = lambda b: jax.vmap(model, (0, 0, None, None))(params, stats, *b)  # noqa: E731
    return jax.lax.map(one, (x, y))


def forward(graphdef, params, stats, x, y=None, norm=None) -> tuple[np.ndarray, ...]:
    """Inference-mode logits (models, n, classes), and with labels y each example's
    cross-entropy and predicted class (models, n), computed on the device: on a GPU the
    float64 log-softmax of every logit on the host was the probes' largest cost
    (docs/speed.md). One compiled program serves every n that pads to the same number of
    chunks. `norm`: for models with several candidate norms, the index of the one they run
    (see `shared_view`); the same for every probe below."""
    x = np.asarray(x, np.float32)
    n = len(x)
    chunks = -(-n // CHUNK)
    padded = np.zeros((chunks * CHUNK, x.shape[1]), np.float32)
    padded[:n] = x
    labels = None
    if y is not None:
        labels = np.zeros(chunks * CHUNK, np.int32)
        labels[:n] = y
        labels = labels.reshape(chunks, CHUNK)
    out = _forward(graphdef, params, stats, padded.reshape(chunks, CHUNK, -1), labels, norm)

    def rows(a):  # (chunks, models, CHUNK, ...) -> (models, n, ...)
        a = np.moveaxis(np.asarray(a), 1, 0)
        return a.reshape(a.shape[0], -1, *a.shape[3:])[:, :n]

    return tuple(rows(a) for a in out)


def logits(graphdef, params, stats, x, norm=None) -> np.ndarray:
    """Inference-mode logits per model: (models, n, classes) (`forward`)."""
    return forward(graphdef, params, stats, x, norm=norm)[0]


def evaluate(graphdef, params, stats, x, y, norm=None):
    """Inference-mode (loss, accuracy) per model: two arrays of shape (models,)."""
    _, loss, pred = forward(graphdef, params, stats, x, y, norm)
    return loss_and_accuracy(loss, pred, y)


def loss_and_accuracy(loss: np.ndarray, pred: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """Per model: mean cross-entropy and accuracy (the trainer's loss and accuracy) from each
    example's loss and predicted class (models, n) (`forward`), the means taken on the host in
    float64. A diverged model's losses are NaN, as in the trainer."""
    return np.asarray(loss, np.float64).mean(1), (pred == np.asarray(y)).mean(1)


def accuracy(logits_: np.ndarray, y) -> np.ndarray:
    """Per model: the accuracy of logits (models, n, classes) for labels y."""
    return (np.asarray(logits_).argmax(-1) == np.asarray(y)).mean(1)


# ---------------------------------------------------------------- batch-statistics mode


@partial(jax.jit, static_argnames="graphdef", compiler_options=ONCE)
def _batch_stat_predict(graphdef, params, stats, x, idx, mask, norm):
    """Predictions (models, batches, b) when each row of `idx` is evaluated as one batch with
    batch statistics over its `mask`ed entries. Running statistics are not updated."""

    def one_model(p, s):
        def one_batch(rows, m):
            out, _ = models.apply(graphdef, p, s, x[rows], train=True, mask=m[:, None], norm=norm)
            return jnp.argmax(out, -1).astype(jnp.int32)

        # as many batches at once as make about CHUNK examples: few, large steps
        k = max(1, min(idx.shape[0], CHUNK // idx.shape[1]))
        return _map_scored(jax.vmap(one_batch), idx, mask, k)

    return jax.vmap(one_model)(params, stats)


def _map_scored(f, idx, mask, k):
    """The rows of (idx, mask) through `f`, k rows a step (`f` takes a step: the vmap of a
    function of one row), in a scan over the steps, the last step filled up with padding rows;
    a step without any masked-in entry (padding rows, see `_pad_rows`) is skipped: 0 for its
    rows. `mask` does not depend on the model, so under the models' vmap the skip stays a
    branch."""
    rows, width = idx.shape
    fill = ((0, -rows % k), (0, 0))  # rows up to a whole number of steps

    def step(rows_m):
        skip = lambda rows, m: jnp.zeros(rows.shape, jnp.int32)  # noqa: E731
        return jax.lax.cond(rows_m[1].any(), f, skip, *rows_m)

    steps = lambda a: jnp.pad(a, fill).reshape(-1, k, width)  # noqa: E731
    return jax.lax.map(step, (steps(idx), steps(mask))).reshape(-1, width)[:rows]


def _pad_rows(batches: list[np.ndarray], rows: int, width: int):
    """Stack index batches into (rows, width) with a validity mask (padding is masked out)."""
    idx = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), bool)
    for r, b in enumerate(batches):
        idx[r, : len(b)] = b
        mask[r, : len(b)] = True
    return idx, mask


def _batches(ids: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`ids` (already shuffled) in batches of `size`, every one scored: the remainder's batch is
    filled up with batch-mates drawn from the other ids, which are not scored there (a batch's
    first entries are the scored ones; `_per_example` keeps each example's first score)."""
    full = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    rest = ids[len(full) * size :]
    if len(rest):
        mates = rng.choice(ids[: len(full) * size], size - len(rest), replace=False)
        full.append(np.concatenate([rest, mates]))
    return full


def random_batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """range(n) in random batches of `size`; every example is scored once (see `_batches`)."""
    if size > n:
        return []
    return _batches(rng.permutation(n), size, rng)


def class_batches(y: np.ndarray, size: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches holding one class each, every example scored once; size None puts each whole class
    in one batch. A class with fewer examples than `size` cannot fill a batch and is left out."""
    out = []
    for c in np.unique(y):
        ids = rng.permutation(np.flatnonzero(y == c))
        step = len(ids) if size is None else size
        if len(ids) >= step:
            out += _batches(ids, step, rng)
    return out


def _per_example(preds: np.ndarray, idx, mask, n: int) -> np.ndarray:
    """(models, n) predictions, each example's from the first batch position that holds it in
    row-major order (a filled-up remainder batch lists its own examples first and comes last);
    -1 for examples that were in no batch."""
    out = np.full((preds.shape[0], n), -1, np.int64)
    rows = idx[mask]
    _, first = np.unique(rows, return_index=True)
    out[:, rows[first]] = preds[:, mask][:, first]
    return out


def batch_stat_probe(
    graphdef, params, stats, x, y, sizes, seed: int = 0, norm=None, confident=None
) -> list[dict]:
    """Batch-statistics accuracy per test batch size and composition, and the flip rate per size.

    `sizes`: ints and/or vocab.FULL (the whole test set; for the one-class composition, each
    whole class). Returns one record per (size, composition): test_batch_size (the whole set's
    size for FULL), full, composition, and per model (arrays of shape (models,)) accuracy,
    flip_rate and flip_rate_confident (the flip rate among the examples the inference-mode
    network classifies with probability >= CONFIDENT: flips that are not ties near a boundary;
    both for random batches of a size smaller than the set only, else NaN). Sizes larger than the
    test set give NaN. `confident`: (models, n) whether the inference-mode network classifies
    each example of x with probability >= CONFIDENT, where the caller has it already
    (`measure` does, from its own forward pass; `confident_of`); else it is computed here.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    m = jax.tree.leaves(params)[0].shape[0]
    nan = np.full(m, np.nan)
    if confident is None:
        confident = confident_of(logits(graphdef, params, stats, x, norm))
    records = []
    for size in sizes:
        b = n if size == vocab.FULL else int(size)
        acc, flip, flip_sure = {c: nan for c in vocab.COMPOSITIONS}, nan, nan
        if b <= n:
            draws = [random_batches(n, b, rng) for _ in range(2)]
            by_class = class_batches(y, None if size == vocab.FULL else b, rng)
            rows = max(len(by_class), len(draws[0]))
            preds = {}
            passes = {"random": draws[0], "random2": draws[1], "class": by_class}
            if b == n:  # one batch of the whole set: no flips to count, random2 is not needed
                del passes["random2"]
            for name, batches in passes.items():
                idx, mask = _pad_rows(batches, rows, b)
                p = np.asarray(_batch_stat_predict(graphdef, params, stats, x, idx, mask, norm))
                preds[name] = _per_example(p, idx, mask, n)
            for comp in vocab.COMPOSITIONS:
                seen = preds[comp] >= 0
                acc[comp] = _share((preds[comp] == y) & seen, seen)
            if b < n:  # with the whole set as the batch, batch-mates cannot change
                both = (preds["random"] >= 0) & (preds["random2"] >= 0)
                flip = _share((preds["random"] != preds["random2"]) & both, both)
                sure = both & confident
                flip_sure = _share((preds["random"] != preds["random2"]) & sure, sure)
        for comp in vocab.COMPOSITIONS:
            records.append(
                {
                    "test_batch_size": b,
                    "full": size == vocab.FULL,
                    "composition": comp,
                    "accuracy": acc[comp],
                    "flip_rate": flip if comp == "random" else nan,
                    "flip_rate_confident": flip_sure if comp == "random" else nan,
                }
            )
    return records


def confident_of(inference_logits) -> np.ndarray:
    """(models, n): whether the inference-mode probability of the predicted class is at least
    CONFIDENT, from logits (models, n, classes)."""
    with np.errstate(invalid="ignore"):  # a diverged model's logits: NaN, not confident
        prob = scipy.special.softmax(np.asarray(inference_logits, float), -1)
    return prob.max(-1) >= CONFIDENT


def _share(hits: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per model: hits / seen over examples; NaN where no example was seen (e.g. no class has
    as many test examples as the batch size)."""
    count = seen.sum(1)
    return np.where(count > 0, hits.sum(1) / np.maximum(count, 1), np.nan)


# ---------------------------------------------------------------- the conditional function


@partial(jax.jit, static_argnames="graphdef", compiler_options=ONCE)
def _conditional(graphdef, params, stats, x, mates, norm):
    """Logits (models, n, classes): each row of x normalized with batch statistics in one batch
    with the fixed rows `mates` (m - 1, features); running statistics are not updated."""

    def one_model(p, s):
        def one(xi):
            batch = jnp.concatenate([xi[None], mates])
            out, _ = models.apply(graphdef, p, s, batch, train=True, norm=norm)
            return out[0]

        # Rows left over from whole steps run as a step of their own (two traces of `one`):
        # computed in a full step instead, their logits differed in the last bits (docs/speed.md).
        return jax.lax.map(one, x, batch_size=max(1, CHUNK // (mates.shape[0] + 1)))

    return jax.vmap(one_model)(params, stats)


def conditional_logits(graphdef, params, stats, x, mates, norm=None) -> np.ndarray:
    """The conditional function x -> f(x; mates) of batch-statistics networks, per model:
    (models, n, classes). With m - 1 fixed batch-mates, each unit's normalization is the bounded
    function g of Proposition 3 of the example's own pre-activation."""
    return np.asarray(
        _conditional(graphdef, params, stats, np.asarray(x, np.float32), np.asarray(mates), norm)
    )


def draw_mates(x_train, batch_size: int, seed: int = 0) -> np.ndarray:
    """batch_size - 1 distinct training rows: the fixed batch-mates of the conditional function."""
    rng = np.random.default_rng(seed)
    return np.asarray(x_train, np.float32)[rng.choice(len(x_train), batch_size - 1, replace=False)]


CONDITIONAL_COLUMNS = ("cond_test_acc", "cond_affine_gap")  # conditional_measures' columns


def conditional_measures(
    graphdef, params, stats, ds, batch_size: int, norm=None
) -> dict[str, np.ndarray]:
    """Per model: test accuracy of the conditional function with fixed batch-mates from the
    training split (`cond_test_acc`) and its affinity gap (`cond_affine_gap`)."""
    mates = draw_mates(ds.x_train, batch_size)
    probe_x = affinity_inputs(ds.x_test, pairs=256)
    f = conditional_logits(
        graphdef, params, stats, np.concatenate([ds.x_test, probe_x]), mates, norm
    )
    n = len(ds.y_test)
    return dict(zip(CONDITIONAL_COLUMNS, (accuracy(f[:, :n], ds.y_test), gap_of(f[:, n:]))))


# ---------------------------------------------------------------- gradients at initialization

INIT_EXAMPLES = 2048  # training examples per batch size over which init gradients are averaged


@partial(jax.jit, static_argnames="graphdef", compiler_options=ONCE)
def _mean_square_kernel_grads(graphdef, params, stats, x, y):
    """(models, depth + 1): each kernel's squared gradient norm, mean over the batches
    x (models, batches, b, features) of each model, batch statistics as in training."""

    def one_model(p, s, xs, ys):
        def one_batch(xy):
            xb, yb = xy
            loss = lambda p: train.cross_entropy(  # noqa: E731
                models.apply(graphdef, p, s, xb, train=True)[0], yb
            )
            return train.kernel_norms(jax.grad(loss)(p)) ** 2

        return jax.lax.map(one_batch, (xs, ys)).mean(0)

    return jax.vmap(one_model)(params, stats, x, y)


def check_init_batch_sizes(batch_sizes, n: int) -> None:
    """Every init batch size must be between 2 and the `n` training examples."""
    for b in batch_sizes:
        if not 2 <= b <= n:
            raise ValueError(f"init batch size {b} must be between 2 and the {n} training examples")


def init_gradient_norms(
    spec: models.ModelSpec, seeds, choices, splits: dict, batch_sizes, seed: int = 0
) -> dict[int, np.ndarray]:
    """batch size b -> (models, depth + 1): the gradient norm of each Linear kernel (input layer
    first, head last) at the initialization the trainer gives model i (`seeds[i]`, activation
    `choices[i]` of the family), root mean square over INIT_EXAMPLES // b batches of b examples
    drawn without replacement from that seed's training split (`splits`: seed -> Dataset), the
    same batches for every model of a seed whichever models are measured together.

    The mean over batches estimates the expectation the mean-field theory predicts
    (bnstudy.theory); the trainer's own record is a single batch."""
    check_init_batch_sizes(batch_sizes, min(len(splits[int(s)].x_train) for s in seeds))
    graphdef, params, stats = train.init_models(spec, seeds, choices)
    out = {}
    for b in batch_sizes:
        draws = max(1, INIT_EXAMPLES // b)
        drawn = {}  # the batches depend on the seed and b only: drawn once per seed
        for s in np.unique(seeds):
            ds = splits[int(s)]
            rng = np.random.default_rng([seed, int(s), int(b)])
            idx = rng.permuted(np.tile(np.arange(len(ds.x_train)), (draws, 1)), axis=1)[:, :b]
            drawn[int(s)] = np.asarray(ds.x_train, np.float32)[idx], np.asarray(ds.y_train)[idx]
        x, y = (np.stack([drawn[int(s)][k] for s in seeds]) for k in (0, 1))
        sq = _mean_square_kernel_grads(graphdef, params, stats, x, y)
        out[int(b)] = np.sqrt(np.asarray(sq, np.float64))
    return out


# ---------------------------------------------------------------- the affine fold


def unstack(tree, i):
    """Model `i` (an int) or the models `i` (an index array) of a stacked tree."""
    return jax.tree.map(lambda a: a[i], tree)


def fold(graphdef, params, stats) -> tuple[np.ndarray, np.ndarray]:
    """(W_eff, b_eff) in float64 of ONE inference-mode network with identity activation.

    Linear: h -> h K + c. BatchNorm at inference: h -> (h - mu) * s + beta with
    s = gamma / sqrt(var + eps): a diagonal affine map. Composing them gives one affine map.
    """
    model = nnx.merge(graphdef, params, stats)
    spec = model.spec.member(models.activation_of(model))
    if not spec.foldable:
        raise ValueError(
            f"only identity activation with norm in {vocab.AFFINE_NORMS} folds "
            f"into one affine map, got {spec.activation}+{spec.norm}"
        )
    f64 = lambda v: np.asarray(v[...], np.float64)  # noqa: E731
    w = np.eye(spec.in_features)
    b = np.zeros(spec.in_features)
    for i, linear in enumerate(model.linears):
        w, b = w @ f64(linear.kernel), b @ f64(linear.kernel) + f64(linear.bias)
        if spec.uses_batch_stats:
            bn = model.norms[i]
            s = 1.0 / np.sqrt(f64(bn.var) + bn.epsilon)
            if bn.use_scale:
                s = s * f64(bn.scale)
            w, b = w * s, (b - f64(bn.mean)) * s
            if bn.use_bias:
                b = b + f64(bn.bias)
    head = model.head
    return w @ f64(head.kernel), b @ f64(head.kernel) + f64(head.bias)


def fold_check(graphdef, params, stats, x, net=None, which=None) -> dict[str, np.ndarray]:
    """Per model: largest |network logits - folded-map logits| (absolute, and relative to the
    largest |logit|), and the share of examples on which both predict the same class. `net`:
    the models' logits of x if already computed; `which`: the models to fold (others get NaN)."""
    net = (logits(graphdef, params, stats, x) if net is None else net).astype(np.float64)
    m = net.shape[0]
    dev, rel, agree = np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
    for i in np.flatnonzero(np.ones(m, bool) if which is None else which):
        w, b = fold(graphdef, unstack(params, i), unstack(stats, i))
        folded = np.asarray(x, np.float64) @ w + b
        dev[i] = np.abs(net[i] - folded).max()
        rel[i] = dev[i] / np.abs(net[i]).max()
        agree[i] = np.mean(net[i].argmax(-1) == folded.argmax(-1))
    return {"fold_max_dev": dev, "fold_rel_dev": rel, "fold_agreement": agree}


# ---------------------------------------------------------------- affinity gap


def affinity_inputs(x, seed: int = 0, pairs: int = 2048) -> np.ndarray:
    """The inputs of the affinity gap: `pairs` random pairs (x, y) of rows of x and their
    midpoints, stacked as [x_i; y_i; (x_i + y_i) / 2]."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), pairs)
    j = rng.integers(0, len(x), pairs)
    return np.concatenate([x[i], x[j], (x[i] + x[j]) / 2])


def affinity_gap(
    graphdef, params, stats, x, seed: int = 0, pairs: int = 2048, norm=None
) -> np.ndarray:
    """Midpoint defect of f relative to the logit spread, per model; ~1e-7 for an affine f."""
    return gap_of(logits(graphdef, params, stats, affinity_inputs(x, seed, pairs), norm))


def gap_of(f: np.ndarray) -> np.ndarray:
    """The affinity gap per model from the logits (models, 3 * pairs, classes) of affinity_inputs;
    NaN for a model whose logits do not vary over the inputs (spread 0: a collapsed network,
    e.g. deep without normalization) or are not finite: relative to nothing, the gap is undefined."""
    f = f.astype(np.float64)
    pairs = f.shape[1] // 3
    fx, fy, fm = f[:, :pairs], f[:, pairs : 2 * pairs], f[:, 2 * pairs :]
    defect = np.linalg.norm(fm - (fx + fy) / 2, axis=-1).mean(-1)
    spread = np.linalg.norm(fx - fx.mean(1, keepdims=True), axis=-1).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, defect / spread, np.nan)


# ---------------------------------------------------------------- decision boundaries


def boundary(
    graphdef,
    params,
    stats,
    x_train,
    mates=None,
    resolution: int = 200,
    margin: float = 0.25,
    norm=None,
) -> dict:
    """Predictions on a grid over the 2-D data range: inference mode for every model, and for
    batch-statistics models with `mates` given also the conditional function with those fixed
    batch-mates (`pred_batch`; computed on every `COARSE`-th grid point and repeated, to bound
    the cost, which grows with the batch size)."""
    xx, yy = boundary_grid(x_train, resolution, margin)
    grid = np.stack([xx.ravel(), yy.ravel()], 1)
    m = jax.tree.leaves(params)[0].shape[0]
    out = {
        "xx": xx,
        "yy": yy,
        "pred_inference": logits(graphdef, params, stats, grid, norm)
        .argmax(-1)
        .reshape(m, *xx.shape),
    }
    if _runs(graphdef, params, stats, norm).uses_batch_stats and mates is not None:
        c = COARSE
        coarse = np.stack([xx[::c, ::c].ravel(), yy[::c, ::c].ravel()], 1)
        pred = conditional_logits(graphdef, params, stats, coarse, mates, norm).argmax(-1)
        pred = pred.reshape(m, *xx[::c, ::c].shape)
        out["pred_batch"] = pred.repeat(c, 1).repeat(c, 2)[:, : xx.shape[0], : xx.shape[1]]
        out["batch_mates"] = np.asarray(mates)
    return out


def boundary_grid(x_train, resolution: int = 200, margin: float = 0.25):
    """(xx, yy): the `boundary` grid over the 2-D data range, widened by `margin` of it."""
    x_train = np.asarray(x_train)
    if x_train.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2-D inputs, got {x_train.shape[1]} features")
    lo, hi = x_train.min(0), x_train.max(0)
    pad = margin * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution, dtype=np.float32)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution, dtype=np.float32)
    return np.meshgrid(xs, ys)


def _runs(graphdef, params, stats, norm) -> models.ModelSpec:
    """The architecture the models run: their spec, with several candidate norms the `norm`th."""
    spec = nnx.merge(graphdef, unstack(params, 0), unstack(stats, 0)).spec
    return spec if norm is None else spec.member_norm(spec.norms[int(norm)])


# ---------------------------------------------------------------- everything, for one cell


def shared_view(spec: models.ModelSpec, result: train.TrainResult, shared=None):
    """(graphdef, params, stats, norm): what the compiled probes run. The result's own models
    (norm None), or, with `shared` (spec with several candidate norms: train.train's `shared`),
    the same models as models of `shared` that run spec's norm, the `norm`th candidate
    (train.as_shared). The families of a job that share their training program then share the
    probes' compiled programs too; their numbers are the same up to float rounding."""
    if shared is None:
        return result.graphdef, result.params, result.stats, None
    graphdef, params, stats = train.as_shared(shared, result.graphdef, result.params, result.stats)
    return graphdef, params, stats, np.int32(shared.norms.index(spec.norm))


def measure(
    spec: models.ModelSpec,
    result: train.TrainResult,
    splits: dict,
    init_batch_sizes=(),
    shared: models.ModelSpec | None = None,
) -> tuple[dict[str, np.ndarray], list[dict], np.ndarray | None]:
    """What is measured on every model of a trained cell or family (activation x seed x lr),
    each model on its own seed's split (`splits`: seed -> data.Dataset):

    - scalars: column name -> (models,) array; metrics that do not apply to a model's
      architecture are NaN, so every cell has the same columns;
    - the gradient norms of each Linear kernel at initialization, as records for
      `results.run_tables`: the trainer's first step (one batch of the training batch size),
      replaced by `init_gradient_norms` at `init_batch_sizes` when these are given (E4);
    - for a norm that uses batch statistics, `confident_of` the models' test-set logits
      (models, test examples), which `measure_batch_stats` takes; else None.

    `shared`: the spec the models were trained as (train.train's `shared`), whose compiled
    programs the probes then share with the job's other families (`shared_view`).

    Per seed, the inference-mode logits of every split and of the affinity-gap inputs come from
    one forward pass; the seeds' splits have equal sizes, so one compiled program serves all.
    """
    m = len(result.seeds)
    cols: dict[str, np.ndarray] = {}
    confident = None
    graphdef, run_params, run_stats, norm = shared_view(spec, result, shared)
    for seed in np.unique(result.seeds):
        idx = np.flatnonzero(result.seeds == seed)
        view = graphdef, unstack(run_params, idx), unstack(run_stats, idx), norm
        measured, test_logits = _measure_split(spec, result, idx, splits[int(seed)], view)
        for name, values in measured.items():
            cols.setdefault(name, np.full(m, np.nan))[idx] = values
        if spec.uses_batch_stats:
            sure = confident_of(test_logits)
            if confident is None:
                confident = np.zeros((m, sure.shape[1]), bool)
            confident[idx] = sure
    names = list(cols)
    at = names.index("test_acc") + 1  # the contract's order: losses, accuracies, divergence, probes
    cols = (
        {k: cols[k] for k in names[:at]}
        | {
            "diverged": result.diverged,
            "diverged_step": result.diverged_step,
        }
        | {k: cols[k] for k in names[at:]}
    )
    input_rank = np.array([splits[int(s)].input_rank for s in result.seeds])
    grads = []
    if len(init_batch_sizes):
        # the learning rates of one (seed, activation) share its initialization: measure it once
        choices = np.array([spec.activations.index(a) for a in result.activations], np.int32)
        pairs, model_pair = np.unique(
            np.stack([result.seeds, choices], 1), axis=0, return_inverse=True
        )
        for b, norms in init_gradient_norms(
            spec, pairs[:, 0], pairs[:, 1].astype(np.int32), splits, init_batch_sizes
        ).items():
            grads.append(
                {
                    "grad_batch_size": b,
                    "draws": max(1, INIT_EXAMPLES // b),
                    "norms": norms[model_pair.ravel()],
                }
            )
    if result.batch_size not in {g["grad_batch_size"] for g in grads}:
        grads.append(
            {"grad_batch_size": result.batch_size, "draws": 1, "norms": result.grad_norms_init}
        )
    return cols, [{**g, "input_rank": input_rank} for g in grads], confident


def measure_batch_stats(
    spec: models.ModelSpec,
    result: train.TrainResult,
    splits: dict,
    which,
    test_batch_sizes,
    confident: np.ndarray,
    conditional: int | None = None,
    shared: models.ModelSpec | None = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The batch-statistics probes of the models `which` (indices into the result's models; a
    norm that uses batch statistics), each on its own seed's split: the records of
    `batch_stat_probe`, each with its models' indices, and with `conditional` (a batch size m)
    the conditional function with m - 1 fixed batch-mates (`conditional_measures`: column ->
    (models,), NaN for the models not in `which`). `confident`: `measure`'s. The caller picks
    the models: those an output reads (the workflow: each cell's selected learning rate)."""
    m = len(result.seeds)
    cols = {name: np.full(m, np.nan) for name in CONDITIONAL_COLUMNS} if conditional else {}
    batch = []
    graphdef, run_params, run_stats, norm = shared_view(spec, result, shared)
    which = np.asarray(which, int)
    for seed in np.unique(result.seeds[which]):
        idx = which[result.seeds[which] == seed]
        params, stats = unstack(run_params, idx), unstack(run_stats, idx)
        ds = splits[int(seed)]
        if conditional:
            for name, values in conditional_measures(
                graphdef, params, stats, ds, conditional, norm
            ).items():
                cols[name][idx] = values
        for record in batch_stat_probe(
            graphdef,
            params,
            stats,
            ds.x_test,
            ds.y_test,
            test_batch_sizes,
            norm=norm,
            confident=confident[idx],
        ):
            batch.append({**record, "models": idx})
    return cols, batch


def _measure_split(spec, result, idx, ds, view) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The scalars of the models `idx` (one seed) on that seed's split `ds`, and their
    inference-mode logits of its test set (the batch-statistics probe's too); `view`: the models
    `idx` as the compiled probes run them (`shared_view`)."""
    sets = [(getattr(ds, f"x_{k}"), getattr(ds, f"y_{k}")) for k in ("train", "val", "test")]
    probe_x = affinity_inputs(ds.x_test)
    xs = np.concatenate([x for x, _ in sets] + [probe_x])
    ys = np.concatenate([y for _, y in sets] + [np.zeros(len(probe_x), np.int32)])
    every, loss, pred = forward(*view[:3], xs, ys, view[3])
    ends = np.cumsum([0] + [len(x) for x, _ in sets])
    cols = {}
    for k, (name, (_, y)) in enumerate(zip(("train", "val", "test"), sets)):
        part = slice(ends[k], ends[k + 1])
        cols[f"{name}_loss"], cols[f"{name}_acc"] = loss_and_accuracy(
            loss[:, part], pred[:, part], y
        )
    cols["affine_gap"] = gap_of(every[:, ends[-1] :])
    foldable = np.array([spec.member(a).foldable for a in result.activations[idx]])
    g, p, s = result.graphdef, unstack(result.params, idx), unstack(result.stats, idx)
    test_logits = every[:, ends[2] : ends[3]]
    cols.update(fold_check(g, p, s, ds.x_test, net=test_logits, which=foldable))
    return cols, test_logits
