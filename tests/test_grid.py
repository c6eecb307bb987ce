"""The config -> cells expansion, the semantic checks, the shipped configs, and the aggregation
(learning-rate selection, metrics/history tables) on run files written here."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bnstudy import data, grid, results, vocab

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = {
    name: REPO / "workflow" / "config" / f"{name}.yaml" for name in ("default", "smoke", "full")
}


def load(name: str) -> dict:
    config = yaml.safe_load(CONFIGS[name].read_text())
    validate(config, SCHEMA)  # also fills the schema's defaults, as in the Snakefile
    return config


def block(**kw) -> dict:
    b = dict(
        datasets=["mnist1d"],
        activations=["relu"],
        norms=["batchnorm"],
        placements=["pre"],
        depths=[2],
        widths=[16],
    )
    b.update(kw)
    return b


def config_with(experiments: dict, **training) -> dict:
    config = {
        "training": {
            "seeds": [0, 1],
            "lrs": [0.01, 0.1],
            "epochs": 2,
            "batch_size": 32,
            **training,
        },
        "experiments": experiments,
    }
    validate(config, SCHEMA)
    return config


# --- expansion ------------------------------------------------------------------------------


def test_cells_are_the_union_of_block_products_each_trained_once():
    config = config_with(
        {
            "E1": [block(activations=["identity", "relu"], norms=["none", "batchnorm"])],
            "E4": [block(activations=["relu"], depths=[2, 4]), block(norms=["none"], depths=[4])],
        }
    )
    cells = grid.cells(config)
    C = lambda a, n, d: grid.Cell("mnist1d", a, n, "pre", d, 16, 32, 8)  # noqa: E731
    assert cells == {
        C("identity", "none", 2): ("E1",),
        C("identity", "batchnorm", 2): ("E1",),
        C("relu", "none", 2): ("E1",),
        C("relu", "batchnorm", 2): ("E1", "E4"),
        C("relu", "batchnorm", 4): ("E4",),
        C("relu", "none", 4): ("E4",),
    }
    assert list(cells) == sorted(cells)  # deterministic order


def test_cell_paths_are_those_of_its_training_job():
    cell = grid.Cell("spirals", "leaky_relu", "groupnorm", "post", 16, 64, 32, 4)
    sibling = grid.Cell("spirals", "relu", "batchnorm", "post", 16, 64, 32, 8)  # same job
    assert cell.path(grid.RUN) == "results/runs/spirals/post-d16-w64-b32.parquet"
    assert cell.path(grid.HISTORY).endswith("post-d16-w64-b32.history.parquet")
    assert sibling.path(grid.RUN) == cell.path(grid.RUN)
    assert cell.wildcards["depth"] == "16"
    cells = {
        cell: ("E6",),
        sibling: ("E6",),
        grid.Cell("mnist1d", "relu", "none", "pre", 2, 8, 64, 8): ("E1", "E6"),
    }
    assert grid.paths(cells, grid.BOUNDARY) == [cell.path(grid.BOUNDARY)]  # 2-D only, once
    assert grid.paths(cells, grid.RUN, experiment="E1") == [
        "results/runs/mnist1d/pre-d2-w8-b64.parquet"
    ]


def job(**wildcards) -> SimpleNamespace:
    """A training rule's wildcards (strings, as Snakemake passes them)."""
    wc = dict(dataset="mnist1d", placement="pre", depth="2", width="16", batch_size="32")
    return SimpleNamespace(**{**wc, **wildcards})


def test_jobs_group_the_families_that_differ_in_their_norm():
    config = config_with(
        {
            "E1": [block(activations=["relu", "identity"], norms=["none", "batchnorm"])],
            "E4": [block(activations=["tanh"], norms=["batchnorm"], depths=[2, 4])],
            "E9": [block(activations=["relu"], norms=["groupnorm"], groups=[2, 4])],
        }
    )
    assert set(grid.jobs(config)) == {("mnist1d", "pre", 2, 16, 32), ("mnist1d", "pre", 4, 16, 32)}

    def names(families):
        return [(f["norm"], f.get("groups"), f["activations"]) for f in families]

    assert names(grid.job_families(config, job())) == [
        ("none", None, ["identity", "relu"]),  # the vocabulary's order
        ("batchnorm", None, ["identity", "relu", "tanh"]),
        ("groupnorm", 2, ["relu"]),
        ("groupnorm", 4, ["relu"]),
    ]
    assert names(grid.job_families(config, job(depth="4"))) == [("batchnorm", None, ["tanh"])]
    command = grid.train_options(config, job())["families"]
    assert command.count("--family ") == 4
    assert """'{"norm":"groupnorm","activations":["relu"],"groups":2,""" in command


