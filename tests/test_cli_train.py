"""`bnstudy train` through the real console script: the files it writes and how it fails."""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from bnstudy import data, results


def bnstudy(*args, cwd=None):
    return subprocess.run(
        ["bnstudy", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def family(norm, *activations, **fields) -> list[str]:
    """`--family` and its JSON object."""
    return ["--family", json.dumps({"norm": norm, "activations": list(activations), **fields})]


@pytest.fixture(scope="module")
def spirals_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "spirals.npz"
    r = bnstudy("prepare-data", "spirals", "--out", out, "--n-samples", 600)
    assert r.returncode == 0, r.stderr
    return out


def test_train_writes_one_row_per_seed_and_lr_with_every_metric(spirals_file, tmp_path):
    out, hist, bound = (
        tmp_path / "cell.parquet",
        tmp_path / "cell.history.parquet",
        tmp_path / "b.npz",
    )
    bstats, layers = tmp_path / "cell.batchstats.parquet", tmp_path / "cell.layers.parquet"
    r = bnstudy(
        "train",
        "--data",
        spirals_file,
        *family("batchnorm", "identity"),
        "--depth",
        2,
        "--width",
        16,
        "--seeds",
        0,
        1,
        2,
        "--lrs",
        0.01,
        0.1,
        "--epochs",
        4,
        "--batch-size",
        32,
        "--test-batch-sizes",
        2,
        8,
        "full",
        "--extend-edges",
        0,
        "--out",
        out,
        "--history",
        hist,
        "--batchstats",
        bstats,
        "--layers",
        layers,
        "--boundary",
        bound,
    )
    assert r.returncode == 0, r.stderr
    assert "epoch 4/4" in r.stderr  # progress is logged per block of epochs
    runs = pd.read_parquet(out)
    assert len(runs) == 6 and sorted(zip(runs.seed, runs.lr)) == sorted(
        (s, lr) for s in (0, 1, 2) for lr in (0.01, 0.1)
    )  # lr exactly as given
    expected = [
        "dataset",
        "activation",
        "norm",
        "placement",
        "depth",
        "width",
        "batch_size",
        "groups",
        "seed",
        "lr",
        "optimizer",
        "schedule",
        "epochs",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "diverged",
        "diverged_step",
        "affine_gap",
        "fold_max_dev",
        "fold_rel_dev",
        "fold_agreement",
        "n_params",
        "device",
        "train_seconds",
    ]
    assert list(runs.columns) == expected
    assert runs.dataset.unique().tolist() == ["spirals"]
    assert runs.test_acc.between(0, 1).all() and runs.fold_rel_dev.lt(1e-5).all()
    assert runs.fold_agreement.eq(1).all() and not runs.diverged.any()

    g = pd.read_parquet(layers)  # one row per model and Linear kernel: depth 2 + head
    assert (
        len(g) == 6 * 3
        and g.groupby(["seed", "lr"]).layer.apply(list).map(lambda x: x == [0, 1, 2]).all()
    )
    assert (g.grad_norm_init > 0).all()
    # The batch-statistics probes and the grids: at the selected rate only (the one read)
    best = runs.groupby("lr").val_acc.mean().idxmax()  # no ties, no divergence here
    assert results.selected(runs).tolist() == (runs.lr == best).tolist()
    bs = pd.read_parquet(bstats)  # one row per selected model x test batch size x composition
    assert len(bs) == 3 * 3 * 2 and set(bs.composition) == {"random", "class"}
    assert set(zip(bs.seed, bs.lr)) == {(s, best) for s in (0, 1, 2)}
    assert bs.accuracy.notna().all()
    assert set(bs[bs.full].test_batch_size) == {
        len(data.load(spirals_file).y_test)
    }  # the whole test set
    assert bs[(bs.composition == "random") & ~bs.full].flip_rate.notna().all()
    assert bs[(bs.composition == "class") | bs.full].flip_rate.isna().all()

    h = pd.read_parquet(hist)
    assert len(h) == 6 * 4 and h.epoch.min() == 1 and h.epoch.max() == 4
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(h.columns)
    final = h[h.epoch == 4].set_index(["seed", "lr"]).val_acc.sort_index()
    again = runs.set_index(["seed", "lr"]).val_acc.sort_index()
    np.testing.assert_allclose(final.to_numpy(), again.to_numpy(), atol=1e-6)

    with np.load(bound) as b:  # the lowest seed's model (E6 draws it), on that seed's split
        assert b["pred_inference"].shape == (1, 200, 200) and b["pred_batch"].shape == (1, 200, 200)
        assert b["xx"].shape == (200, 200) and list(b["seeds"]) == [0]
        assert np.isclose(b["lrs"], best).all()
        assert b["x_train"].tobytes() == data.load(spirals_file, 0).x_train.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b.npz",
        "cell.batchstats.parquet",
        "cell.history.parquet",
        "cell.layers.parquet",
        "cell.parquet",
    ]


def test_non_batchnorm_cells_have_nan_batch_probes_and_no_fold(spirals_file, tmp_path):
    out, bstats = tmp_path / "cell.parquet", tmp_path / "cell.batchstats.parquet"
    r = bnstudy(
        "train",
        "--data",
        spirals_file,
        *family("layernorm", "relu"),
        "--width",
        16,
        "--epochs",
        2,
        "--batch-size",
        32,
        "--out",
        out,
        "--batchstats",
        bstats,
    )
    assert r.returncode == 0, r.stderr
    runs = pd.read_parquet(out)
    assert runs.filter(regex="^fold").isna().all().all()
    assert pd.read_parquet(bstats).empty
    assert runs.affine_gap.notna().all()


def test_batch_statistics_probes_run_at_each_cells_selected_rate_only(spirals_file, tmp_path):
    """The outputs read a cell's batch-statistics probes (batchstats, cond_*) at its selected
    learning rate (results.select_lr, over all its rounds), so only those models are probed; the
    run table still has every model, NaN in cond_* elsewhere."""
    out, bstats = tmp_path / "cell.parquet", tmp_path / "cell.batchstats.parquet"
    args = ["train", "--data", spirals_file, "--width", 16, "--epochs", 3, "--seeds", 0, 1]
    args += ["--lrs", 1e-3, 1e-2, 1e-1, "--batch-size", 16, "--test-batch-sizes", 4, "full"]
    families = family("batchnorm", "identity", "relu", conditional=True, batch_probes=["relu"])
    r = bnstudy(*args, *families, "--out", out, "--batchstats", bstats)
    assert r.returncode == 0, r.stderr
    runs = pd.read_parquet(out)
    chosen = results.selected(runs)
    assert chosen.sum() == 2 * 2  # two cells x two seeds
    probed = chosen & (runs.activation == "relu").to_numpy()
    assert runs.cond_test_acc[probed].between(0, 1).all()
    assert runs.cond_affine_gap[probed].notna().all() and runs.cond_test_acc[~probed].isna().all()
    bs = pd.read_parquet(bstats)
    keys = ["activation", "seed", "lr"]
    assert set(map(tuple, bs[keys].to_numpy())) == set(map(tuple, runs[probed][keys].to_numpy()))
    assert len(bs) == 2 * 2 * 3  # probed models x test batch sizes (own 16, 4, full) x 2


def test_a_cell_that_selects_an_edge_of_the_grid_trains_beyond_it(spirals_file, tmp_path):
    """Rates far too small: ReLU selects the largest, so the family trains at the next rates of
    the grid's progression above it (and again, while it still selects the largest)."""
    out = tmp_path / "cell.parquet"
    args = ["train", "--data", "mnist1d", *family("none", "relu")]
    args += ["--width", 16, "--epochs", 3, "--seeds", 0, 1, "--lrs", 1e-5, 1e-4]
    r = bnstudy(*args, "--out", out)
    assert r.returncode == 0, r.stderr
    runs = pd.read_parquet(out)
    lrs = sorted({float(np.float32(x)) for x in runs.lr.round(9)})
    # measured: 1e-2 is the best after the first extension, 1e-2 again (not 1.0) after the second
    np.testing.assert_allclose(lrs, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-6)
    assert len(runs) == 2 * 6 and not runs.duplicated(["seed", "lr"]).any()
    assert r.stderr.count("selected an edge") == 2
    # The boundary grid holds the lowest seed's model at the rate selected over every round:
    # here one of an extension round's
    bound = tmp_path / "b.npz"
    args = ["train", "--data", spirals_file, *family("none", "relu")]
    args += ["--width", 16, "--epochs", 3, "--seeds", 0, 1, "--lrs", 1e-5, 1e-4]
    r = bnstudy(*args, "--out", tmp_path / "s.parquet", "--boundary", bound)
    assert r.returncode == 0, r.stderr
    runs = pd.read_parquet(tmp_path / "s.parquet")
    best = runs[results.selected(runs)].lr.unique()
    assert runs.lr.nunique() > 2 and len(best) == 1 and best[0] > 2e-4
    with np.load(bound) as b:
        assert b["pred_inference"].shape[0] == 1 and np.isclose(b["lrs"], best).all()
    none = bnstudy(*args, "--extend-edges", 0, "--out", tmp_path / "none.parquet")
    assert none.returncode == 0 and len(pd.read_parquet(tmp_path / "none.parquet")) == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (
            family("groupnorm", "relu", groups=8) + ["--width", 30],
            "groups=8 does not divide width=30",
        ),
        (family("none", "relu") + ["--depth", 0], "depth must be an integer >= 1, got 0"),
        (family("none", "relu") + ["--test-batch-sizes", 1], "bad test batch size '1'"),
        (family("none", "relu") + ["--lrs", -0.1], "lrs must be a non-empty list of positive"),
        (family("none", "relu") + ["--threads", 0], "--threads must be >= 1, got 0"),
        (family("none", "relu") + ["--boundary", "x.npz", "--data", "mnist1d"], None),
        # a later family's bad setting stops the job before the first family trains
        (family("none", "relu") + family("batchnorm", "relu", init_batch_sizes=[1]), "init batch"),
        (family("swish", "relu"), "unknown norm 'swish'; valid: none, batchnorm"),
        (family("none", "swish"), "unknown activation 'swish'; valid: identity, relu"),
        (family("none", "relu", batchprobes=[]), "unknown key batchprobes"),
        (family("none", "relu", batch_probes=["tanh"]), "batch_probes must be among"),
        (family("none", "relu", boundaries=["tanh"]), "boundaries must be among"),
        (family("none", "relu", boundaries="relu"), "boundaries must be lists"),
        (family("none", "relu", boundary_mates="no"), "boundary_mates must be true or false"),
        (["--family", "{norm: none}"], "not a JSON object"),
    ],
)
def test_bad_input_fails_fast_with_a_clear_message_and_writes_nothing(
    spirals_file, tmp_path, args, message
):
    r = bnstudy("train", "--data", spirals_file, "--out", tmp_path / "o.parquet", *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert message is None or message in r.stderr, r.stderr
    assert "epoch 1/" not in r.stderr  # nothing trained
    assert not any(tmp_path.iterdir())


def test_unknown_dataset_is_rejected_with_the_valid_names(tmp_path):
    r = bnstudy(
        "train", "--data", "nosuchset", *family("none", "relu"), "--out", tmp_path / "o.parquet"
    )
    assert r.returncode == 2 and "valid names: spirals" in r.stderr


def test_a_family_trained_in_a_job_equals_the_family_trained_alone(spirals_file, tmp_path):
    """A training job trains its families one after another, each in its own program: a family's
    rows are the same, bit for bit, alone or beside others (only the wall-clock column differs)."""
    common = ["--data", spirals_file, "--width", 16, "--epochs", 3, "--seeds", 0, 1]
    common += ["--lrs", 0.01, 0.1, "--batch-size", 32, "--test-batch-sizes", 8, "full"]
    bn = family("batchnorm", "identity", "relu", conditional=True)
    outs = {}
    for name, families in (("alone", bn), ("job", family("none", "relu") + bn)):
        paths = {k: tmp_path / f"{name}.{k}.parquet" for k in ("run", "batchstats", "layers")}
        r = bnstudy(
            "train",
            *common,
            *families,
            "--out",
            paths["run"],
            "--batchstats",
            paths["batchstats"],
            "--layers",
            paths["layers"],
            "--boundary",
            tmp_path / f"{name}.npz",
        )
        assert r.returncode == 0, r.stderr
        outs[name] = {k: pd.read_parquet(p) for k, p in paths.items()}
    job = outs["job"]["run"]
    assert list(job.norm.unique()) == ["none", "batchnorm"]  # in the order given
    for kind, alone in outs["alone"].items():
        in_job = outs["job"][kind]
        in_job = in_job[in_job.norm == "batchnorm"].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            in_job.drop(columns="train_seconds", errors="ignore"),
            alone.drop(columns="train_seconds", errors="ignore"),
            check_exact=True,
            check_like=True,  # the job's columns: the first family's, then the others' new ones
        )
    with np.load(tmp_path / "job.npz") as b, np.load(tmp_path / "alone.npz") as a:
        rows = b["norms"] == "batchnorm"
        assert list(b["norms"]) == sorted(b["norms"], key=["none", "batchnorm"].index)
        assert rows.sum() == len(a["norms"]) > 0  # the lowest seed's models, every round
        np.testing.assert_array_equal(b["pred_inference"][rows], a["pred_inference"])
        np.testing.assert_array_equal(b["pred_batch"][rows], a["pred_batch"])
        assert (b["pred_batch"][~rows] == -1).all()  # no batch statistics: not computed


