"""The trainer: every (seed, learning rate) of one grid cell in one compiled program.

Models are stacked along a leading axis (seed-major: model m = seeds[m // L], lrs[m % L]) and
trained together with `jax.vmap`, split over the local devices where there are several; an
epoch is a `jax.lax.scan` over steps, and a block of epochs is a `jax.lax.scan` over epochs. The
data live on the device, one split per seed (stacked; or one split shared by every seed); each
seed's models shuffle its training split with the seed's key every epoch. Python only loops
over epoch blocks, to log progress and draw the next block's batches.

Randomness: a model's initialization and data order depend on its seed only, so the learning
rates of one seed start from the same weights and see the same batches (paired comparisons).
Divergence: a step whose loss, parameters or statistics are not finite is not applied; the model
is frozen at its last finite state and flagged with the step, while the others train on.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bnstudy import models, vocab

OPTIMIZERS = tuple(vocab.OPTIMIZERS)
SCHEDULES = vocab.SCHEDULES
_D = vocab.TRAINING_DEFAULTS
# For the programs that only compute keys and data orders: integers come out the same at any of
# XLA's optimization levels, and these programs, which run once per family or block of epochs,
# compile in less than half the time without optimizing (docs/speed.md).
INTEGER_ONLY = {"xla_backend_optimization_level": 0}
# For every program with the models' products, on a GPU: cuBLAS computes them instead of Triton
# kernels that XLA generates and times in several configurations while compiling. On an H100 a
# job's training programs then compiled in 7.9 s instead of 32.1 s and trained 2% slower; the
# products keep full float32 precision either way (docs/speed.md, "Third run"). A CPU ignores it.
CUBLAS = {"xla_gpu_enable_triton_gemm": False}


@dataclass(frozen=True)
class TrainConfig:
    seeds: tuple[int, ...] = tuple(_D["seeds"])
    lrs: tuple[float, ...] = tuple(_D["lrs"])
    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    optimizer: str = _D["optimizer"]
    momentum: float = _D["momentum"]  # sgd only
    schedule: str = _D["schedule"]

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds must be a non-empty list of distinct integers, got {self.seeds}"
            )
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"lrs must be a non-empty list of positive numbers, got {self.lrs}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )

    @property
    def model_seeds(self) -> np.ndarray:
        return np.repeat(np.asarray(self.seeds, np.int32), len(self.lrs))

    @property
    def model_lrs(self) -> np.ndarray:
        return np.tile(np.asarray(self.lrs, np.float32), len(self.seeds))


def model_keys(seeds) -> tuple[jax.Array, jax.Array]:
    """(init keys, data-order keys), one per model, derived from the seeds alone."""
    base = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    return (
        jax.vmap(lambda k: jax.random.fold_in(k, 0))(base),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(base),
    )


def _host() -> jax.Device:
    """Where the models' keys, their kernels' numbers (`init_models`) and the data orders' sort
    keys (`_epoch_batches`) are drawn: the host's CPU on every platform, or the default device
    where JAX runs without its CPU backend (JAX_PLATFORMS=cuda). A GPU run then draws them with
    the same CPU programs as a CPU run (the data orders are integers: the same everywhere), and
    on a GPU the data orders' program (then with its sort) compiled in 6 s against 0.2 to 0.6 s
    on the CPU (docs/speed.md, "Third run")."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return jax.devices()[0]


@partial(jax.jit, compiler_options=INTEGER_ONLY)
def _keys(seeds):
    """Per seed: the key its models draw their layers from (models.layer_key of its init key)
    and its data-order key (model_keys); one compiled program gives both."""
    init, order = model_keys(seeds)
    return jax.vmap(models.layer_key)(init), order


@partial(jax.jit, static_argnums=0)
def _kernel_numbers(size: int, keys, index):
    """For every key of `keys`, `size` numbers of the draw Linear layer `index` takes its kernel
    from (models.kernel_numbers of models.kernel_key): the layer's in x out are the first of
    them. The index is traced and `size` is a power of two at least a model's largest kernel,
    so one program serves every layer of a model, and the jobs of a study whose models have
    kernels of like sizes share it through the persistent compilation cache (docs/speed.md)."""
    return jax.vmap(lambda key: models.kernel_numbers(models.kernel_key(key, index), size))(keys)


