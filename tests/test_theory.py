"""Theory against closed forms, and the probes and layers of the study against the theory."""

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
    model.linears[0].kernel.value = np.ones((1, 1), np.float32)
    model.linears[0].bias.value = np.zeros(1, np.float32)
    model.head.kernel.value = np.array([[1.0, 0.0]], np.float32)
    model.head.bias.value = np.zeros(2, np.float32)
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