def test_a_job_draws_only_the_boundary_grids_its_families_ask_for(spirals_file, tmp_path):
    """`boundaries` picks the activations whose models get grids, `boundary_mates` false leaves
    out the fixed-mates grids (the workflow asks for what the boundary figure reads); the grids
    drawn are those of a job that draws all of them. A job that draws none writes the grid
    and no models."""
    common = ["--data", spirals_file, "--width", 16, "--epochs", 2, "--seeds", 0, 1]
    common += ["--lrs", 0.01, 0.1, "--batch-size", 32, "--test-batch-sizes", "full"]
    common += ["--extend-edges", 0]
    jobs = {
        "all": family("batchnorm", "identity", "relu") + family("none", "relu"),
        "some": family("batchnorm", "identity", "relu", boundaries=["relu"], boundary_mates=False)
        + family("none", "relu", boundaries=["relu"]),
        "none": family("batchnorm", "identity", "relu", boundaries=[])
        + family("none", "relu", boundaries=[]),
    }
    for name, families in jobs.items():
        out = tmp_path / f"{name}.parquet"
        r = bnstudy(
            "train", *common, *families, "--out", out, "--boundary", tmp_path / f"{name}.npz"
        )
        assert r.returncode == 0, r.stderr
        assert len(pd.read_parquet(out)) == 12  # every model trained and measured either way
    with np.load(tmp_path / "all.npz") as a, np.load(tmp_path / "some.npz") as s:
        # the lowest seed's model at each cell's selected rate
        assert list(a["activations"]) == ["identity", "relu", "relu"]
        rows = a["activations"] == "relu"
        assert list(s["activations"]) == ["relu"] * 2 and list(s["norms"]) == list(a["norms"][rows])
        np.testing.assert_array_equal(s["lrs"], a["lrs"][rows])
        np.testing.assert_array_equal(s["pred_inference"], a["pred_inference"][rows])
        assert "pred_batch" in a and "pred_batch" not in s and "batch_mates" not in s
    with np.load(tmp_path / "none.npz") as z, np.load(tmp_path / "all.npz") as a:
        assert z["pred_inference"].shape == (0, 200, 200) and len(z["seeds"]) == 0
        for k in ("xx", "yy", "x_train", "y_train"):
            np.testing.assert_array_equal(z[k], a[k])