@partial(jax.jit, static_argnums=0)
def _norm_constants(spec: models.ModelSpec):
    """(params, statistics) of one norm layer of `spec` as initialized: constants, the same for
    every model and layer (compiled, since building the layer eagerly would dispatch its key
    operations one by one)."""
    layer = models.make_norm(spec, nnx.Rngs(0))
    return tuple(nnx.to_pure_dict(nnx.state(layer, kind)) for kind in (nnx.Param, nnx.BatchStat))


def _abstract(spec: models.ModelSpec):
    """(graphdef, params, stats) of one model of `spec`: shapes and dtypes only, nothing computed
    (a fresh copy of `_traced`'s, which the caller may fill in)."""
    graphdef, params, stats = _traced(spec)
    return graphdef, *jax.tree.map(lambda a: a, (params, stats))


@lru_cache(maxsize=64)
def _traced(spec: models.ModelSpec):
    """Tracing the model's construction takes 0.02 to 0.1 s (more with more candidate norms and
    layers), and a job needs it several times per family: once per spec."""
    return models.split(nnx.eval_shape(lambda: models.MLP(spec, rngs=nnx.Rngs(0))))


def init_models(spec: models.ModelSpec, seeds, choices=None):
    """(graphdef, params, stats) with params/stats stacked over the models along axis 0: one
    model per entry of `seeds`, using activation `choices[i]` of a family spec (default 0).
    The arrays are on the host (NumPy), to be placed on the devices as the caller needs.

    The Linear kernels come from `_kernel_numbers`, one call per layer, scaled on the host (a
    float32 product either way) and copied to the models of their seed; the biases are zeros,
    and the norms' scales, shifts and running statistics start at the constants of their
    initializers, the same for every model (as in models.init_linear and models.make_norm:
    tests/test_engine.py checks the models bit for bit against models.init)."""
    graphdef, params, stats = _abstract(spec)
    m = len(seeds)
    stack = lambda tree: jax.tree.map(lambda a: np.repeat(a[None], m, 0), tree)  # noqa: E731
    # One initialization per distinct seed, then copied to its models on the host.
    distinct, model_seed = np.unique(np.asarray(seeds), return_inverse=True)
    keys, _ = _keys(jax.device_put(distinct, _host()))
    sizes = models.linear_sizes(spec)
    size = 1 << (max(i * o for i, o in sizes) - 1).bit_length()
    linears = []
    for k, (i, o) in enumerate(sizes):  # one layer's numbers at a time: bounded memory
        kernel = np.asarray(_kernel_numbers(size, keys, k))[:, : i * o] * models.kernel_scale(i)
        linears.append(
            {
                "kernel": kernel[model_seed.ravel()].reshape(m, i, o),
                "bias": np.zeros((m, o), np.float32),
            }
        )
    *hidden, head = linears
    pure_params = {"linears": dict(enumerate(hidden)), "head": head}
    pure_stats = {}
    if spec.norms != ("none",):
        norm_params, norm_stats = jax.device_get(_norm_constants(spec))
        pure_params["norms"] = {i: stack(norm_params) for i in range(spec.depth)}
        if jax.tree.leaves(norm_stats):
            pure_stats["norms"] = {i: stack(norm_stats) for i in range(spec.depth)}
    if len(spec.activations) > 1:
        pure_stats["choice"] = (
            np.zeros(m, np.int32) if choices is None else np.asarray(choices, np.int32)
        )
    nnx.replace_by_pure_dict(params, pure_params)
    nnx.replace_by_pure_dict(stats, pure_stats)
    return graphdef, params, stats


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The update direction at unit learning rate; each model scales it by its own rate. The
    same object for the same optimizer settings, whatever the seeds and rates: jit reuses its
    compiled program (an edge-extension round at other rates runs the program of an earlier
    round of the same activations)."""
    return _optimizer(cfg.optimizer, cfg.momentum, cfg.schedule, total_steps)


@lru_cache(maxsize=32)
def _optimizer(optimizer: str, momentum: float, schedule: str, total_steps: int):
    unit = optax.cosine_decay_schedule(1.0, total_steps) if schedule == "cosine" else 1.0
    if optimizer == "adam":
        return optax.adam(unit)
    return optax.sgd(unit, momentum=momentum)


def _zero_state(abstract):
    """Arrays of zeros on the host with the shapes and dtypes of `abstract`. The optimizers'
    initial states are zeros (adam's moments and count, sgd's momentum, the schedule's count:
    tests/test_engine.py checks `tx.init` for every optimizer and schedule), so they are built
    from their shapes instead of by a compiled `tx.init` (a program per parameter shapes, 0.2 to
    1 s to compile in every training job)."""
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)


def clear_caches() -> None:
    """Forget the compiled programs and what this module keeps per settings (the optimizers, the
    models' traces): what follows runs as in a fresh process (benchmarks' cold runs)."""
    _optimizer.cache_clear()
    _traced.cache_clear()
    jax.clear_caches()


def example_losses(logits, labels):
    """Each example's cross-entropy: the trainer minimizes their mean, the probes report it."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def predictions(logits):
    return jnp.argmax(logits, -1)


