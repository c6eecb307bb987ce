"""The MLP family of the study: input -> [Linear -> block] x depth -> Linear head.

The block combines one activation and one normalization in one of two orders:
`pre`  = Linear -> norm -> activation (the original BatchNorm paper's placement),
`post` = Linear -> activation -> norm.

`zscore` is BatchNorm without its learnable scale and shift: the plain z-scoring of the
pre-activations that the study's question is about. `batchnorm` and `zscore` are the
normalizations that use batch statistics in training mode and running statistics at inference
(vocab.BATCH_STAT_NORMS). The names and their properties live in `bnstudy.vocab`.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import normalization  # nnx.BatchNorm's steps: batch_norm's forward pass

from bnstudy import vocab


def _resolve(path: str | None):
    """The function at a dotted path such as "jax.nn.relu"; None is the identity."""
    if path is None:
        return lambda x: x
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# name -> function, from the vocabulary's dotted paths (vocab.ACTIVATIONS)
ACTIVATIONS = {k: _resolve(a.function) for k, a in vocab.ACTIVATIONS.items()}

BN_MOMENTUM = 0.9  # running-average decay; 0.9 (PyTorch's 0.1) settles within short runs
BN_EPSILON = 1e-5


class Choice(nnx.Variable):
    """Which of its spec's candidate activations a model of a family uses: an index, not trained."""


# The per-model state besides the trained parameters: BatchNorm's running statistics and, in a
# family, the activation choice. The trainer carries it beside the parameters.
STATE = (nnx.BatchStat, Choice)


def _choose(kind: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines one architecture of the grid, or a family of them. Validated on
    construction.

    `activation` is one name, or a tuple of names: a *family* of networks that differ only in
    their activation. The members share one graph (one compiled program trains them all), and
    each model picks its activation by its `Choice` index; all candidates are computed and the
    model's own is selected, so a member computes what it would compute alone.

    `norm` is one name, or a tuple of names: models that carry the layers of every candidate
    normalization and run one of them, the same for every model of a call (the `norm` index of
    `apply`; only that branch runs). Families that differ only in their normalization then share
    one compiled training program; `member_norm` gives each one's own architecture.
    """

    in_features: int
    num_classes: int
    activation: str | tuple[str, ...] = "relu"
    norm: str | tuple[str, ...] = "none"
    placement: str = "pre"
    depth: int = 2
    width: int = 64
    groups: int = vocab.TRAINING_DEFAULTS["groups"]  # groupnorm only

    def __post_init__(self):
        if not self.activations or len(set(self.activations)) != len(self.activations):
            raise ValueError(
                f"activations must be distinct and at least one, got {self.activation!r}"
            )
        for a in self.activations:
            _choose("activation", a, tuple(ACTIVATIONS))
        if not self.norms or len(set(self.norms)) != len(self.norms):
            raise ValueError(f"norms must be distinct and at least one, got {self.norm!r}")
        for n in self.norms:
            _choose("norm", n, tuple(vocab.NORMS))
        _choose("placement", self.placement, tuple(vocab.PLACEMENTS))
        for name in ("in_features", "depth", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if "groupnorm" in self.norms and (self.groups < 1 or self.width % self.groups):
            divisors = [g for g in range(1, self.width + 1) if self.width % g == 0]
            raise ValueError(
                f"groupnorm groups={self.groups} does not divide width={self.width}; "
                f"valid groups for this width: {divisors}"
            )

    @property
    def activations(self) -> tuple[str, ...]:
        """The candidate activations (one for a single architecture)."""
        return (self.activation,) if isinstance(self.activation, str) else tuple(self.activation)

    @property
    def norms(self) -> tuple[str, ...]:
        """The candidate normalizations (one for a single architecture)."""
        return (self.norm,) if isinstance(self.norm, str) else tuple(self.norm)

    def member(self, activation: str) -> ModelSpec:
        """The single architecture of this family with `activation`."""
        return replace(self, activation=activation)

    def member_norm(self, norm: str) -> ModelSpec:
        """This spec with the one normalization `norm`."""
        return replace(self, norm=norm)

    @property
    def uses_batch_stats(self) -> bool:
        (norm,) = self.norms
        return vocab.NORMS[norm].batch_stats

    @property
    def foldable(self) -> bool:
        """True when the inference-mode network (a single architecture) is one affine map of
        its input."""
        (activation,), (norm,) = self.activations, self.norms
        return vocab.ACTIVATIONS[activation].function is None and vocab.NORMS[norm].affine


def family_spec(
    family: dict, in_features: int, num_classes: int, placement: str, depth: int, width: int
) -> ModelSpec:
    """The spec of a training job's family (`bnstudy train --family`'s: its `activations`,
    `norm` and, for groupnorm, `groups`) on data of `in_features` and `num_classes`."""
    activations = family["activations"]
    return ModelSpec(
        in_features,
        num_classes,
        tuple(activations) if len(activations) > 1 else activations[0],
        family["norm"],
        placement,
        depth,
        width,
        family.get("groups", vocab.TRAINING_DEFAULTS["groups"]),
    )


def make_norm(spec: ModelSpec, rngs: nnx.Rngs):
    """One normalization layer of `spec` (None for "none"); with several candidate norms, a
    dict of one layer per candidate but "none"."""
    if len(spec.norms) > 1:
        layers = {n: make_norm(spec.member_norm(n), rngs) for n in spec.norms if n != "none"}
        _share_variables(layers.values())
        return nnx.Dict(layers)
    w = spec.width
    if spec.norm == "batchnorm":
        return nnx.BatchNorm(w, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
    if spec.norm == "zscore":
        return nnx.BatchNorm(
            w, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, use_scale=False, use_bias=False, rngs=rngs
        )
    if spec.norm == "layernorm":
        return nnx.LayerNorm(w, rngs=rngs)
    if spec.norm == "rmsnorm":
        return nnx.RMSNorm(w, rngs=rngs)
    if spec.norm == "groupnorm":
        return nnx.GroupNorm(w, num_groups=spec.groups, rngs=rngs)
    return None


def linear_sizes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(in_features, out_features) of every Linear layer, the input layer first, the head last."""
    sizes = [spec.in_features] + [spec.width] * spec.depth + [spec.num_classes]
    return list(zip(sizes[:-1], sizes[1:]))