def test_families_that_differ_only_in_their_norm_share_one_training_program(spirals_file, tmp_path):
    """The job's families with the same activations (none, layernorm) are trained by one
    compiled program; a family with other activations by its own (tests/test_engine.py checks
    that the shared program trains each family as alone, up to float rounding). Their
    edge-extension rounds of the same activations share one too, at whatever rates."""
    families = family("none", "relu") + family("zscore", "identity", "relu")
    families += family("layernorm", "relu")
    r = subprocess.run(
        ["bnstudy", "train", "--data", str(spirals_file), "--width", "8", "--epochs", "2"]
        + ["--seeds", "0", "--lrs", "0.01", "--extend-edges", "1"]  # one rate: an edge for all
        + ["--out", str(tmp_path / "o.parquet"), *families],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_LOG_COMPILES="1"),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("selected an edge") == 3
    # the families: two programs; the rounds: relu of none and of layernorm one, zscore's own
    assert r.stderr.count("compilation of jit(_train_block)") == 4
    run = pd.read_parquet(tmp_path / "o.parquet")
    assert list(run.norm.unique()) == ["none", "zscore", "layernorm"]
    assert run.groupby("norm").size().to_dict() == {"none": 5, "zscore": 10, "layernorm": 5}


def test_help_documents_every_option():
    r = bnstudy("train", "--help")
    for option in (
        "--data",
        "--family",
        "--placement",
        "--depth",
        "--width",
        "--seeds",
        "--lrs",
        "--epochs",
        "--batch-size",
        "--optimizer",
        "--momentum",
        "--schedule",
        "--test-batch-sizes",
        "--out",
        "--history",
        "--boundary",
        "--threads",
        "init_batch_sizes",
        "conditional",
        "batch_probes",
    ):
        assert option in r.stdout