def cross_entropy(logits, labels):
    return example_losses(logits, labels).mean()


def accuracy(logits, labels):
    return jnp.mean(predictions(logits) == labels)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return (
        jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        if leaves
        else jnp.array(True)
    )


def _finite_grads(grads) -> jax.Array:
    """True when every gradient is finite. The matrices are checked one by one, the vectors
    (biases, scales: a few hundred numbers) in one concatenation: XLA compiles a reduction per
    array checked, and these checks were about 40% of the training program's compilation
    (docs/speed.md); concatenating the matrices too would copy them at every step."""
    leaves = jax.tree.leaves(grads)
    vectors = [g.ravel() for g in leaves if g.ndim <= 1]
    checks = [jnp.all(jnp.isfinite(g)) for g in leaves if g.ndim > 1]
    if vectors:
        checks.append(jnp.all(jnp.isfinite(jnp.concatenate(vectors))))
    return jnp.all(jnp.stack(checks))


def evaluate(graphdef, params, stats, x, y, chunk: int = 8192, norm=None):
    """Inference-mode (loss, accuracy) of one model on (x, y), in chunks to bound memory
    (`norm`: models.apply's)."""
    n = x.shape[0]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, x.shape[1])
    logits = jax.lax.map(lambda xb: models.apply(graphdef, params, stats, xb, norm=norm)[0], xs)
    logits = logits.reshape(-1, logits.shape[-1])[:n]
    return cross_entropy(logits, y), accuracy(logits, y)


class ModelState(NamedTuple):
    """The training state of one model (stacked over models along axis 0 in the trainer)."""

    params: nnx.State
    stats: nnx.State  # BatchNorm running statistics (empty for other norms)
    opt_state: optax.OptState
    diverged: jax.Array  # bool
    diverged_step: jax.Array  # int32, -1 while not diverged
    step: jax.Array  # int32


def _abstract_state(spec: models.ModelSpec, m: int, tx, sharding):
    """(graphdef, the ModelState of `m` models of `spec`: shapes, dtypes and `sharding` only)."""
    graphdef, params, stats = _abstract(spec)
    params, stats = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((m, *a.shape), a.dtype), (params, stats)
    )
    opt_state = jax.eval_shape(jax.vmap(tx.init), params)
    counter = jax.ShapeDtypeStruct((m,), jnp.int32)
    state = ModelState(params, stats, opt_state, jax.ShapeDtypeStruct((m,), bool), counter, counter)
    return graphdef, _placed(state, sharding)