def test_probes_run_only_where_an_experiment_reads_them():
    """The batch-statistics probes run on the activations whose cells E3 or E8 use; the init
    gradient sizes go to the families of E4; the conditional function to E8's batch-statistics
    families; a family no such experiment uses gets none of them."""
    config = config_with(
        {
            "E1": [block(activations=["identity", "relu", "tanh"], norms=["batchnorm", "none"])],
            "E3": [block(activations=["identity"], norms=["batchnorm"])],
            "E4": [block(activations=["relu"], norms=["batchnorm"], depths=[2, 4])],
            "E8": [block(activations=["identity"], norms=["batchnorm", "none"])],
        }
    )
    none, bn = grid.job_families(config, job())
    assert bn["batch_probes"] == ["identity"] and bn["conditional"]
    assert bn["init_batch_sizes"] == [4, 16, 64, 256]  # the default
    assert none["batch_probes"] == ["identity"] and "conditional" not in none  # no batch stats
    assert "init_batch_sizes" not in none
    (d4,) = grid.job_families(config, job(depth="4"))
    assert d4["batch_probes"] == [] and "conditional" not in d4  # [] : skip them
    config["experiments"].pop("E4")
    assert all("init_batch_sizes" not in f for f in grid.job_families(config, job()))


def test_boundary_grids_are_drawn_only_where_the_boundary_figure_reads_them():
    """On a 2-D set: inference-mode grids for E6's activations; at E8's small batch size
    (vocab.CONDITIONAL_BATCH) fixed-mates grids too, for its batch-statistics families; none
    where E6 is not in the config. Other datasets get neither key."""
    two_d = dict(datasets=["spirals"])
    config = config_with(
        {
            "E1": [block(**two_d, activations=["identity", "relu", "gelu"], norms=["batchnorm"])],
            "E6": [block(**two_d, activations=["identity", "relu"], norms=["batchnorm", "none"])],
            "E8": [
                block(
                    **two_d,
                    activations=["identity"],
                    norms=["batchnorm", "none"],
                    batch_sizes=[vocab.CONDITIONAL_BATCH, 32],
                )
            ],
        }
    )
    none, bn = grid.job_families(config, job(dataset="spirals"))
    assert bn["boundaries"] == ["identity", "relu"] and not bn["boundary_mates"]
    assert none["boundaries"] == ["identity", "relu"] and not none["boundary_mates"]
    small = job(dataset="spirals", batch_size=str(vocab.CONDITIONAL_BATCH))
    none, bn = grid.job_families(config, small)
    assert bn["boundaries"] == ["identity"] and bn["boundary_mates"]
    assert none["boundaries"] == [] and not none["boundary_mates"]  # no batch statistics
    config["experiments"].pop("E6")
    for wc in (job(dataset="spirals"), small):
        assert all(f["boundaries"] == [] for f in grid.job_families(config, wc))
        assert not any(f["boundary_mates"] for f in grid.job_families(config, wc))
    config["experiments"]["E1"][0]["datasets"] = ["mnist1d"]
    assert all("boundaries" not in f for f in grid.job_families(config, job()))


