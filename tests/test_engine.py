"""The training engine and its probes, on real (small) training runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx
from flax.nnx.nn import normalization  # nnx.BatchNorm's steps, for its autodiff gradient

from bnstudy import data, models, probes, train, vocab

QUIET = open("/dev/null", "w")


@pytest.fixture(scope="module")
def spirals():
    return data.prepare("spirals", seed=0)


@pytest.fixture(scope="module")
def mnist1d():
    return data.prepare("mnist1d", seed=0, n_samples=2000)


def fit(
    ds,
    activation,
    norm,
    placement="pre",
    depth=2,
    width=32,
    seeds=(0, 1),
    lrs=(1e-2,),
    epochs=8,
    batch_size=64,
    **kw,
):
    spec = models.ModelSpec(
        ds.x_train.shape[1], ds.num_classes, activation, norm, placement, depth, width
    )
    cfg = train.TrainConfig(seeds=seeds, lrs=lrs, epochs=epochs, batch_size=batch_size, **kw)
    return spec, train.train(spec, cfg, ds.x_train, ds.y_train, ds.x_val, ds.y_val, log=QUIET)


@pytest.mark.parametrize("norm", ["batchnorm", "zscore", "none"])
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_identity_network_folds_into_one_affine_map(mnist1d, norm, placement):
    spec, r = fit(mnist1d, "identity", norm, placement, depth=3)
    assert spec.foldable
    # Training moved the running statistics away from their (0, 1) start, so the fold is not trivial.
    if norm != "none":
        var = np.asarray(r.stats["norms"][0]["var"][...])
        assert np.abs(var - 1).max() > 0.1
    check = probes.fold_check(r.graphdef, r.params, r.stats, mnist1d.x_test)
    assert np.all(check["fold_rel_dev"] < 1e-5), check
    assert np.all(check["fold_agreement"] == 1.0)
    w, b = probes.fold(r.graphdef, probes.unstack(r.params, 0), probes.unstack(r.stats, 0))
    assert w.shape == (mnist1d.x_train.shape[1], mnist1d.num_classes) and b.shape == (
        mnist1d.num_classes,
    )
    # ... and the affinity gap of these networks is float noise.
    assert np.all(probes.affinity_gap(r.graphdef, r.params, r.stats, mnist1d.x_test) < 1e-5)


def test_fold_refuses_a_nonlinear_network(mnist1d):
    _, r = fit(mnist1d, "relu", "batchnorm", epochs=1, seeds=(0,))
    with pytest.raises(ValueError, match="only identity activation"):
        probes.fold(r.graphdef, probes.unstack(r.params, 0), probes.unstack(r.stats, 0))


@pytest.mark.parametrize(
    "activation,norm", [("identity", "layernorm"), ("identity", "rmsnorm"), ("relu", "none")]
)
def test_nonlinear_networks_have_a_large_affinity_gap(mnist1d, activation, norm):
    _, r = fit(mnist1d, activation, norm)
    gap = probes.affinity_gap(r.graphdef, r.params, r.stats, mnist1d.x_test)
    assert np.all(gap > 1e-2), gap  # four or more orders of magnitude above float noise


def test_the_affinity_gap_of_constant_logits_is_undefined():
    """A collapsed network (logits that do not vary over the inputs) has no spread to measure
    its midpoint defect against: NaN, without a warning; an affine map's gap is ~0."""
    import warnings

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 10, 3))
    affine = np.concatenate([x, rng.standard_normal((2, 10, 3))], 1)
    affine = np.concatenate([affine, (affine[:, :10] + affine[:, 10:]) / 2], 1) @ np.ones((3, 4))
    constant = np.ones((1, 30, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gaps = probes.gap_of(np.concatenate([affine, constant]))
    assert np.all(gaps[:2] < 1e-12) and np.isnan(gaps[2])


def test_relu_learns_spirals_but_batchnorm_alone_stays_linear(spirals):
    _, relu = fit(spirals, "relu", "none", depth=3, width=64, lrs=(1e-2,), epochs=60)
    _, bn = fit(spirals, "identity", "batchnorm", depth=3, width=64, lrs=(1e-2,), epochs=60)
    _, relu_acc = probes.evaluate(
        relu.graphdef, relu.params, relu.stats, spirals.x_test, spirals.y_test
    )
    _, bn_acc = probes.evaluate(bn.graphdef, bn.params, bn.stats, spirals.x_test, spirals.y_test)
    assert np.all(relu_acc > 0.9), relu_acc  # the noisy spiral centres overlap: ~4% Bayes error
    assert np.all(np.abs(bn_acc - 0.5) < 0.15), bn_acc  # two balanced classes: chance is 0.5


def test_batch_statistics_make_predictions_depend_on_the_batch(mnist1d):
    spec, r = fit(mnist1d, "identity", "batchnorm", epochs=10)
    records = probes.batch_stat_probe(
        r.graphdef, r.params, r.stats, mnist1d.x_test, mnist1d.y_test, [2, 8, 32, "full"], seed=0
    )
    out = {
        (rec["composition"], "full" if rec["full"] else rec["test_batch_size"]): rec
        for rec in records
    }
    assert len(records) == 4 * 2
    assert out[("random", "full")]["test_batch_size"] == len(mnist1d.y_test)
    flip = lambda b: out[("random", b)]["flip_rate"]  # noqa: E731
    acc = lambda comp, b: out[(comp, b)]["accuracy"]  # noqa: E731
    assert np.all(flip(2) > 0.1), flip(2)
    # the flip rate among confident predictions is a share of those (NaN if there are none)
    sure = out[("random", 2)]["flip_rate_confident"]
    assert np.all(np.isnan(sure) | ((sure >= 0) & (sure <= 1))), sure
    assert np.all(np.isnan(out[("random", "full")]["flip_rate_confident"]))
    assert np.all(flip(2) > flip(32))  # the cross-example effect fades with size
    assert np.all(np.isnan(flip("full"))) and np.all(np.isnan(out[("class", 2)]["flip_rate"]))
    assert np.all(acc("random", 2) < acc("random", "full"))
    # One class per batch removes the class signal the batch statistics would carry.
    assert np.all(acc("class", 32) < acc("random", 32) - 0.05)
    # Inference mode does not depend on the batch at all.
    a = probes.logits(r.graphdef, r.params, r.stats, mnist1d.x_test[:50])
    b = probes.logits(r.graphdef, r.params, r.stats, mnist1d.x_test[:2])
    np.testing.assert_allclose(a[:, :2], b, rtol=1e-5, atol=1e-5)
    # `measure` gives the probe which test examples are confident from its own forward pass:
    # the same records, seed by seed, as the probe computing them itself, for the models asked.
    sizes = [2, 8, 32, "full"]
    splits = {0: mnist1d, 1: mnist1d}
    _, _, confident = probes.measure(spec, r, splits)
    _, measured = probes.measure_batch_stats(spec, r, splits, [0, 1], sizes, confident)
    cond, only = probes.measure_batch_stats(spec, r, splits, [1], sizes, confident, conditional=8)
    assert [rec["models"].tolist() for rec in only] == [[1]] * 8  # only the models asked for
    assert np.isnan(cond["cond_test_acc"][0]) and 0 < cond["cond_test_acc"][1] <= 1
    for seed in (0, 1):
        idx = np.flatnonzero(r.seeds == seed)
        alone = probes.batch_stat_probe(
            r.graphdef,
            probes.unstack(r.params, idx),
            probes.unstack(r.stats, idx),
            mnist1d.x_test,
            mnist1d.y_test,
            sizes,
        )
        ours = [rec for rec in measured if np.array_equal(rec["models"], idx)]
        assert len(ours) == len(alone) == 8
        for a, b in zip(ours, alone):
            assert set(a) - {"models"} == set(b)
            for key in b:
                np.testing.assert_array_equal(a[key], b[key])
    # The probe sees every model and gives NaN (not a crash) for batches larger than the set.
    big = probes.batch_stat_probe(
        r.graphdef, r.params, r.stats, mnist1d.x_test[:100], mnist1d.y_test[:100], [512], seed=0
    )
    assert all(np.isnan(rec["accuracy"]).all() and rec["test_batch_size"] == 512 for rec in big)


@pytest.mark.parametrize("n, size", [(400, 256), (10, 4), (12, 4), (5, 5)])
def test_batch_statistics_score_every_test_example_once_in_full_batches(n, size):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    for batches in (probes.random_batches(n, size, rng), probes.class_batches(y, size // 2, rng)):
        width = len(batches[0])
        assert all(len(b) == width for b in batches)  # every batch has its full size
        idx, mask = probes._pad_rows(batches, len(batches), width)
        preds = np.arange(idx.size).reshape(1, *idx.shape)  # a distinct "prediction" per slot
        scored = probes._per_example(preds, idx, mask, n)
        assert (scored >= 0).all()  # every example scored (no dropped remainder) ...
        assert len(np.unique(scored)) == n  # ... each from one batch position of its own


def test_the_batch_statistics_probe_skips_only_steps_of_padding_rows():
    # 7 rows, 2 a step: steps (0, 1), (2, 3), (4, 5) and (6, a filler row). Rows 3 to 6 are
    # padding (nothing masked in); row 3 shares its step with a scored row.
    idx = np.arange(1, 22, dtype=np.int32).reshape(7, 3)
    mask = np.zeros((7, 3), bool)
    mask[:3, :2] = True
    f = lambda rows, m: rows * 10 + m  # noqa: E731  (nonzero on padding rows too)
    ours = np.asarray(jax.jit(probes._map_scored, static_argnums=(0, 3))(f, idx, mask, 2))
    lax_map = np.asarray(jax.lax.map(lambda a: f(*a), (idx, mask), batch_size=2))
    assert ours.shape == idx.shape
    np.testing.assert_array_equal(ours[:4], lax_map[:4])  # steps with a scored row: computed
    assert (ours[4:] == 0).all() and (lax_map[4:] != 0).all()  # padding steps: skipped
    # The mask is the same for every model: under the models' vmap the skip stays a branch (a
    # select would compute both sides).
    per_model = lambda a: probes._map_scored(lambda r, m: r * a + m, idx, mask, 2)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(jax.vmap(per_model))(np.arange(3, dtype=np.int32)))
    assert "cond[" in jaxpr and "select_n" not in jaxpr


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_a_cell_trains_to_the_same_numbers_alone_or_in_its_family(mnist1d, norm):
    family, f = fit(mnist1d, ("identity", "relu", "tanh"), norm, lrs=(1e-3, 1e-2), epochs=5)
    assert list(f.activations) == ["identity"] * 4 + ["relu"] * 4 + ["tanh"] * 4
    np.testing.assert_array_equal(f.seeds, np.tile([0, 0, 1, 1], 3))
    _, fam_acc = probes.evaluate(f.graphdef, f.params, f.stats, mnist1d.x_test, mnist1d.y_test)
    fam_kernel = np.asarray(f.params["head"]["kernel"][...])
    for k, activation in enumerate(family.activations):
        _, alone = fit(mnist1d, activation, norm, lrs=(1e-3, 1e-2), epochs=5)
        _, acc = probes.evaluate(
            alone.graphdef, alone.params, alone.stats, mnist1d.x_test, mnist1d.y_test
        )
        members = slice(4 * k, 4 * k + 4)
        # One program for the family, another for the cell: the same arithmetic up to float
        # rounding in how XLA fuses it. Weights and training-mode curves agree to ~1e-7
        # (measured: at most 3.6e-7). Inference mode can differ by a few examples with
        # BatchNorm: the Linear bias before it has a zero gradient but for rounding, which Adam
        # turns into steps of size lr, and the running mean follows that bias with a lag
        # (measured: at most 3 of 400 test examples).
        kernel = np.asarray(alone.params["head"]["kernel"][...])
        np.testing.assert_allclose(kernel, fam_kernel[members], atol=1e-5)
        for key in ("train_loss", "train_acc"):
            np.testing.assert_allclose(alone.history[key], f.history[key][:, members], atol=1e-5)
        tolerance = 0.0 if norm == "none" else 0.0125  # 5 of 400 test examples
        np.testing.assert_allclose(acc, fam_acc[members], atol=tolerance)


def test_rounds_at_other_rates_and_norms_run_one_program(mnist1d, caplog):
    """Edge-extension rounds of a job: the same activations at other rates, for families of
    other norms (train.train's `shared`), run the program the first compiled; the optimizer is
    cached per optimizer settings, not per rates. Each round trains as it would alone."""
    shared = models.ModelSpec(40, 10, "relu", ("none", "batchnorm"), "pre", 2, 32)
    cfg = train.TrainConfig(seeds=(0, 1), lrs=(1e-3, 1e-2), epochs=3)
    other = dataclasses.replace(cfg, lrs=(3e-2, 1e-1))
    split = (mnist1d.x_train, mnist1d.y_train, mnist1d.x_val, mnist1d.y_val)
    jax.config.update("jax_log_compiles", True)  # global: the program compiles on a worker thread
    try:
        with caplog.at_level("WARNING"):
            train.train(shared.member_norm("none"), cfg, *split, log=QUIET, shared=shared)
            both = train.train(
                shared.member_norm("batchnorm"), other, *split, log=QUIET, shared=shared
            )
    finally:
        jax.config.update("jax_log_compiles", False)
    compiles = [r for r in caplog.records if "compilation of jit(_train_block)" in r.getMessage()]
    assert len(compiles) == 1  # the second round ran the first one's program
    np.testing.assert_allclose(both.lrs, np.tile([3e-2, 1e-1], 2), rtol=1e-6)
    alone = train.train(shared.member_norm("batchnorm"), other, *split, log=QUIET)
    # up to float rounding, as the families of several norms below
    np.testing.assert_allclose(
        both.params["head"]["kernel"], alone.params["head"]["kernel"], atol=1e-5
    )
    for key in ("train_loss", "train_acc"):
        np.testing.assert_allclose(both.history[key], alone.history[key], atol=1e-5)


def test_families_of_several_norms_share_one_program_and_train_as_alone(mnist1d, caplog):
    """train(shared=...): the models carry the layers of every candidate norm and run their
    own; one compiled program serves every norm, and each family comes back as its own models,
    trained as alone up to float rounding (the tolerances of the activation family above)."""
    norms = ("none", "batchnorm", "layernorm", "groupnorm")
    shared = models.ModelSpec(40, 10, ("identity", "relu"), norms, "post", 2, 32, groups=4)
    cfg = train.TrainConfig(seeds=(0, 1), lrs=(1e-3, 1e-2), epochs=5)
    split = (mnist1d.x_train, mnist1d.y_train, mnist1d.x_val, mnist1d.y_val)
    # (the global flag: the program compiles on a worker thread, which a context would not reach)
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level("WARNING"):
            shared_runs = [
                train.train(shared.member_norm(n), cfg, *split, log=QUIET, shared=shared)
                for n in norms
            ]
    finally:
        jax.config.update("jax_log_compiles", False)
    compiles = [r for r in caplog.records if "compilation of jit(_train_block)" in r.getMessage()]
    assert len(compiles) == 1  # one program trained the four families
    for norm, both in zip(norms, shared_runs):
        alone = train.train(shared.member_norm(norm), cfg, *split, log=QUIET)
        assert both.graphdef == alone.graphdef
        assert jax.tree.structure((both.params, both.stats)) == jax.tree.structure(
            (alone.params, alone.stats)
        )
        np.testing.assert_allclose(
            both.params["head"]["kernel"], alone.params["head"]["kernel"], atol=1e-5
        )
        for key in ("train_loss", "train_acc"):
            np.testing.assert_allclose(both.history[key], alone.history[key], atol=1e-5)
        accs = [
            probes.evaluate(r.graphdef, r.params, r.stats, mnist1d.x_test, mnist1d.y_test)[1]
            for r in (both, alone)
        ]
        np.testing.assert_allclose(*accs, atol=0.0 if norm == "none" else 0.0125)
    # The probes run them as models of `shared` too (train.as_shared, undone by _keep_norm):
    # one compiled program per probe for every family, the same measures up to float rounding.
    splits = {s: mnist1d for s in cfg.seeds}

    def probe(spec, r, shared=None):  # every model: the scalars and the batch-statistics records
        scalars, _, confident = probes.measure(spec, r, splits, shared=shared)
        if not spec.uses_batch_stats:
            return scalars, []
        every = np.arange(len(r.seeds))
        return scalars, probes.measure_batch_stats(
            spec, r, splits, every, [8], confident, shared=shared
        )[1]

    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level("WARNING"):
            caplog.clear()
            together = [
                probe(shared.member_norm(n), r, shared=shared) for n, r in zip(norms, shared_runs)
            ]
    finally:
        jax.config.update("jax_log_compiles", False)
    compiled = [r.getMessage() for r in caplog.records if "compilation of jit(" in r.getMessage()]
    count = lambda name: sum(f"jit({name})" in c for c in compiled)  # noqa: E731
    # the splits and affinity inputs, for every family (the batch-statistics probe reads the
    # test set's logits from that pass; each family with its own programs: four)
    assert count("_forward") == 1
    assert count("_batch_stat_predict") == 1
    for norm, r, (scalars, batch) in zip(norms, shared_runs, together):
        own_scalars, own_batch = probe(shared.member_norm(norm), r)
        assert scalars.keys() == own_scalars.keys() and len(batch) == len(own_batch)
        for key, values in scalars.items():
            np.testing.assert_allclose(values, own_scalars[key], rtol=1e-5, atol=1e-6)
        for record, own in zip(batch, own_batch):
            np.testing.assert_allclose(record["accuracy"], own["accuracy"], atol=0.0125)
        union = train.as_shared(shared, r.graphdef, r.params, r.stats)
        back = train._keep_norm(shared.member_norm(norm), *union)
        assert back[0] == r.graphdef
        jax.tree.map(np.testing.assert_array_equal, back[1:], (r.params, r.stats))
    with pytest.raises(ValueError, match="is not .* with several candidate norms"):
        train.as_shared(shared.member_norm("none"), r.graphdef, r.params, r.stats)
    with pytest.raises(ValueError, match="is not .* with several candidate norms"):
        train.train(shared.member_norm("zscore"), cfg, *split, log=QUIET, shared=shared)
    with pytest.raises(ValueError, match="train one norm at a time"):
        train.train(shared, cfg, *split, log=QUIET)


def test_candidate_norms_hold_their_common_variables_in_one():
    """With several candidate norms, the candidates share each attribute they have in common
    (scale, bias, mean, var): sound because each starts it at the same values, which this checks
    for every norm; the model then carries one norm layer's Variables, not one set per norm."""
    from flax import nnx

    names = tuple(n for n in vocab.NORMS if n != "none")
    spec = models.ModelSpec(6, 3, "relu", ("none", *names), "pre", 2, 8, groups=4)
    first = {}
    for name in names:
        layer = models.make_norm(spec.member_norm(name), nnx.Rngs(0))
        for attr, var in vars(layer).items():
            if isinstance(var, nnx.Variable):
                key = (attr, type(var), var.shape)
                np.testing.assert_array_equal(var[...], first.setdefault(key, var[...]))
    graphdef, params, stats = models.init(spec, jax.random.key(0))
    with pytest.raises(ValueError, match="several candidate norms .* pass `norm`"):
        models.apply(graphdef, params, stats, np.ones((4, 6), np.float32))
    _, bn_params, bn_stats = models.init(spec.member_norm("batchnorm"), jax.random.key(0))
    for state, bn in ((params, bn_params), (stats, bn_stats)):
        shapes = [a.shape for a in jax.tree.leaves(nnx.to_pure_dict(state)["norms"])]
        assert shapes == [a.shape for a in jax.tree.leaves(nnx.to_pure_dict(bn)["norms"])]


def test_each_seed_trains_on_its_own_split_as_it_would_alone():
    pool = data.pool("mnist1d", n_samples=1000)
    splits = [data.split(pool, s) for s in (3, 5)]
    stacked = {
        k: np.stack([getattr(ds, k) for ds in splits])
        for k in ("x_train", "y_train", "x_val", "y_val")
    }
    # no BatchNorm: its inference mode may differ by an example between two programs (see above)
    spec = models.ModelSpec(40, 10, "relu", "none", "pre", 2, 16)
    cfg = train.TrainConfig(seeds=(3, 5), lrs=(1e-3, 1e-2), epochs=3)
    both = train.train(spec, cfg, **stacked, log=QUIET)
    for i, (seed, ds) in enumerate(zip((3, 5), splits)):
        alone_cfg = train.TrainConfig(seeds=(seed,), lrs=(1e-3, 1e-2), epochs=3)
        alone = train.train(spec, alone_cfg, ds.x_train, ds.y_train, ds.x_val, ds.y_val, log=QUIET)
        mine = slice(2 * i, 2 * i + 2)
        for key in ("train_loss", "val_acc"):
            np.testing.assert_allclose(both.history[key][:, mine], alone.history[key], atol=1e-5)
    with pytest.raises(ValueError, match="2 stacked splits for 3 seeds"):
        train.train(spec, train.TrainConfig(seeds=(1, 2, 3)), **stacked, log=QUIET)


def test_same_seed_gives_identical_results(mnist1d):
    _, a = fit(mnist1d, "relu", "batchnorm", lrs=(1e-3, 1e-2), epochs=3)
    _, b = fit(mnist1d, "relu", "batchnorm", lrs=(1e-3, 1e-2), epochs=3)
    for key in a.history:
        np.testing.assert_array_equal(a.history[key], b.history[key])
    for x, y in zip(
        np.asarray(a.params["head"]["kernel"][...]), np.asarray(b.params["head"]["kernel"][...])
    ):
        np.testing.assert_array_equal(x, y)
    # ... while another seed gives other numbers.
    _, c = fit(mnist1d, "relu", "batchnorm", seeds=(2, 3), lrs=(1e-3, 1e-2), epochs=3)
    assert not np.array_equal(a.history["train_loss"], c.history["train_loss"])


SPLIT_OVER_DEVICES = """
import sys
import jax
import numpy as np
jax.config.update("jax_num_cpu_devices", 2)
from bnstudy import data, models, train
ds = data.prepare("mnist1d", seed=0, n_samples=2000)
spec = models.ModelSpec(ds.x_train.shape[1], ds.num_classes, ("relu", "tanh", "gelu"), "batchnorm")
cfg = train.TrainConfig(seeds=(0, 1, 2), lrs=(1e-2,), epochs=3, batch_size=64)
r = train.train(spec, cfg, ds.x_train, ds.y_train, ds.x_val, ds.y_val, log=open("/dev/null", "w"))
np.savez(sys.argv[1], devices=len(jax.devices()), seeds=r.seeds, activations=r.activations,
         grad_norms=r.grad_norms_init, head=np.asarray(r.params["head"]["kernel"][...]),
         host=isinstance(r.params["head"]["kernel"][...], np.ndarray), **r.history)
"""


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="splits the models over CPU devices")
def test_models_split_over_cpu_devices_train_as_on_one(mnist1d, tmp_path):
    """`bnstudy train --threads 2` on a CPU: the models are split over 2 devices, padded from 9 to
    10 and trimmed back; the numbers agree with one device up to float rounding."""
    import subprocess
    import sys

    out = tmp_path / "two.npz"
    proc = subprocess.run(
        [sys.executable, "-c", SPLIT_OVER_DEVICES, out], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    spec = models.ModelSpec(40, 10, ("relu", "tanh", "gelu"), "batchnorm")
    cfg = train.TrainConfig(seeds=(0, 1, 2), lrs=(1e-2,), epochs=3, batch_size=64)
    one = train.train(
        spec, cfg, mnist1d.x_train, mnist1d.y_train, mnist1d.x_val, mnist1d.y_val, log=QUIET
    )
    with np.load(out) as two:
        assert two["devices"] == 2 and two["host"]  # the trained models come back to the host
        np.testing.assert_array_equal(two["seeds"], one.seeds)
        np.testing.assert_array_equal(two["activations"], one.activations)
        for key in ("train_loss", "train_acc"):
            assert two[key].shape == one.history[key].shape == (3, 9)
            np.testing.assert_allclose(two[key], one.history[key], rtol=1e-5, atol=1e-6)
        # inference mode reads the running mean, which follows the bias before BatchNorm: its
        # gradient is zero but for rounding, which Adam turns into steps (docs/how-it-works.md)
        np.testing.assert_allclose(two["val_loss"], one.history["val_loss"], rtol=5e-3)
        np.testing.assert_allclose(two["val_acc"], one.history["val_acc"], atol=0.02)
        np.testing.assert_allclose(two["grad_norms"], one.grad_norms_init, rtol=1e-5)
        head = np.asarray(one.params["head"]["kernel"][...])
        np.testing.assert_allclose(two["head"], head, rtol=1e-3, atol=1e-5)


def test_learning_rates_of_one_seed_share_the_initialization(mnist1d):
    spec = models.ModelSpec(40, 10, "relu", "batchnorm", "pre", 2, 16)
    cfg = train.TrainConfig(seeds=(0, 1), lrs=(1e-3, 1e-2))
    _, params, _ = train.init_models(spec, cfg.model_seeds)
    k = np.asarray(params["linears"][0]["kernel"][...])
    np.testing.assert_array_equal(k[0], k[1])  # seed 0, both learning rates
    assert not np.array_equal(k[0], k[2])  # seed 0 vs seed 1
    # Across normalizations, a seed's Linear weights are the same (paired comparisons).
    other = models.ModelSpec(40, 10, "identity", "none", "post", 2, 16)
    _, params2, _ = train.init_models(other, cfg.model_seeds)
    np.testing.assert_array_equal(k, np.asarray(params2["linears"][0]["kernel"][...]))


@pytest.mark.parametrize(
    "spec",
    [
        models.ModelSpec(7, 3, ("identity", "relu"), "batchnorm", "pre", 4, 8),
        models.ModelSpec(40, 10, "identity", "zscore", "post", 2, 128),  # a head of 1,280 of 16,384
    ],
)
def test_the_trainers_initialization_is_the_models_own(spec):
    """init_models draws the stacked models layer by layer (one program for every layer: each
    kernel is the first in x out numbers of a longer draw); each model equals the one nnx builds
    on its own from its seed's key (models.init): bit for bit on a CPU; on a GPU, whose batched
    initializers round differently, within a few ulps (2.4e-7 on an H100)."""
    tol = 0 if jax.default_backend() == "cpu" else 2e-6
    seeds, choices = np.array([3, 0, 3, 5]), np.array([0, 1, 1, 0], np.int32)
    choices = choices if len(spec.activations) > 1 else None
    graphdef, params, stats = train.init_models(spec, seeds, choices)
    init_keys, _ = train.model_keys(seeds)
    per_norm = {"batchnorm": 4, "zscore": 2}[spec.norm]  # scale, bias; mean, var
    per_model = 2 * (spec.depth + 1) + per_norm * spec.depth + (choices is not None)
    for m in range(len(seeds)):
        g, p, s = models.init(spec, init_keys[m], choice=0 if choices is None else choices[m])
        assert g == graphdef
        want, got = jax.tree.leaves((p, s)), jax.tree.leaves(probes.unstack((params, stats), m))
        assert len(want) == len(got) == per_model
        for a, b in zip(want, got):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(128, 10), (40, 128), (2, 64), (64, 3), (7, 8)])
def test_the_flat_kernel_draw_is_flaxs_default_initializer(shape):
    """models.lecun_normal_flat draws a kernel as a vector (it compiles faster): the numbers of
    Flax's default `lecun_normal` for that shape, eagerly and compiled: bit for bit on a CPU;
    within a few ulps on a GPU (not yet run there), whose compiled draws may round apart."""
    tol = 0 if jax.default_backend() == "cpu" else 2e-6
    key = jax.random.fold_in(jax.random.key(3), 2)
    flax_init = nnx.initializers.lecun_normal()
    want = np.asarray(flax_init(key, shape))
    got = np.asarray(models.lecun_normal_flat(key, shape))
    compiled = (jax.jit(f, static_argnums=1) for f in (models.lecun_normal_flat, flax_init))
    jitted, jitted_want = (np.asarray(f(key, shape)) for f in compiled)
    assert got.shape == jitted.shape == shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(jitted, jitted_want, rtol=tol, atol=tol)
    assert 0.5 < want.std() * np.sqrt(shape[0]) < 1.5  # variance 1 / fan-in: a real draw


@pytest.mark.parametrize("optimizer", train.OPTIMIZERS)
@pytest.mark.parametrize("schedule", train.SCHEDULES)
def test_the_optimizers_start_at_the_state_tx_init_gives(optimizer, schedule):
    """The trainer builds the optimizer's initial state as zeros from its shapes
    (train._zero_state) instead of compiling tx.init: the same values, dtypes and structure."""
    tx = train.make_optimizer(train.TrainConfig(optimizer=optimizer, schedule=schedule), 10)
    spec = models.ModelSpec(5, 3, "relu", "batchnorm", "pre", 2, 8)
    _, params, _ = train.init_models(spec, [0, 1, 2])
    expected = jax.vmap(tx.init)(params)
    built = train._zero_state(jax.eval_shape(jax.vmap(tx.init), params))
    assert jax.tree.structure(built) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(expected)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_the_probes_loss_and_accuracy_are_the_trainers(mnist1d):
    """probes.evaluate (each example's loss and prediction on the device, their means on the
    host in float64) gives the trainer's validation loss and accuracy of the last epoch (its
    compiled float32 means), up to float32 rounding."""
    _, r = fit(mnist1d, ("identity", "relu"), "batchnorm", epochs=2, lrs=(1e-2, 1.0))
    loss, acc = probes.evaluate(r.graphdef, r.params, r.stats, mnist1d.x_val, mnist1d.y_val)
    np.testing.assert_allclose(loss, r.history["val_loss"][-1], rtol=1e-5)
    np.testing.assert_allclose(acc, r.history["val_acc"][-1], rtol=1e-6)
    assert loss.dtype == acc.dtype == np.float64


def test_each_examples_loss_and_prediction_are_those_of_its_logits(mnist1d):
    """probes.forward's per-example cross-entropy and predicted class are the float64
    log-softmax and the argmax of its own logits, for every split size (the padding rows carry
    no label), and a diverged model's (NaN logits) loss is NaN, as on the host."""
    _, r = fit(mnist1d, ("relu", "tanh"), "batchnorm", epochs=1, lrs=(1e-2,))
    params = jax.tree.map(lambda a: jnp.asarray(a).at[0].set(np.nan), r.params)
    for n in (1, 7, probes.CHUNK + 3):
        rows = np.arange(n) % len(mnist1d.y_test)
        x, y = mnist1d.x_test[rows], mnist1d.y_test[rows]
        z, loss, pred = probes.forward(r.graphdef, params, r.stats, x, y)
        assert z.shape[:2] == loss.shape == pred.shape == (len(r.seeds), n)
        log_p = scipy.special.log_softmax(z.astype(np.float64), -1)
        want = -np.take_along_axis(log_p, y[None, :, None], -1)[..., 0]
        assert np.isnan(loss[0]).all() and np.isnan(want[0]).all()
        np.testing.assert_allclose(loss[1:], want[1:], rtol=2e-6, atol=2e-6)
        np.testing.assert_array_equal(pred, z.argmax(-1))  # NaN logits: class 0, as NumPy
        np.testing.assert_array_equal(z, probes.logits(r.graphdef, params, r.stats, x))


def test_a_step_is_finite_only_when_every_gradient_is():
    """train._finite_grads checks the matrices one by one and the vectors in one concatenation:
    a NaN or an infinity anywhere, in a matrix or in any vector, makes the step non-finite."""
    spec = models.ModelSpec(5, 3, "relu", "batchnorm", "pre", 2, 8)
    _, params, _ = train.init_models(spec, [0])
    grads = probes.unstack(params, 0)
    assert bool(train._finite_grads(grads))
    leaves, treedef = jax.tree.flatten(grads)
    assert {a.ndim for a in leaves} == {1, 2}
    for i in range(len(leaves)):
        for bad in (np.nan, np.inf, -np.inf):
            broken = [np.array(a) for a in leaves]
            broken[i].flat[-1] = bad
            assert not bool(train._finite_grads(jax.tree.unflatten(treedef, broken)))


def test_a_blown_up_learning_rate_is_recorded_and_the_others_finish(mnist1d):
    _, r = fit(mnist1d, "relu", "none", lrs=(5e-2, 1e6), optimizer="sgd", epochs=4)
    # models: (seed 0, 1e-2), (seed 0, 1e6), (seed 1, 1e-2), (seed 1, 1e6)
    np.testing.assert_array_equal(r.diverged, [False, True, False, True])
    assert np.all(r.diverged_step[[1, 3]] >= 0) and np.all(r.diverged_step[[0, 2]] == -1)
    assert np.all(np.isfinite(r.history["val_acc"][:, [0, 2]]))
    assert np.all(np.isnan(r.history["val_acc"][-1, [1, 3]]))
    _, acc = probes.evaluate(r.graphdef, r.params, r.stats, mnist1d.x_test, mnist1d.y_test)
    assert np.all(acc[[0, 2]] > 0.2)  # the healthy models trained on (chance is 0.1)
    # The frozen models hold their last finite parameters.
    assert all(
        np.all(np.isfinite(np.asarray(leaf))) for leaf in __import__("jax").tree.leaves(r.params)
    )


def test_grad_norms_at_init_are_those_of_the_first_step(mnist1d):

    spec, r = fit(mnist1d, "identity", "batchnorm", depth=5, seeds=(0, 1), epochs=1)
    g = r.grad_norms_init
    assert g.shape == (2, 6) and np.all(g > 0) and np.all(np.isfinite(g))
    # the same gradient, computed on its own: initial weights, the model's first batch
    graphdef, params, stats = train.init_models(spec, r.seeds)
    _, data_keys = train.model_keys(r.seeds)
    for m in range(2):
        perm = np.asarray(
            jax.random.permutation(jax.random.fold_in(data_keys[m], 0), len(mnist1d.y_train))
        )
        xb, yb = mnist1d.x_train[perm[:64]], mnist1d.y_train[perm[:64]]
        p, s = probes.unstack(params, m), probes.unstack(stats, m)

        def loss(p, s=s, xb=xb, yb=yb):
            return train.cross_entropy(models.apply(graphdef, p, s, xb, train=True)[0], yb)

        np.testing.assert_allclose(
            g[m], np.asarray(train.kernel_norms(jax.grad(loss)(p))), rtol=1e-5
        )


@pytest.mark.parametrize("n, b", [(103, 10), (2000, 128)])  # 1 and 2 rounds of sorting
def test_each_epochs_batches_are_its_permutation_of_the_seeds_split(n, b):
    """`train._epoch_batches`: in each epoch, every seed's full batches of the permutation that
    `jax.random.permutation` draws from its data-order key folded with the epoch, the rest of
    the split left out. Its sorts are NumPy's on the host, not JAX's: the same integers, with
    JAX's one round of sorting (n = 103) and two (n = 2000), and with tied sort keys (the
    shuffle is stable), which random 32-bit keys give too rarely to be tested by chance."""
    assert [train._shuffle_rounds(k) for k in (103, 2000)] == [1, 2]
    _, keys = train.model_keys(np.array([0, 7]))
    epochs = np.array([3, 4, 5], np.int32)
    got = train._epoch_batches(keys, epochs, n=n, batch_size=b)
    steps = n // b
    assert got.shape == (3, steps, 2, b) and got.dtype == np.int32  # (epochs, steps, seeds, batch)
    for e, epoch in enumerate(epochs):
        for s in range(2):
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(keys[s], epoch), n))
            np.testing.assert_array_equal(got[e, :, s], perm[: steps * b].reshape(steps, b))