def _placed(tree, sharding):
    """The shapes and dtypes of `tree` with `sharding`: what lowering needs of arrays to come."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _train_step(graphdef, tx, first, norm, state: ModelState, lr, xb, yb):
    """One optimizer step of one model; a non-finite step is not applied and marks divergence.
    `norm`: models.apply's, the same for every model.
    Returns the step's loss, accuracy and, on the run's first step (`first`, the same for every
    model), each Linear kernel's gradient norm (zeros on the other steps: nothing reads them).

    The check comes before the update (a finite loss, gradients and batch statistics), so the
    update itself is masked instead of the whole state being selected between old and new: the
    same numbers for a finite step, one pass over the parameters fewer. On the step that
    diverges the optimizer state sees zero gradients; the model is frozen from then on."""

    def loss_fn(p):
        logits, new_stats = models.apply(graphdef, p, state.stats, xb, train=True, norm=norm)
        return cross_entropy(logits, yb), (new_stats, accuracy(logits, yb))

    (loss, (new_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(loss) & _finite_grads(grads) & _all_finite(new_stats)
    ok = finite & ~state.diverged
    grads = jax.tree.map(lambda g: jnp.where(ok, g, 0), grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = jax.tree.map(
        lambda p, u: p + jnp.where(ok, lr * u, 0).astype(p.dtype), state.params, updates
    )
    newly_diverged = ~state.diverged & ~finite
    state = ModelState(
        new_params,
        jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_stats, state.stats),
        new_opt_state,
        state.diverged | ~finite,
        jnp.where(newly_diverged, state.step, state.diverged_step),
        state.step + 1,
    )
    nan = jnp.float32(jnp.nan)
    norms = jax.lax.cond(first, kernel_norms, lambda g: jnp.zeros(len(_kernels(g))), grads)
    return state, (jnp.where(ok, loss, nan), jnp.where(ok, acc, nan), norms)


def _kernels(grads) -> list:
    g = nnx.to_pure_dict(grads)
    return [g["linears"][i]["kernel"] for i in sorted(g["linears"])] + [g["head"]["kernel"]]


def kernel_norms(grads) -> jax.Array:
    """The norm of each Linear kernel's gradient, input layer first, head last: (depth + 1,)."""
    return jnp.stack([jnp.linalg.norm(k) for k in _kernels(grads)])