def kernel_scale(fan_in: int) -> np.float32:
    """The standard deviation Flax's default kernel initializer (`lecun_normal`) scales its
    numbers by, as JAX's `variance_scaling` computes it in float32: the square root of 1 / fan-in
    over the standard deviation of a standard normal truncated to two."""
    return np.sqrt(np.float32(1.0 / fan_in)) / np.float32(0.87962566103423978)


def kernel_numbers(key, size: int) -> jax.Array:
    """`size` numbers of a standard normal truncated to [-2, 2], drawn as Flax's `lecun_normal`
    draws them. Under JAX's partitionable threefry (its default) the i-th number depends on the
    key and i alone: the first k of a longer draw are the draw of k (tests check bit for bit)."""
    return jax.random.truncated_normal(key, -2, 2, (size,), jnp.float32)


def lecun_normal_flat(key, shape, dtype=jnp.float32):
    """Flax's default kernel initializer (`lecun_normal`), drawn as a vector and reshaped to
    `shape`: the same numbers (`kernel_numbers`), and XLA compiles the draw in 0.2 s whatever the
    shape, against up to 0.5 s for a kernel whose last dimension is not a multiple of 8, such
    as a 10-class head (docs/speed.md)."""
    if jnp.dtype(dtype) != jnp.float32:
        raise ValueError(f"the models' kernels are float32, got {dtype}")
    return (kernel_numbers(key, math.prod(shape)) * kernel_scale(shape[0])).reshape(shape)


def _layer_rngs(key, index) -> nnx.Rngs:
    """The random stream Linear layer `index` of a model whose layers draw from `key` is built
    with: each layer's key is derived from the model's by the layer's index."""
    return nnx.Rngs(params=jax.random.fold_in(key, index))


def kernel_key(key, index):
    """The key Linear layer `index` draws its kernel from: the first that `nnx.Linear` takes
    from its stream (`init_linear`)."""
    return _layer_rngs(key, index).params()