def test_training_settings_with_per_dataset_override_and_schema_defaults():
    config = config_with(
        {"E1": [block(datasets=["mnist1d", "spirals"])]},
        per_dataset={"spirals": {"epochs": 9, "lrs": [0.5]}},
    )
    assert grid.training(config, "mnist1d")["epochs"] == 2
    s = grid.training(config, "spirals")
    assert s["epochs"] == 9 and s["lrs"] == [0.5] and s["seeds"] == [0, 1]
    assert s["optimizer"] == "adam" and s["test_batch_sizes"] == [2, 8, 32, 256, "full"]  # defaults
    opts = grid.train_options(config, job(dataset="spirals"))
    assert opts["lrs"] == "0.5" and opts["seeds"] == "0 1" and opts["epochs"] == "9"
    assert '"groups"' not in opts["families"]  # only groupnorm families name their groups
    config = config_with(
        {"E1": [block(datasets=["spirals"], norms=["groupnorm"])]},
        per_dataset={"spirals": {"epochs": 9, "lrs": [0.5]}},
    )
    assert '"groups":8' in grid.train_options(config, job(dataset="spirals"))["families"]


def test_prepare_options_and_resources():
    config = config_with({"E1": [block()]})
    config["data"] = {"mnist1d": {"n_samples": 800, "val_size": 100}}
    assert grid.prepare_options(config, "mnist1d") == "--val-size 100 --n-samples 800"
    assert grid.prepare_options(config, "digits") == ""
    config["resources"] = {"per_dataset": {"cifar10": {"mem_mb": 9000}}}
    validate(config, SCHEMA)
    assert grid.resources(config, "cifar10") == {"threads": 1, "mem_mb": 9000, "runtime": 30}
    config["experiments"]["E9"] = [block(norms=["groupnorm", "none"], groups=[2, 4])]
    assert grid.job_runtime(config, job()) == 4 * 30  # batchnorm, none, groupnorm 2 and 4
    assert grid.resources(config, "mnist1d")["mem_mb"] == 2000
    assert grid.use_gpu({"resources": {"gpu": False}}) is False
    assert grid.use_gpu({"resources": {"gpu": True}}) is True