def _shuffle_rounds(n: int) -> int:
    """How many sorts `jax.random.permutation` of n items does: each round sorts by fresh 32-bit
    keys, enough rounds that ties are unlikely to survive them all (JAX's `_shuffle`)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


@partial(jax.jit, static_argnames=("n", "rounds"), compiler_options=INTEGER_ONLY)
def _sort_keys(order_keys, epochs, n: int, rounds: int):
    """The sort keys of each seed's permutation in each of `epochs`: (epochs, seeds, rounds, n)
    uint32, the random bits `jax.random.permutation` draws from the seed's data-order key folded
    with the epoch (split once per round, the subkey's bits)."""

    def keys(key):
        out = []
        for _ in range(rounds):
            key, sub = jax.random.split(key)
            out.append(jax.random.bits(sub, (n,), jnp.uint32))
        return jnp.stack(out)

    return jax.vmap(lambda e: jax.vmap(lambda k: keys(jax.random.fold_in(k, e)))(order_keys))(
        epochs
    )


def _epoch_batches(order_keys, epochs, n: int, batch_size: int) -> np.ndarray:
    """Every seed's batches in each of `epochs`: (epochs, steps, seeds, batch_size) int32
    indices into its training split of `n` examples. An epoch's order is the permutation
    `jax.random.permutation` draws from the seed's data-order key folded with the epoch (what is
    left over after the last full batch is not seen that epoch). The models of one seed see the
    same batches, so each permutation is drawn once per seed, not per model.

    The same permutation, computed faster: JAX's is rounds of a stable sort of arange(n) by
    random 32-bit keys. A small program draws the keys (`_sort_keys`), and NumPy sorts them on
    the host, each key with its index in its low 32 bits: the 64-bit keys are distinct, so
    NumPy's (vectorized, unstable) sort puts them in the stable order. XLA's sort on the CPU took
    nine times as long, on the cores that train (docs/speed.md); a test checks the result
    against `jax.random.permutation`."""
    bits = np.asarray(_sort_keys(order_keys, epochs, n=n, rounds=_shuffle_rounds(n)))
    index = np.arange(n, dtype=np.uint64)
    perms = np.broadcast_to(np.arange(n, dtype=np.int32), bits.shape[:2] + (n,))
    for r in range(bits.shape[2]):
        ranked = np.sort(bits[:, :, r].astype(np.uint64) << np.uint64(32) | index, axis=-1)
        perms = np.take_along_axis(perms, (ranked & np.uint64(0xFFFFFFFF)).astype(np.intp), -1)
    steps = n // batch_size
    batches = perms[..., : steps * batch_size].reshape(*bits.shape[:2], steps, batch_size)
    return batches.swapaxes(1, 2)


def _train_epoch(graphdef, tx, norm, data, lrs, state, epoch_batches):
    """One epoch of every model (vmapped), then their inference-mode validation metrics.
    `data`: the splits stacked over seeds, each model's split (models,) and each model's data
    order (models,): an index into the seeds of `epoch_batches` = (epoch, its batches: (steps,
    seeds, batch) indices, `_epoch_batches`)."""
    x_train, y_train, x_val, y_val, split, order = data
    epoch, batches = epoch_batches

    def step(state, i_idx):  # idx: (seeds, batch)
        i, idx = i_idx
        idx = idx[order]  # (models, batch)
        xb, yb = x_train[split[:, None], idx], y_train[split[:, None], idx]
        first = (epoch == 0) & (i == 0)
        return jax.vmap(partial(_train_step, graphdef, tx, first, norm))(state, lrs, xb, yb)

    steps = jnp.arange(batches.shape[0])
    state, (losses, accs, grad_norms) = jax.lax.scan(step, state, (steps, batches))
    val_loss, val_acc = jax.vmap(
        lambda p, s, k: evaluate(graphdef, p, s, x_val[k], y_val[k], norm=norm)
    )(state.params, state.stats, split)
    # A frozen (diverged) model has NaN step losses; its epoch means are NaN too.
    return state, dict(
        train_loss=losses.mean(0),
        train_acc=accs.mean(0),
        val_loss=jnp.where(state.diverged, jnp.nan, val_loss),
        val_acc=jnp.where(state.diverged, jnp.nan, val_acc),
        grad_norms_first_step=grad_norms[0],  # (models, depth + 1)
    )


@partial(
    jax.jit, static_argnames=("graphdef", "tx"), donate_argnames=("state",), compiler_options=CUBLAS
)
def _train_block(graphdef, tx, norm, data, lrs, batches, state, epochs):
    """The epochs `epochs` as one scan, `batches` their batches (`_epoch_batches`): the compiled
    program reused for every block of a run (and, `norm` being traced, by every norm of a spec
    with several)."""
    epoch_fn = partial(_train_epoch, graphdef, tx, norm, data, lrs)
    return jax.lax.scan(epoch_fn, state, (epochs, batches))


def _block_size(epochs: int, target_blocks: int = 10) -> int:
    """The divisor of `epochs` closest to epochs / target_blocks (all blocks equal: one compile)."""
    divisors = [d for d in range(1, epochs + 1) if epochs % d == 0]
    return min(divisors, key=lambda d: abs(d - epochs / target_blocks))


def _check_shared(spec: models.ModelSpec, shared: models.ModelSpec | None) -> None:
    """`shared` must be `spec` with several candidate norms, spec's among them."""
    run = spec if shared is None else shared
    if spec.norm not in run.norms or run.member_norm(spec.norm) != spec:
        raise ValueError(f"shared={shared} is not {spec} with several candidate norms")


def _zeros(spec: models.ModelSpec, m: int):
    """`m` stacked models of `spec` whose arrays are all zeros (to be filled: no compute)."""
    graphdef, *abstract = _abstract(spec)
    return nnx.merge(
        graphdef, *(jax.tree.map(lambda a: np.zeros((m, *a.shape), a.dtype), t) for t in abstract)
    )


def _copy_common(source, target) -> None:
    """Give `target` the Linear layers and activation choices of `source` (the same
    architecture but for the norm layers)."""
    nnx.update(target.linears, nnx.state(source.linears))
    nnx.update(target.head, nnx.state(source.head))
    if len(source.spec.activations) > 1:
        nnx.update(target, nnx.state(source, models.Choice))


def _keep_norm(spec: models.ModelSpec, graphdef, params, stats):
    """(graphdef, params, stats) of the models of `spec` from stacked models whose norm layers
    are several candidates' (spec's among them; models.make_norm): spec's layers kept."""
    union = nnx.merge(graphdef, params, stats)  # the stacked arrays as its values: no compute
    own = _zeros(spec, len(jax.tree.leaves(params)[0]))
    _copy_common(union, own)
    for i, layer in enumerate(own.norms):  # empty without a norm
        nnx.update(layer, nnx.state(union.norms[i][spec.norm]))
    return models.split(own)


def as_shared(shared: models.ModelSpec, graphdef, params, stats):
    """`_keep_norm` undone: stacked models of one norm as models of `shared` (their spec with
    several candidate norms, theirs among them) that run it with the norm index of
    `shared.norms`. Their arrays are the models' own; what only the other candidates use is
    zeros (those branches never run)."""
    own = nnx.merge(graphdef, params, stats)
    _check_shared(own.spec, shared)
    union = _zeros(shared, len(jax.tree.leaves(params)[0]))
    _copy_common(own, union)
    for i, layer in enumerate(own.norms):  # empty without a norm
        nnx.update(union.norms[i][own.spec.norm], nnx.state(layer))
    return models.split(union)


@dataclass
class TrainResult:
    graphdef: object
    params: object  # stacked over models, on the host (NumPy)
    stats: object
    diverged: np.ndarray  # (models,) bool
    diverged_step: np.ndarray  # (models,) int, -1 when not diverged
    history: dict  # name -> (epochs, models) array
    seeds: np.ndarray  # (models,)
    lrs: np.ndarray  # (models,)
    activations: np.ndarray  # (models,) the activation of each model
    grad_norms_init: np.ndarray  # (models, depth + 1) each Linear kernel's gradient norm at the
    # first step (initial weights, the model's first batch, batch statistics), head last
    batch_size: int  # the training batch size (that of grad_norms_init's one batch)
    seconds: dict  # wall time of the phases: init (and its compilation), compile (the wait for
    # the training program once the models are initialized: it compiles while they are), train


def train(
    spec: models.ModelSpec,
    cfg: TrainConfig,
    x_train,
    y_train,
    x_val,
    y_val,
    log=sys.stderr,
    shared: models.ModelSpec | None = None,
) -> TrainResult:
    """Train all seeds x learning rates of one cell, or of every member of a family (spec with
    several activations: models activation-major, then seed, then learning rate), in one
    compiled program; returns the final stacked models.

    The data: one split shared by every seed (x of shape (n, d)), or one split per seed of
    `cfg.seeds`, stacked in that order (x of shape (seeds, n, d); y (seeds, n)).

    `shared`: `spec` with several candidate norms, spec's among them. The models then carry
    every candidate's layers (their common Variables held once: models.make_norm) and run
    spec's, so that the families of a job that differ only in their norm are trained by one
    compiled program (what only the other candidates use gets zero gradients and stays as
    initialized); they come back as models of `spec`. The numbers agree with training
    `spec` on its own up to float rounding (XLA fuses the norm's branch apart), not bit for bit.
    """
    start = time.perf_counter()
    run = spec if shared is None else shared
    if len(spec.norms) != 1:
        raise ValueError(f"train one norm at a time (`shared` holds the candidates), got {spec}")
    _check_shared(spec, shared)
    norm = jnp.int32(run.norms.index(spec.norm))
    if np.ndim(x_train) == 2:  # one split for every seed
        x_train, y_train, x_val, y_val = (
            np.asarray(a)[None] for a in (x_train, y_train, x_val, y_val)
        )
    elif len(x_train) != len(cfg.seeds):
        raise ValueError(f"{len(x_train)} stacked splits for {len(cfg.seeds)} seeds")
    n = x_train.shape[1]
    if cfg.batch_size > n:
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {n} training examples")
    k = len(spec.activations)
    seeds, lrs = np.tile(cfg.model_seeds, k), np.tile(cfg.model_lrs, k)
    choices = np.repeat(np.arange(k, dtype=np.int32), len(cfg.model_seeds))
    m = len(seeds)
    # The models are split over the local devices (one GPU; or, with `bnstudy train --threads N`
    # on a CPU, N CPU devices that run in parallel); their count is padded to a multiple of the
    # devices with copies of the last model, dropped at the end. The data are on every device.
    devices = jax.local_devices()
    pad = (-m) % len(devices)
    seeds, lrs, choices = (
        np.concatenate([a, np.repeat(a[-1:], pad)]) for a in (seeds, lrs, choices)
    )
    tx = make_optimizer(cfg, cfg.epochs * (n // cfg.batch_size))
    position = {s: i for i, s in enumerate(cfg.seeds)} if len(x_train) > 1 else {}
    split = np.array([position.get(s, 0) for s in seeds], np.int32)  # each model's split
    distinct, order = np.unique(seeds, return_inverse=True)  # each model's data order
    mesh = jax.sharding.Mesh(np.array(devices), ("models",))
    per_model = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("models"))
    everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    lrs_dev, split, order = jax.device_put((lrs, split, order.ravel()), per_model)
    data = (*jax.device_put((x_train, y_train, x_val, y_val), everywhere), split, order)
    block = _block_size(cfg.epochs)
    # The training program depends on the shapes only, so it compiles on a worker thread while
    # the models are initialized: XLA compiles outside Python's lock, and the two overlap where
    # a core is free (the same program either way).
    graphdef, abstract_state = _abstract_state(run, m + pad, tx, per_model)
    epochs = np.arange(cfg.epochs, dtype=np.int32).reshape(-1, block)  # one row per block
    steps = n // cfg.batch_size
    abstract_batches = _placed(
        jax.ShapeDtypeStruct((block, steps, len(distinct), cfg.batch_size), np.int32), everywhere
    )
    with ThreadPoolExecutor(1) as worker:
        compiling = worker.submit(
            lambda: _train_block.lower(
                graphdef, tx, norm, data, lrs_dev, abstract_batches, abstract_state, epochs[0]
            ).compile()
        )
        _, params, stats = init_models(run, seeds, choices)
        params, stats = jax.device_put((params, stats), per_model)
        flags = (
            np.zeros(m + pad, bool),
            np.full(m + pad, -1, np.int32),
            np.zeros(m + pad, np.int32),
        )
        opt_state = jax.device_put(_zero_state(abstract_state.opt_state), per_model)
        state = ModelState(params, stats, opt_state, *jax.device_put(flags, per_model))
        order_keys = _keys(jax.device_put(distinct, _host()))[1]

        def batches(block_epochs):  # the block's batches, where the training program wants them
            drawn = _epoch_batches(order_keys, block_epochs, n=n, batch_size=cfg.batch_size)
            return jax.device_put(drawn, everywhere)

        next_batches = batches(epochs[0])
        jax.block_until_ready((state, next_batches))
        setup = time.perf_counter()
        run_block = compiling.result()
    compiled = time.perf_counter()
    history = []
    for b, block_epochs in enumerate(epochs):
        state, hist = run_block(norm, data, lrs_dev, next_batches, state, block_epochs)
        if b + 1 < len(epochs):  # drawn while the block trains
            next_batches = batches(epochs[b + 1])
        hist = jax.device_get(hist)
        history.append(hist)
        val = hist["val_acc"][-1]
        print(
            f"epoch {block_epochs[-1] + 1}/{cfg.epochs}: val_acc best {np.nanmax(val, initial=np.nan):.3f} "
            f"mean {np.nanmean(val) if np.isfinite(val).any() else np.nan:.3f}, "
            f"diverged {int(np.asarray(state.diverged)[:m].sum())}/{m}, {time.perf_counter() - start:.1f}s",
            file=log,
            flush=True,
        )
    history = {k: np.concatenate([h[k] for h in history])[:, :m] for k in history[0]}
    grad_norms_init = history.pop("grad_norms_first_step")[0]  # the very first step: at init
    # The trained models without the padding, on the host: the probes take them seed by seed,
    # and NumPy slices them without a compiled gather per shape.
    params, stats = jax.tree.map(lambda a: np.asarray(a)[:m], (state.params, state.stats))
    if shared is not None:
        graphdef, params, stats = _keep_norm(spec, graphdef, params, stats)
    return TrainResult(
        graphdef,
        params,
        stats,
        np.asarray(state.diverged)[:m],
        np.asarray(state.diverged_step)[:m],
        history,
        seeds[:m],
        lrs[:m],
        np.asarray(spec.activations)[choices[:m]],
        grad_norms_init,
        cfg.batch_size,
        {
            "init": setup - start,
            "compile": compiled - setup,
            "train": time.perf_counter() - compiled,
        },
    )