def init_linear(key, index, in_features: int, out_features: int) -> nnx.Linear:
    """Linear layer `index` (the head is layer `depth`) of a model whose layers draw from `key`:
    its kernel from `kernel_key`, its bias zeros (Flax's default). For a given seed the Linear
    weights are then the same whatever the activation, norm and placement: cells of one seed
    differ only in their blocks (paired comparisons). `index` may be traced.

    The products are full float32 on every platform: GPUs would otherwise round their inputs to
    TensorFloat-32 (10-bit mantissa; JAX's default there), which adds a nonlinearity of about
    1e-3 relative to every network, and the probes measure affinity far below that. CPUs compute
    float32 either way (same numbers as without the setting)."""
    return nnx.Linear(
        in_features,
        out_features,
        precision=jax.lax.Precision.HIGHEST,
        kernel_init=lecun_normal_flat,
        rngs=_layer_rngs(key, index),
    )


def layer_key(init_key):
    """The key the layers of `init(spec, init_key)` draw from (`MLP` takes it from its Rngs)."""
    return nnx.Rngs(params=init_key).params()


def _share_variables(layers) -> None:
    """Give the candidate norm layers one Variable for each attribute they have in common (the
    scale, bias, mean and var of the same type and shape). A model runs one candidate at a time
    and every candidate starts its common attributes at the same values (Flax's initializers,
    which make_norm keeps: ones for scales and variances, zeros for biases and means;
    tests/test_engine.py checks), so the candidates can hold them in common: the model carries
    the Variables of one norm layer, not one set per candidate."""
    first = {}
    for layer in layers:
        for name, var in list(vars(layer).items()):
            if not isinstance(var, nnx.Variable):
                continue
            key = (name, type(var), var.shape, var.dtype)
            if key in first:
                setattr(layer, name, first[key])
            else:
                first[key] = var


class MLP(nnx.Module):
    """`depth` hidden blocks of `width` units and a linear head producing logits."""

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs, choice=0):
        self.spec = spec
        if len(spec.activations) > 1:
            self.choice = Choice(jnp.asarray(choice, jnp.int32))
        key = rngs.params()
        *hidden, head = [init_linear(key, k, i, o) for k, (i, o) in enumerate(linear_sizes(spec))]
        self.linears = nnx.List(hidden)
        self.norms = nnx.List(
            [
                make_norm(spec, nnx.Rngs(params=jax.random.fold_in(key, 10_000 + k)))
                for k in range(spec.depth)
            ]
            if spec.norms != ("none",)
            else []
        )
        self.head = head

    def _normalize(self, i: int, h, train: bool, mask, norm):
        names = self.spec.norms
        if len(names) == 1:
            return _run_norm(names[0], self.norms[i] if self.norms else None, h, train, mask)
        if norm is None:
            raise ValueError(f"a model with several candidate norms {names} runs one: pass `norm`")
        branches = [
            lambda layers, h, name=name: _run_norm(name, layers.get(name), h, train, mask)
            for name in names
        ]
        return nnx.switch(norm, branches, self.norms[i], h)

    def _activation(self):
        names = self.spec.activations
        if len(names) == 1:
            return ACTIVATIONS[names[0]]
        branches = [ACTIVATIONS[a] for a in names]
        return lambda h: jax.lax.switch(self.choice[...], branches, h)

    def __call__(self, x, train: bool = False, mask=None, norm=None):
        """Logits for a batch `x` of shape (batch, in_features).

        train=True: batch-statistics mode (BatchNorm normalizes with the statistics of this
        batch, restricted to the rows where `mask` (shape (batch, 1)) is True, and updates its
        running averages). train=False: inference mode (running statistics). `norm`: with
        several candidate normalizations, the index of the one to run (may be traced).
        """
        h = x
        act = self._activation()
        for i, linear in enumerate(self.linears):
            h = linear(h)
            if self.spec.placement == "pre":
                h = act(self._normalize(i, h, train, mask, norm))
            else:
                h = self._normalize(i, act(h), train, mask, norm)
        return self.head(h)