def test_job_cost_grows_with_the_training_work():
    """The training rule's priority: a job's expected seconds, from its families, models, steps
    and layers (the costliest start first)."""
    config = config_with({"E1": [block(activations=["relu", "tanh"], depths=[2, 8])]})
    config["data"] = {"mnist1d": {"n_samples": 1000}}
    base = grid.job_cost(config, job())
    n_train = data.train_size("mnist1d", n_samples=1000)
    steps, models_ = 2 * (n_train // 32), 2 * 2 * 2  # epochs x batches; activations x seeds x lrs
    expected = grid.COST_PER_FAMILY + 3 * (
        grid.COST_PER_FAMILY_LAYER + grid.COST_PER_MODEL_STEP_LAYER * steps * models_
    )
    assert base == pytest.approx(expected, abs=0.05)
    assert grid.job_cost(config, job(depth="8")) > base  # more layers
    smaller = config_with(config["experiments"], batch_size=16)
    smaller["data"] = config["data"]
    assert grid.job_cost(smaller, job(batch_size="16")) > base  # more steps
    more = config_with({"E1": [block(activations=["relu", "tanh"], norms=["batchnorm", "none"])]})
    more["data"] = config["data"]
    assert grid.job_cost(more, job()) > base  # two families
    wider = config_with({"E1": [block(activations=["relu", "tanh"], widths=[256])]})
    wider["data"] = config["data"]
    assert grid.job_cost(wider, job(width="256")) > base
    # a reference job: a constant per training example and seed
    assert grid.reference_cost(config, "mnist1d") == pytest.approx(
        grid.COST_PER_REFERENCE_EXAMPLE * n_train * 2, abs=0.05
    )


# --- validation: schema and semantic checks -------------------------------------------------


@pytest.mark.parametrize(
    "edit, key, allowed",
    [
        (lambda c: c["experiments"]["E1"][0].update(activations=["swish"]), "activations", "relu"),
        (lambda c: c["experiments"]["E1"][0].update(depths=[0]), "depths", "minimum of 1"),
        (lambda c: c["experiments"]["E1"][0].update(norms=[]), "norms", "non-empty"),
        (lambda c: c.update(experiments={}), "experiments", "non-empty"),
        (lambda c: c["experiments"].update(E10=c["experiments"]["E1"]), "E10", "E9"),
        (lambda c: c["training"].update(schedule="linear"), "schedule", "cosine"),
        (
            lambda c: c["experiments"]["E1"][0].update(activation=["relu"]),
            "activation",
            "unexpected",
        ),
    ],
)
def test_schema_rejects_bad_configs_naming_the_key(edit, key, allowed):
    config = {
        "training": {"seeds": [0], "lrs": [0.1], "epochs": 1, "batch_size": 8},
        "experiments": {"E1": [block()]},
    }
    edit(config)
    with pytest.raises(WorkflowError) as e:
        validate(config, SCHEMA)
    message = (
        str(e.value)
        + str(e.value.__cause__ or "")
        + "".join(map(str, getattr(e.value, "args", [])))
    )
    assert key in message and allowed in message


def test_groupnorm_groups_must_divide_every_width():
    config = config_with({"E1": [block(norms=["none", "groupnorm"], widths=[16, 20])]}, groups=8)
    with pytest.raises(
        grid.ConfigError, match=r"experiments\.E1\[0\]\.widths.*training\.groups = 8.*20"
    ):
        grid.check(config)
    config["training"]["groups"] = 4
    grid.check(config)  # 4 divides 16 and 20
    config["training"]["per_dataset"] = {"mnist1d": {"groups": 3}}
    with pytest.raises(grid.ConfigError, match=r"training\.per_dataset\.mnist1d\.groups = 3"):
        grid.check(config)
    # widths of other norms are free
    grid.check(config_with({"E1": [block(norms=["batchnorm"], widths=[15])]}, groups=8))


def test_e6_needs_2d_datasets():
    with pytest.raises(
        grid.ConfigError, match=r"experiments\.E6\[0\]\.datasets.*mnist1d.*spirals, xor"
    ):
        grid.check(config_with({"E6": [block(datasets=["spirals", "mnist1d"])]}))


# --- the shipped configs --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "smoke", "full"])
def test_shipped_configs_are_valid_and_cover_every_experiment(name):
    config = load(name)
    grid.check(config)
    cells = grid.cells(config)
    assert set(config["experiments"]) == set(vocab.EXPERIMENTS)
    used = {e for members in cells.values() for e in members}
    assert used == set(vocab.EXPERIMENTS)
    for dataset in grid.datasets(config):
        assert len(grid.training(config, dataset)["seeds"]) >= 3


def test_default_config_covers_the_protocol():
    config = load("default")
    cells = grid.cells(config)
    of = lambda e: [c for c, m in cells.items() if e in m]  # noqa: E731
    e1 = of("E1")
    assert {c.dataset for c in e1} >= {"mnist1d"} and {c.dataset for c in e1} & set(vocab.TWO_D)
    assert {(c.activation, c.norm) for c in e1} >= {
        ("identity", "none"),
        ("identity", "batchnorm"),
        ("identity", "zscore"),
        ("relu", "batchnorm"),
    }
    assert {c.norm for c in of("E2") if c.activation == "identity"} >= {
        "batchnorm",
        "zscore",
        "layernorm",
    }
    assert {c.norm for c in of("E3")} & {"batchnorm", "zscore"}
    e4 = of("E4")
    for pair in [("identity", "batchnorm"), ("relu", "batchnorm"), ("relu", "none")]:
        assert {c.depth for c in e4 if (c.activation, c.norm) == pair} >= {1, 2, 4, 8, 16}
    assert {c.placement for c in of("E5")} == {"pre", "post"}
    assert {c.dataset for c in of("E6")} == set(vocab.TWO_D)
    assert {c.norm for c in of("E7") if c.activation == "identity"} >= {
        "none",
        "zscore",
        "batchnorm",
    }


def test_full_config_is_the_full_study():
    config = load("full")
    cells = grid.cells(config)
    assert {c.activation for c in cells} == set(vocab.ACTIVATIONS)
    assert {c.norm for c in cells} == set(vocab.NORMS)
    assert {c.placement for c in cells} == {"pre", "post"}
    assert max(c.depth for c in cells) >= 32
    assert {c.dataset for c in cells} == set(vocab.DATASETS)
    assert all(len(grid.training(config, d)["seeds"]) >= 10 for d in vocab.DATASETS)
    assert config["data"]["mnist1d"]["n_samples"] >= 40000


# --- aggregation ----------------------------------------------------------------------------


def fake_run(cell: grid.Cell, seeds, lrs, val_acc, diverged=None, sizes=(2, "full")) -> dict:
    """The tables of one cell as `bnstudy train` writes them (the columns the aggregation
    touches), built by the same function (results.run_tables)."""
    n = len(seeds) * len(lrs)
    ident = {**{k: getattr(cell, k) for k in results.CELL_KEYS}, "groups": 8}
    scalars = {
        "train_acc": np.full(n, 0.5),
        "val_acc": np.asarray(val_acc, float),
        "test_acc": np.full(n, 0.4),
        "diverged": np.zeros(n, bool) if diverged is None else np.asarray(diverged),
        "affine_gap": np.full(n, 1e-7),
        "fold_max_dev": np.full(n, np.nan),
        "train_seconds": np.random.default_rng().random(n),
    }  # wall clock: must not reach metrics
    batch = [
        {
            "test_batch_size": 100 if b == "full" else b,
            "full": b == "full",
            "composition": c,
            "accuracy": np.full(n, 0.3),
            "flip_rate": np.full(n, np.nan),
        }
        for b in sizes
        for c in ("random", "class")
    ]
    grads = [
        {
            "grad_batch_size": cell.batch_size,
            "draws": 1,
            "norms": np.ones((n, cell.depth + 1)),
            "input_rank": np.full(n, 40),
        }
    ]
    history = {"val_acc": np.outer([0.1, 0.2], np.ones(n))}
    return results.run_tables(
        ident,
        np.repeat(seeds, len(lrs)),
        np.tile(np.float32(lrs), len(seeds)),
        scalars,
        batch,
        grads,
        history,
    )


KINDS = {
    "run": grid.RUN,
    "history": grid.HISTORY,
    "batchstats": grid.BATCHSTATS,
    "layers": grid.LAYERS,
}


def write_cells(tables: dict) -> None:
    """Write the tables of cells (cell -> its tables) into their training jobs' files, as the
    training jobs do."""
    families = {}
    for cell, t in tables.items():
        families.setdefault(cell.path(grid.RUN), []).append((cell, t))
    for members in families.values():
        for kind, pattern in KINDS.items():
            frame = pd.concat([t[kind] for _, t in members], ignore_index=True)
            results.write_parquet(frame, members[0][0].path(pattern))


def collect_files(cells) -> dict:
    """kind -> the files of the cells' training jobs, each once."""
    return {kind: grid.paths(dict.fromkeys(cells, ("E1",)), p) for kind, p in KINDS.items()}


def test_select_lr_mean_over_seeds_divergence_and_ties():
    cell = grid.Cell("mnist1d", "relu", "none", "pre", 2, 16, 64, 8)
    seeds, lrs = [0, 1], [0.01, 0.1, 1.0]
    # rows seed-major: (s0: .01 .1 1), (s1: .01 .1 1)
    runs = fake_run(
        cell,
        seeds,
        lrs,
        val_acc=[0.5, 0.7, 0.9, 0.6, 0.7, 0.9],
        diverged=[False, False, False, False, False, True],
    )["run"]
    sel = results.select_lr(runs)
    assert runs.loc[sel, "lr"].tolist() == [np.float32(0.1)] * 2  # lr 1.0 had a diverged seed
    # every learning rate diverged somewhere: all eligible, best mean wins
    runs = fake_run(cell, seeds, lrs, val_acc=[0.5, 0.7, 0.9, 0.6, 0.7, 0.9], diverged=[True] * 6)[
        "run"
    ]
    assert runs.loc[results.select_lr(runs), "lr"].tolist() == [1.0] * 2
    # ties go to the smaller learning rate; NaN counts as 0
    runs = fake_run(cell, seeds, lrs, val_acc=[0.8, 0.8, np.nan, 0.8, 0.8, 1.0])["run"]
    assert runs.loc[results.select_lr(runs), "lr"].tolist() == [np.float32(0.01)] * 2


def test_collect_builds_the_study_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiments = {
        "E1": [block(activations=["identity", "relu"])],
        "E4": [block(activations=["relu"], depths=[2, 4])],
    }
    cells = grid.cells({"experiments": experiments})
    write_cells(
        {
            cell: fake_run(
                cell,
                [0, 1, 2],
                [0.01, 0.1],
                val_acc=np.linspace(0.1, 0.6, 6) + i / 100,
                sizes=(2, "full") if cell.depth == 2 else (8,),
            )
            for i, cell in enumerate(cells)
        }
    )
    assert len(collect_files(cells)["run"]) == 2  # families: (batchnorm, d2) holds two cells

    tables = results.collect(experiments, collect_files(cells))
    metrics, history = tables["metrics"], tables["history"]
    assert list(metrics.columns[: len(results.ROW_KEYS) + 1]) == results.ROW_KEYS + ["selected"]
    assert "train_seconds" not in metrics.columns
    # only per-run scalars in metrics
    assert all(metrics[c].map(np.isscalar).all() for c in metrics.columns)
    # one row per (experiment, cell, seed, lr); the shared cell appears under both experiments
    assert len(metrics) == (2 + 2) * 6 and not metrics.duplicated(results.ROW_KEYS).any()
    shared = metrics[(metrics.activation == "relu") & (metrics.depth == 2)]
    assert sorted(shared.experiment.unique()) == ["E1", "E4"]
    assert (
        shared[shared.experiment == "E1"]
        .drop(columns="experiment")
        .reset_index(drop=True)
        .equals(shared[shared.experiment == "E4"].drop(columns="experiment").reset_index(drop=True))
    )
    # one selected lr per (experiment, cell), all its seeds marked
    sel = metrics[metrics.selected].groupby(["experiment"] + results.CELL_KEYS)
    assert (sel.size() == 3).all() and (sel["lr"].nunique() == 1).all()
    # learning rates as in the config, though the run files hold float32
    assert metrics["lr"].dtype == np.float64 and sorted(metrics["lr"].unique()) == [0.01, 0.1]
    # canonical order: identity before relu, E1 before E4
    assert metrics.iloc[0][["experiment", "activation", "seed", "lr"]].tolist() == [
        "E1",
        "identity",
        0,
        0.01,
    ]
    # the long tables: per epoch, per test batch, per layer, with the experiment and the selection
    assert len(history) == len(metrics) * 2
    selected = metrics.set_index(results.ROW_KEYS)["selected"]
    for name in ("history", "layers", "batchstats"):
        t = tables[name]
        assert (
            t.groupby(results.ROW_KEYS)["selected"]
            .first()
            .equals(selected.loc[t.groupby(results.ROW_KEYS).size().index])
        )
    layers = tables["layers"]
    assert (
        layers.groupby(results.ROW_KEYS).size()
        == layers.groupby(results.ROW_KEYS)["depth"].first() + 1
    ).all()
    bs = tables["batchstats"]
    d4 = bs[bs.depth == 4]  # test batch sizes are rows: each cell has the ones it evaluated
    assert set(d4["test_batch_size"]) == {8} and set(bs[bs.depth == 2]["full"]) == {False, True}
    assert set(bs["composition"]) == set(vocab.COMPOSITIONS)


def test_collect_rejects_a_missing_or_foreign_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiments = {"E1": [block()]}
    (cell,) = grid.cells({"experiments": experiments})
    other = grid.Cell(**{**copy.copy(cell.__dict__), "norm": "none"})
    write_cells({cell: fake_run(other, [0], [0.1], val_acc=[0.5])})
    with pytest.raises(ValueError, match="is not in the configured experiments"):
        results.collect(experiments, collect_files([cell]))
    with pytest.raises(ValueError, match="no file given for the cells"):
        results.collect(experiments, {k: [] for k in collect_files([cell])})


def test_remove_partial_files(tmp_path):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    keep = [tmp_path / "runs" / "x" / "a.parquet", tmp_path / "jax-cache-entry"]
    stale = [tmp_path / "runs" / "x" / ".a.parquet.k2j3.tmp", tmp_path / ".metrics.csv.abc.tmp"]
    for p in keep + stale:
        p.write_text("x")
    assert sorted(results.remove_partial_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
