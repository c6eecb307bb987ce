"""Theoretical predictions the paper puts beside its measurements.

- `bn_growth(activation)`: the factor per added layer by which the gradient norm grows at
  initialization in a wide, batch-normalized network in the large-batch limit (the mean-field
  theory of Yang et al., 2019). BatchNorm makes every pre-activation z ~ N(0, 1); backpropagating
  through the activation multiplies a gradient's second moment by E[phi'(z)^2], and through the
  next layer's weights and BatchNorm divides it by the batch variance of that layer's input,
  Var[phi(z)] (the weight scale cancels). Per layer the norm grows by
  sqrt(E[phi'(z)^2] / Var[phi(z)]): sqrt(pi / (pi - 1)) = 1.21 for ReLU, 1 for the identity.
- `plain_growth(activation)`: the same factor without normalization under LeCun-normal weights
  (variance 1 / fan-in), sqrt(E[phi'(h)^2]); for a positively homogeneous activation such as ReLU
  it does not depend on the pre-activations' scale: sqrt(1/2) for ReLU (He et al., 2015).
- `linear_bn_growth(batch_size, rank)`: the identity + BatchNorm factor at a finite batch B,
  sqrt((r - 1) / (r - 2)) with r = min(B - 1, features, width) (the paper's Proposition 6,
  derived under the same mean-field assumptions): sqrt((B - 2) / (B - 3)) when the batch is the
  cap; it tends to `bn_growth("identity")` = 1 as r grows and is infinite for r <= 2.
- `conditional_z(z, mates, epsilon)`: Proposition 3's closed form, the z-score of one example's
  pre-activation z in a batch with fixed batch-mates.

Expectations over N(0, 1) are integrated with scipy (split at 0, where ReLU has its kink); the
activations are the study's own (bnstudy.vocab), their derivatives from JAX.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import integrate, stats

from bnstudy import vocab


@cache
def _phi(activation: str):
    """(phi, phi') of a vocabulary activation as float -> float functions."""
    import importlib

    import jax

    path = vocab.ACTIVATIONS[activation].function
    if path is None:
        return (lambda z: z), (lambda z: 1.0)
    module, name = path.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    f = jax.jit(fn)
    df = jax.jit(jax.grad(fn))
    return (lambda z: float(f(np.float32(z)))), (lambda z: float(df(np.float32(z))))


def gaussian_mean(g) -> float:
    """E[g(Z)] for Z ~ N(0, 1), integrated on both half-lines (kinks at 0 are common)."""
    pdf = stats.norm.pdf
    left = integrate.quad(lambda z: g(z) * pdf(z), -np.inf, 0, limit=200)[0]
    right = integrate.quad(lambda z: g(z) * pdf(z), 0, np.inf, limit=200)[0]
    return left + right


def bn_growth(activation: str) -> float:
    """Mean-field growth per layer of the gradient norm at initialization with BatchNorm before
    the activation, large batch: sqrt(E[phi'(z)^2] / Var[phi(z)]), z ~ N(0, 1)."""
    phi, dphi = _phi(activation)
    mean = gaussian_mean(phi)
    var = gaussian_mean(lambda z: phi(z) ** 2) - mean**2
    return float(np.sqrt(gaussian_mean(lambda z: dphi(z) ** 2) / var))


def plain_growth(activation: str) -> float:
    """Growth per layer of the gradient norm at initialization without normalization, LeCun-normal
    weights: sqrt(E[phi'(h)^2]) with h ~ N(0, 1) (exact at any scale for ReLU-like activations)."""
    _, dphi = _phi(activation)
    return float(np.sqrt(gaussian_mean(lambda z: dphi(z) ** 2)))


def linear_bn_growth(batch_size: int, rank: int | None = None) -> float:
    """Growth per layer of the Linear kernels' gradient norms at initialization of an identity +
    BatchNorm network at batch size B (the paper's Proposition 6): sqrt((r - 1) / (r - 2)), with
    r = min(B - 1, rank) the dimension of the centred batch representation (`rank`: the inputs'
    and the width's cap, min(features, width); none: B - 1), infinite for r <= 2. With r = B - 1,
    sqrt((B - 2) / (B - 3)).

    Identity layers and BatchNorm keep each unit's batch vector in the r-dimensional span S of
    the centred inputs. If each unit's pre-activations are an isotropic Gaussian h on S (the
    fixed point) and gradients are independent of the forward pass (Yang et al., 2019), the
    BatchNorm Jacobian sqrt(B) / |h| (I - 11'/B - uu'), u = h / |h|, multiplies the squared norm
    of a gradient's component in S by B E[1 / |h|^2] (1 - 1/r) = (r - 1) / (r - 2) per layer
    (E[1 / chi^2_r] = 1 / (r - 2); the weights' scale cancels), and a kernel's gradient sees
    only that component."""
    r = batch_size - 1 if rank is None else min(batch_size - 1, rank)
    if r <= 2:
        return float("inf")
    return float(np.sqrt((r - 1) / (r - 2)))


def predicted_growth(
    activation: str, norm: str, placement: str, batch_size: int, rank: int | None = None
) -> tuple[float, bool]:
    """(factor, exact at this batch size) of the gradient norm's growth per layer at
    initialization: identity + batch statistics at batch B (`linear_bn_growth`, with `rank` the
    cap min(features, width), exact); another
    activation with batch statistics before it (`bn_growth`, the large-batch limit only: not
    exact at B); no norm (`plain_growth`, any B); (nan, False) for the per-example norms and for
    a norm after the activation, which have no prediction here."""
    if norm in vocab.BATCH_STAT_NORMS and (placement == "pre" or activation == "identity"):
        if activation == "identity":
            return linear_bn_growth(batch_size, rank), True
        return bn_growth(activation), False
    if norm == "none":
        return plain_growth(activation), True
    return float("nan"), False


def conditional_z(z, mates, epsilon: float) -> np.ndarray:
    """Proposition 3: the z-score of pre-activation z (array) in one batch with the fixed `mates`
    (m - 1 values): (m - 1) t / sqrt(A + (m - 1) t^2), t = z - mean(mates),
    A = m S + m^2 epsilon, S the mates' sum of squared deviations; bounded by sqrt(m - 1)."""
    mates = np.asarray(mates, np.float64)
    m = len(mates) + 1
    t = np.asarray(z, np.float64) - mates.mean()
    a = m * ((mates - mates.mean()) ** 2).sum() + m**2 * epsilon
    return (m - 1) * t / np.sqrt(a + (m - 1) * t**2)