def test_the_host_sort_is_stable_on_tied_keys(monkeypatch):
    """Tied sort keys keep their order, as in JAX's stable sort (`lax.sort_key_val`)."""
    tied = np.array([[[[5, 1, 5, 0, 1, 5, 0]]]], np.uint32)  # (epochs, seeds, rounds, n)
    monkeypatch.setattr(train, "_sort_keys", lambda *a, **k: tied)
    monkeypatch.setattr(train, "_shuffle_rounds", lambda n: 1)
    got = train._epoch_batches(None, np.array([0]), n=7, batch_size=7)
    want = np.asarray(jax.lax.sort_key_val(jnp.asarray(tied[0, 0, 0]), jnp.arange(7))[1])
    np.testing.assert_array_equal(got[0, 0, 0], want)
    assert want.tolist() == [3, 6, 1, 4, 0, 2, 5]


def test_init_gradient_probe_uses_the_trainers_weights_and_every_seeds_split():
    """A batch of the whole training split is the same batch in any order, so every draw of the
    probe gives the full-batch gradient at the initialization the trainer gives that model
    (seed, activation of the family) on its own seed's split."""
    splits = {s: data.prepare("spirals", seed=s, n_samples=300) for s in (0, 1)}
    spec = models.ModelSpec(2, 2, ("identity", "relu"), "batchnorm", "pre", 3, 16)
    seeds, choices = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1], np.int32)
    n = len(splits[0].x_train)
    norms = probes.init_gradient_norms(spec, seeds, choices, splits, [n])[n]
    graphdef, params, stats = train.init_models(spec, seeds, choices)
    for m, seed in enumerate(seeds):
        ds = splits[int(seed)]
        p, s = probes.unstack(params, m), probes.unstack(stats, m)

        def loss(p, s=s, ds=ds):
            logits = models.apply(graphdef, p, s, ds.x_train, train=True)[0]
            return train.cross_entropy(logits, ds.y_train)

        expected = np.asarray(train.kernel_norms(jax.grad(loss)(p)))
        np.testing.assert_allclose(norms[m], expected, rtol=1e-4)
    assert not np.allclose(norms[0], norms[2])  # the activation matters
    # a model's batches depend on its seed only, not on which models are measured with it
    together = probes.init_gradient_norms(spec, seeds, choices, splits, [16])[16]
    alone = probes.init_gradient_norms(spec, seeds[3:], choices[3:], splits, [16])[16]
    np.testing.assert_allclose(alone[0], together[3], rtol=1e-6)
    with pytest.raises(ValueError, match="init batch size 1000 must be between 2 and the"):
        probes.init_gradient_norms(spec, seeds, choices, splits, [1000])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(activation="swish"), r"unknown activation 'swish'; valid: identity, relu"),
        (dict(norm="batchnorm2d"), r"unknown norm 'batchnorm2d'; valid: none, batchnorm, zscore"),
        (dict(placement="middle"), r"unknown placement 'middle'; valid: pre, post"),
        (dict(depth=0), r"depth must be an integer >= 1, got 0"),
        (dict(width=-3), r"width must be an integer >= 1"),
        (
            dict(norm="groupnorm", width=30, groups=8),
            r"groups=8 does not divide width=30; valid groups "
            r"for this width: \[1, 2, 3, 5, 6, 10, 15, 30\]",
        ),
    ],
)
def test_invalid_architectures_raise_clear_errors(kwargs, message):
    base = dict(in_features=4, num_classes=3)
    with pytest.raises(ValueError, match=message):
        models.ModelSpec(**{**base, **kwargs})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(optimizer="rmsprop"), r"unknown optimizer 'rmsprop'; valid: adam, sgd"),
        (dict(schedule="step"), r"unknown schedule 'step'; valid: constant, cosine"),
        (dict(lrs=(0.1, -1.0)), r"lrs must be a non-empty list of positive numbers"),
        (dict(seeds=(1, 1)), r"seeds must be a non-empty list of distinct integers"),
    ],
)
def test_invalid_training_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.TrainConfig(**kwargs)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "groupnorm"])
@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu", "elu", "leaky_relu", "sigmoid"])
def test_every_block_runs_forward(norm, activation):
    spec = models.ModelSpec(6, 3, activation, norm, "post", 2, 16, groups=4)
    g, p, s = models.init(spec, jax.random.key(0))
    out, _ = models.apply(g, p, s, np.ones((5, 6), np.float32), train=True)
    assert out.shape == (5, 3) and np.all(np.isfinite(np.asarray(out)))


