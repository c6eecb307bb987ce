"""Theory against closed forms, and the probes and layers of the study against the theory."""

import types

import jax
import numpy as np
import pytest
from flax import nnx

from bnstudy import models, probes, theory


def test_mean_field_gradient_growth_matches_the_published_closed_forms():
    # Yang et al. (2019): ReLU + BatchNorm, large batch: sqrt(pi / (pi - 1)) = 1.2112
    assert theory.bn_growth("relu") == pytest.approx(np.sqrt(np.pi / (np.pi - 1)), abs=5e-4)
    assert round(theory.bn_growth("relu"), 3) == round(float(np.sqrt(np.pi / (np.pi - 1))), 3)
    assert theory.bn_growth("identity") == pytest.approx(1.0, abs=1e-6)  # the linear case
    # LeCun-normal weights without normalization: ReLU halves the second moment per layer
    assert theory.plain_growth("relu") == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert theory.plain_growth("identity") == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("m", [2, 4, 16])
def test_conditional_probe_of_a_hand_built_batchnorm_unit_is_the_closed_form(m):
    """One input, one z-score unit, a head that copies it: the conditional function with m - 1
    fixed batch-mates is Proposition 3's g, strictly inside the bound sqrt(m - 1)."""
    spec = models.ModelSpec(1, 2, "identity", "zscore", "pre", 1, 1)
    model = models.MLP(spec, rngs=nnx.Rngs(0))
    model.linears[0].kernel[...] = np.ones((1, 1), np.float32)
    model.linears[0].bias[...] = np.zeros(1, np.float32)
    model.head.kernel[...] = np.array([[1.0, 0.0]], np.float32)
    model.head.bias[...] = np.zeros(2, np.float32)
    graphdef, params, stats = models.split(model)
    stack = lambda tree: jax.tree.map(lambda a: a[None], tree)  # noqa: E731
    rng = np.random.default_rng(m)
    mates = rng.normal(size=(m - 1, 1)).astype(np.float32)
    z = np.linspace(-30, 30, 121, dtype=np.float32)[:, None]
    out = probes.conditional_logits(graphdef, stack(params), stack(stats), z, mates)[0, :, 0]
    expected = theory.conditional_z(z[:, 0], mates[:, 0], models.BN_EPSILON)
    np.testing.assert_allclose(out, expected, rtol=2e-3, atol=2e-4)
    assert np.abs(out).max() <= np.sqrt(m - 1) + 1e-6  # Samuelson's bound (float32) ...
    assert (np.abs(expected) < np.sqrt(m - 1)).all()  # ... strict for epsilon > 0
    assert np.abs(out).max() > 0.9 * np.sqrt(m - 1)  # and approached far from the mates
    if m == 2:  # a smoothed sign of the offset from the one batch-mate
        np.testing.assert_allclose(np.abs(out[np.abs(z[:, 0] - mates[0, 0]) > 1]), 1, atol=1e-4)


def test_groupnorm_with_two_units_per_group_is_a_sign_and_with_one_a_constant():
    """Proposition 5(b): LayerNorm of two units is (sign(a - b), sign(b - a)); GroupNorm with two
    units per group applies it to each pair. One unit per group leaves only the shift."""
    x = np.array([[3.0, -1.0, 0.5, 2.0], [-2.0, 4.0, 7.0, -7.0]], np.float32)
    pairs = nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0))(x)
    expected = np.sign(np.stack([x[:, 0] - x[:, 1], x[:, 1] - x[:, 0]], 1))
    np.testing.assert_allclose(pairs[:, :2], expected, atol=1e-3)
    np.testing.assert_allclose(pairs[:, 2:], np.sign(x[:, 2:] - x[:, 2:][:, ::-1]), atol=1e-3)
    single = nnx.GroupNorm(4, num_groups=4, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(single(x), np.zeros_like(x), atol=1e-6)  # the shift, 0 at init


@pytest.mark.parametrize("batch_size", [6, 32])
def test_identity_batchnorm_gradients_grow_at_proposition_6s_finite_batch_rate(batch_size):
    """The study's own network and probe at initialization: a wide, deep identity + BatchNorm
    MLP on 8-dimensional inputs. Its kernels' gradient norms grow towards the input by
    sqrt((r - 1) / (r - 2)) per layer, r = min(B - 1, 8): 1.155 at B = 6 (the batch caps r) and
    1.080 at B = 32 (the inputs cap r), far from the large-batch limit 1 and, at B = 32, from
    the uncapped sqrt((B - 2) / (B - 3)) = 1.017."""
    rng = np.random.default_rng(0)
    seeds = np.arange(4)
    splits = {
        int(s): types.SimpleNamespace(
            x_train=rng.normal(size=(256, 8)).astype(np.float32), y_train=rng.integers(0, 4, 256)
        )
        for s in seeds
    }
    depth = 12
    spec = models.ModelSpec(8, 4, "identity", "batchnorm", "pre", depth, 256)
    norms = probes.init_gradient_norms(spec, seeds, np.zeros(4, np.int32), splits, [batch_size])
    inner = np.arange(2, depth - 2)  # away from the input layer and the head
    slope = np.polyfit(inner, np.log(norms[batch_size][:, inner]).mean(0), 1)[0]
    predicted = theory.linear_bn_growth(batch_size, rank=8)
    assert predicted == pytest.approx(1.1547 if batch_size == 6 else 1.0801, abs=1e-4)
    assert np.exp(-slope) == pytest.approx(predicted, rel=0.02)
    assert abs(np.exp(-slope) - predicted) < 0.25 * (predicted - theory.linear_bn_growth(10**6))
    if batch_size == 32:
        uncapped = theory.linear_bn_growth(batch_size)
        assert abs(np.exp(-slope) - predicted) < 0.5 * abs(np.exp(-slope) - uncapped)


def test_predicted_growth_per_network():
    assert theory.linear_bn_growth(4) == pytest.approx(np.sqrt(2))
    assert theory.linear_bn_growth(3) == np.inf  # r = 2: E[1 / chi^2_2] diverges
    assert theory.predicted_growth("identity", "batchnorm", "pre", 64, rank=40) == (
        pytest.approx(np.sqrt(39 / 38)),
        True,
    )
    assert theory.predicted_growth("relu", "batchnorm", "pre", 16) == (
        pytest.approx(theory.bn_growth("relu")),
        False,  # only the large-batch limit is known
    )
    assert theory.predicted_growth("relu", "none", "pre", 16) == (pytest.approx(np.sqrt(0.5)), True)
    assert np.isnan(theory.predicted_growth("identity", "layernorm", "pre", 16)[0])