def _run_norm(name: str, layer, h, train: bool, mask):
    """Normalization `name` (its `layer`; None for "none") of the pre- or post-activations h."""
    if name == "none":
        return h
    if vocab.NORMS[name].batch_stats:
        if train and mask is None:
            return _batch_norm_train(layer, h)
        return layer(h, use_running_average=not train, mask=mask)
    return layer(h)


def _batch_norm_train(layer: nnx.BatchNorm, h):
    """`layer(h, use_running_average=False)` (no mask) with `batch_norm`'s closed-form gradient:
    the same outputs and running-average updates as Flax's, bit for bit."""
    scale = layer.scale[...] if layer.scale is not None else None
    bias = layer.bias[...] if layer.bias is not None else None
    y, mean, var = batch_norm(h, scale, bias, layer.epsilon)
    mean, var = jax.lax.stop_gradient((mean, var))  # state, not differentiated (as Flax)
    layer.mean[...] = layer.momentum * layer.mean[...] + (1 - layer.momentum) * mean
    layer.var[...] = layer.momentum * layer.var[...] + (1 - layer.momentum) * var
    return y


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm(x, scale, bias, epsilon: float):
    """BatchNorm in training mode over the rows of x (batch, features): (y, mean, var).

    The forward pass is Flax's (`nnx.BatchNorm`'s own statistics and normalization steps: the
    mean and the mean square over the batch, var = max(0, E[x^2] - E[x]^2), y = (x - mean) *
    (rsqrt(var + epsilon) * scale) + bias; `scale` and `bias` may be None). The backward pass
    is the closed form that cuDNN and PyTorch use, two sums over the batch and one elementwise
    pass,

        dx = scale * rstd * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n),

    xhat = (x - mean) * rstd, plus the cotangents of the returned mean and var. Autodiff of
    the forward pass computes the same derivative with more reductions and passes: the
    training step compiles to about a fifth fewer fusions and runs about 3% faster on the CPU
    (docs/speed.md). The two differ in rounding only, and where E[x^2] - E[x]^2 rounds below 0
    (a column constant over the batch, where x - mean is 0 and so is the term it multiplies).
    """
    return _batch_norm_fwd(x, scale, bias, epsilon)[0]


def _batch_norm_fwd(x, scale, bias, epsilon):
    # nnx.BatchNorm's own two steps (training mode, no mask), so its forward pass is Flax's
    mean, var = normalization._compute_stats(x, (0,), None)
    y = normalization._normalize(x, mean, var, scale, bias, (0,), (1,), None, epsilon)
    return (y, mean, var), (x, mean, jax.lax.rsqrt(var + epsilon), scale, bias)


def _batch_norm_bwd(epsilon, residuals, cotangents):
    x, mean, rstd, scale, bias = residuals
    dy, dmean, dvar = cotangents
    n = x.shape[0]
    centered = x - mean
    xhat = centered * rstd
    dbias = jnp.sum(dy, axis=0)
    dscale = jnp.sum(dy * xhat, axis=0)
    mul = rstd if scale is None else rstd * scale
    dx = mul * (dy - dbias / n - xhat * (dscale / n)) + (dmean + 2 * dvar * centered) / n
    return dx, None if scale is None else dscale, None if bias is None else dbias


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


def split(model: MLP):
    """(graphdef, params, state): the functional view the trainer vmaps over (state: STATE)."""
    return nnx.split(model, nnx.Param, STATE)


def apply(graphdef, params, stats, x, train: bool = False, mask=None, norm=None):
    """Pure forward pass: (logits, updated state)."""
    model = nnx.merge(graphdef, params, stats, copy=True)  # fresh Variables in this trace
    logits = model(x, train=train, mask=mask, norm=norm)
    return logits, nnx.state(model, STATE)


def init(spec: ModelSpec, key, choice=0):
    """(graphdef, params, state) of a freshly initialized MLP (in a family, the member with
    activation index `choice`); `key` and `choice` may be batched with vmap."""
    return split(MLP(spec, rngs=nnx.Rngs(params=key), choice=choice))


def activation_of(model: MLP) -> str:
    """The activation a model (unstacked) uses."""
    names = model.spec.activations
    return names[int(model.choice[...])] if len(names) > 1 else names[0]