def test_the_models_products_are_full_float32():
    """Every matrix product of a model asks for HIGHEST precision: a GPU would otherwise round its
    inputs to TensorFloat-32, whose 1e-3 relative noise is far above the affinity the probes
    measure (benchmarks/gpu_check.sh measured 2.9e-4 against 2.9e-7 on an H100)."""
    spec = models.ModelSpec(6, 3, "identity", "batchnorm", "pre", 2, 16)
    g, p, s = models.init(spec, jax.random.key(0))
    jaxpr = jax.make_jaxpr(lambda x: models.apply(g, p, s, x, train=True)[0])(np.ones((5, 6)))
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == spec.depth + 1
    for e in dots:
        assert all(q == jax.lax.Precision.HIGHEST for q in e.params["precision"]), e.params


@pytest.mark.parametrize("affine", [True, False], ids=["batchnorm", "zscore"])
def test_the_training_batchnorm_is_flaxs_with_the_closed_form_gradient(affine):
    """models.batch_norm, which the models run in training mode, gives Flax's outputs and
    running averages bit for bit, and the gradient autodiff of Flax's forward pass gives, for
    cotangents on all three outputs, with a dead unit (a column of zeros) and a constant one."""
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 3.0, (64, 16)).astype(np.float32)
    x[:, 3], x[:, 7] = 0.0, 0.3
    layer = nnx.BatchNorm(16, epsilon=1e-5, use_scale=affine, use_bias=affine, rngs=nnx.Rngs(0))
    if affine:
        layer.scale[...] = rng.normal(size=16).astype(np.float32)
        layer.bias[...] = rng.normal(size=16).astype(np.float32)
    theirs, ours = nnx.clone(layer), nnx.clone(layer)
    assert np.array_equal(theirs(x, use_running_average=False), models._batch_norm_train(ours, x))
    assert np.array_equal(theirs.mean[...], ours.mean[...])
    assert np.array_equal(theirs.var[...], ours.var[...])

    dy, dmean, dvar = (rng.normal(size=s).astype(np.float32) for s in ((64, 16), 16, 16))

    def flax_loss(x, scale, bias):  # nnx.BatchNorm's own two steps, differentiated by autodiff
        mean, var = normalization._compute_stats(x, (0,), None)
        y = normalization._normalize(x, mean, var, scale, bias, (0,), (1,), None, 1e-5)
        return jnp.sum(y * dy) + jnp.sum(mean * dmean) + jnp.sum(var * dvar)

    def our_loss(x, scale, bias):
        y, mean, var = models.batch_norm(x, scale, bias, 1e-5)
        return jnp.sum(y * dy) + jnp.sum(mean * dmean) + jnp.sum(var * dvar)

    scale = layer.scale[...] if affine else None
    bias = layer.bias[...] if affine else None
    argnums = (0, 1, 2) if affine else (0,)
    want = jax.grad(flax_loss, argnums)(x, scale, bias)
    got = jax.jit(jax.grad(our_loss, argnums))(x, scale, bias)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-6 * np.abs(w).max())


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_a_models_training_gradient_is_autodiffs_of_flaxs_batchnorm(placement):
    """The whole model's gradient in training mode (models.batch_norm) against autodiff through
    Flax's BatchNorm (the path a mask of all rows takes), models batched as the trainer does."""
    spec = models.ModelSpec(12, 4, "relu", "batchnorm", placement, 3, 32)
    _, p, s = jax.vmap(lambda k: models.init(spec, k))(jax.random.split(jax.random.key(1), 3))
    g = models.init(spec, jax.random.key(1))[0]
    x = np.random.default_rng(1).normal(size=(50, 12)).astype(np.float32)
    y = np.arange(50) % 4
    every_row = np.ones((50, 1), bool)

    def loss(p, s, mask):
        logits, _ = models.apply(g, p, s, x, train=True, mask=mask)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    ours = jax.jit(jax.vmap(jax.grad(loss), (0, 0, None)))(p, s, None)
    flaxs = jax.jit(jax.vmap(jax.grad(loss), (0, 0, None)))(p, s, every_row)
    # one scale for all: a bias before a BatchNorm has a gradient of 0 but for rounding
    scale = max(np.abs(b).max() for b in jax.tree.leaves(flaxs))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flaxs)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)
