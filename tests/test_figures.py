"""Figures and tables on a synthetic results table with the contract's exact columns.

`synthetic_results` builds the study's tables (metrics, history, batchstats, layers, boundary
files, the linear reference, and the statistics of bnstudy.stats) whose answers are known by
construction: identity + BatchNorm/z-score equal the linear reference up to small seed noise,
LayerNorm and ReLU networks are clearly better. test_paper.py and test_stats.py reuse it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy import figures, grid, results, stats, tables, vocab
from bnstudy.formats import acc_cell

BATCHES = (2, 8, 32, 256)
BASE_ACC = {"spirals": 0.52, "digits": 0.95}  # the linear reference's accuracy
LIFT = {
    ("identity", "none"): 0.0,
    ("identity", "batchnorm"): 0.0,
    ("identity", "zscore"): 0.0,
    ("identity", "layernorm"): 0.30,
    ("identity", "rmsnorm"): 0.28,
}


def _true_acc(dataset, activation, norm):
    """The known population mean accuracy of a cell."""
    lift = LIFT.get((activation, norm), 0.40)
    return (
        min(BASE_ACC[dataset] + lift, 0.99 if dataset == "digits" else 0.995)
        if lift
        else BASE_ACC[dataset]
    )


def _row(
    rng,
    experiment,
    dataset,
    activation,
    norm,
    placement,
    depth,
    width,
    seed,
    lr,
    best_lr,
    batch_size=64,
    groups=8,
):
    acc = (
        _true_acc(dataset, activation, norm) + rng.normal(0, 0.003) - (0.05 if lr != best_lr else 0)
    )
    foldable = activation == "identity" and norm in ("none", "batchnorm", "zscore")
    bn = norm in ("batchnorm", "zscore")
    r = {
        "experiment": experiment,
        "dataset": dataset,
        "activation": activation,
        "norm": norm,
        "placement": placement,
        "depth": depth,
        "width": width,
        "batch_size": batch_size,
        "groups": groups,
        "seed": seed,
        "lr": lr,
        "optimizer": "adam",
        "schedule": "constant",
        "epochs": 5,
        "train_loss": 1 - acc,
        "train_acc": acc + 0.01,
        "val_loss": 1 - acc,
        "val_acc": acc,
        "test_loss": 1 - acc,
        "test_acc": acc,
        "diverged": False,
        "diverged_step": -1,
        "affine_gap": abs(rng.normal(1e-7, 2e-8))
        if activation == "identity" and norm in ("none", "batchnorm", "zscore")
        else abs(rng.normal(0.2, 0.05)),
        "fold_max_dev": abs(rng.normal(2e-6, 5e-7)) if foldable else np.nan,
        "fold_rel_dev": abs(rng.normal(1e-7, 1e-8)) if foldable else np.nan,
        "fold_agreement": 1.0 if foldable else np.nan,
        "n_params": 1000,
        "device": "cpu",
        "train_seconds": 12.5,
    }
    batch = []
    for b in [*sorted({*BATCHES, batch_size}), "full"]:
        small = 0.3 / np.sqrt(b) if b != "full" else 0.0
        for comp, drop in (("random", small), ("class", 3 * small)):
            batch.append(
                {
                    "test_batch_size": 400 if b == "full" else b,
                    "full": b == "full",
                    "composition": comp,
                    "accuracy": acc - drop,
                    "flip_rate": small if comp == "random" and b != "full" else np.nan,
                    "flip_rate_confident": small / 2
                    if comp == "random" and b != "full"
                    else np.nan,
                }
            )
    keys = {k: r[k] for k in ("experiment", *vocab.RUN_KEYS)}
    r["_batch"] = [{**keys, **x} for x in batch] if bn else []
    r["_layers"] = []
    for b in sorted({4, 16, batch_size}) if experiment == "E4" else [batch_size]:
        rate = 0.2 + 1 / b  # smaller batches: faster growth, as in Proposition 6
        grads = np.exp(rate * (depth - np.arange(depth + 1)) * (norm == "batchnorm"))
        grads = grads * rng.uniform(0.9, 1.1, depth + 1)
        r["_layers"] += [
            {
                **keys,
                "grad_batch_size": b,
                "draws": 2048 // b,
                "input_rank": 64,
                "layer": i,
                "grad_norm_init": float(g),
            }
            for i, g in enumerate(grads)
        ]
    return r


def synthetic_results(tmp_path, seeds=(0, 1, 2, 3, 4), lrs=(1e-3, 1e-2)) -> dict:
    """Input name (vocab.INPUTS) -> table: a complete synthetic run of E1-E7 on spirals and digits,
    with its statistics; no benchmark files."""
    rng = np.random.default_rng(0)
    plan = []
    e1_acts, e1_norms = (
        ("identity", "relu", "tanh"),
        ("none", "batchnorm", "zscore", "layernorm", "rmsnorm"),
    )
    for d in BASE_ACC:
        plan += [("E1", d, a, n, "pre", 2, 32) for a in e1_acts for n in e1_norms]
        plan += [("E2", d, "identity", n, "pre", 2, 32) for n in e1_norms]
        plan += [("E3", d, a, "batchnorm", "pre", 2, 32) for a in ("identity", "relu")]
        plan += [
            ("E5", d, a, n, p, 2, 32)
            for a in ("relu", "tanh")
            for n in ("batchnorm", "layernorm")
            for p in ("pre", "post")
        ]
        plan += [("E7", d, "identity", n, "pre", 2, 32) for n in ("none", "zscore", "batchnorm")]
    plan += [
        ("E4", "digits", a, n, "pre", dp, 32)
        for a, n in (("identity", "batchnorm"), ("relu", "batchnorm"), ("relu", "none"))
        for dp in (2, 4, 8, 16)
    ]
    plan += [
        ("E6", "spirals", a, n, "pre", 2, 32)
        for a in ("identity", "relu", "tanh")
        for n in ("none", "batchnorm", "layernorm")
    ]
    rows = [_row(rng, *cell, seed, lr, lrs[0]) for cell in plan for seed in seeds for lr in lrs]
    # E8: batch sizes 4 and 64 (spirals); E9: groupnorm over its groups (digits)
    for b in (vocab.CONDITIONAL_BATCH, 64):
        for a, n in (("identity", "batchnorm"), ("relu", "batchnorm"), ("identity", "zscore")):
            for seed in seeds:
                for lr in lrs:
                    r = _row(rng, "E8", "spirals", a, n, "pre", 2, 32, seed, lr, lrs[0], b)
                    small = b == vocab.CONDITIONAL_BATCH
                    r["cond_test_acc"] = r["test_acc"] + (0.05 if small else 0.0)
                    r["cond_affine_gap"] = 0.3 if small else 0.01
                    rows.append(r)
    for g in (1, 4, 32):
        for seed in seeds:
            for lr in lrs:
                rows.append(
                    _row(
                        rng,
                        "E9",
                        "digits",
                        "identity",
                        "groupnorm",
                        "pre",
                        2,
                        32,
                        seed,
                        lr,
                        lrs[0],
                        groups=g,
                    )
                )
    for a, n in (("identity", "layernorm"), ("relu", "batchnorm")):
        for seed in seeds:
            for lr in lrs:
                rows.append(_row(rng, "E9", "digits", a, n, "pre", 2, 32, seed, lr, lrs[0]))
    batch = pd.DataFrame([x for r in rows for x in r.pop("_batch")])
    layers = pd.DataFrame([x for r in rows for x in r.pop("_layers")])
    metrics = pd.DataFrame(rows)
    for t in (metrics, batch, layers):
        t["selected"] = t["lr"] == lrs[0]
    hist = []
    for r in metrics.itertuples():
        for epoch in range(1, 6):
            speed = {"none": 0.5, "zscore": 1.0, "batchnorm": 1.5}.get(r.norm, 1.0)
            hist.append(
                {k: getattr(r, k) for k in ["experiment", *vocab.RUN_KEYS, "selected"]}
                | {
                    "epoch": epoch,
                    "train_loss": 0.3 + np.exp(-speed * epoch),
                    "train_acc": r.train_acc,
                    "val_loss": r.val_loss,
                    "val_acc": r.val_acc - 0.1 * np.exp(-speed * epoch),
                }
            )
    history = pd.DataFrame(hist)
    boundaries = []
    xs = np.linspace(-2, 2, 200)
    xx, yy = np.meshgrid(xs, xs)
    x_train = rng.uniform(-1.8, 1.8, (500, 2)).astype(np.float32)
    y_train = (np.sin(3 * x_train[:, 0]) > x_train[:, 1]).astype(np.int32)
    drawn = (metrics["experiment"] == "E6") | (
        (metrics["experiment"] == "E8") & (metrics["batch_size"] == vocab.CONDITIONAL_BATCH)
    )
    e6 = metrics[drawn].drop_duplicates(list(vocab.CELL_KEYS))
    for _, job in e6.groupby(list(grid.JOB_KEYS)):  # one boundary file per training job
        path = tmp_path / grid.Cell(*job.iloc[0][list(vocab.CELL_KEYS)]).path(grid.BOUNDARY)
        path.parent.mkdir(parents=True, exist_ok=True)
        per_model = len(seeds) * len(lrs)
        preds, batch_preds = [], []
        for cell in job.itertuples():  # the job's models: family, then activation-major
            linear = cell.activation == "identity" and cell.norm != "layernorm"
            pred = (yy > 0.3 * xx) if linear else (np.sin(3 * xx) > yy)
            preds.append(np.repeat(pred[None].astype(np.int32), per_model, 0))
            mates = (np.sin(2 * xx) > yy) if cell.norm in vocab.BATCH_STAT_NORMS else -1 + 0 * xx
            batch_preds.append(np.repeat(mates[None].astype(np.int32), per_model, 0))
        arrays = {
            "xx": xx,
            "yy": yy,
            "pred_inference": np.concatenate(preds),
            "pred_batch": np.concatenate(batch_preds),  # -1: not a batch-statistics network
            "norms": np.repeat(job["norm"].to_numpy(str), per_model),
            "groups": np.repeat(job["groups"].to_numpy(int), per_model),
            "activations": np.repeat(job["activation"].to_numpy(str), per_model),
            "seeds": np.tile(np.repeat(np.asarray(seeds, np.int32), len(lrs)), len(job)),
            "lrs": np.tile(np.asarray(lrs, np.float32), len(seeds) * len(job)),
            "x_train": x_train,
            "y_train": y_train,
        }
        np.savez(path, **arrays)
        boundaries.append(path)
    reference = pd.DataFrame(
        [
            {"dataset": d, "seed": s, "test_acc": BASE_ACC[d] + rng.normal(0, 0.003)}
            for d in BASE_ACC
            for s in seeds
        ]
    )
    return {
        "metrics": metrics,
        "history": history,
        "batchstats": batch,
        "layers": layers,
        "boundaries": boundaries,
        "reference": reference,
        **stats.study(metrics, reference, batch),
        "benchmarks": results.read_benchmarks([]),
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_results(tmp_path_factory.mktemp("synthetic"))


def _pdf_pages(path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


@pytest.mark.parametrize("fig", vocab.FIGURES)
def test_every_figure_is_a_one_page_vector_pdf(synthetic, tmp_path, fig):
    out = tmp_path / f"{fig}.pdf"
    figures.draw(fig, synthetic, out)
    assert out.read_bytes()[:5] == b"%PDF-"
    assert _pdf_pages(out) == 1
    # The figure is text, not an image of text: its labels are extractable.
    text = _text(out)
    expected = {
        "e1_heatmaps": "linear",
        "e2_collapse": "affine",
        "e3_batch_dependence": "flip rate",
        "e4_depth": "depth",
        "e5_placement": "post",
        "e6_boundaries": "spirals",
        "e7_dynamics": "training loss",
        "e8_batch_size": "batch size",
        "e8_saturation": "closed form",
        "e9_groups": "groups",
    }[fig]
    assert expected in text
    assert "missing" not in text


def _text(pdf) -> str:
    return subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_figure_without_its_experiment_says_so(synthetic, tmp_path):
    out = tmp_path / "e4.pdf"
    figures.draw(
        "e4_depth", {**synthetic, "metrics": synthetic["metrics"].query("experiment != 'E4'")}, out
    )
    assert "no E4 runs" in _text(out)


def test_e1_heatmap_prints_the_cell_means(synthetic, tmp_path):
    out = tmp_path / "e1.pdf"
    figures.draw("e1_heatmaps", synthetic, out)
    s = synthetic["summary"]
    cell = s[
        (s["experiment"] == "E1")
        & (s["dataset"] == "digits")
        & (s["activation"] == "identity")
        & (s["norm"] == "batchnorm")
    ]
    assert f"{100 * cell['mean'].iloc[0]:.1f}" in _text(out)


def test_main_table_quotes_means_and_intervals(synthetic):
    summary = synthetic["summary"]
    tex = tables.make("main", synthetic)
    row = summary[
        (summary["experiment"] == "E1")
        & (summary["dataset"] == "spirals")
        & (summary["activation"] == "identity")
        & (summary["norm"] == "none")
    ].iloc[0]
    assert acc_cell(row["mean"], row["ci_lo"], row["ci_hi"]) in tex
    assert (
        f"{100 * row['mean']:.1f}" in tex
        and f"[{100 * row['ci_lo']:.1f}, {100 * row['ci_hi']:.1f}]" in tex
    )
    assert tex.count("\\toprule") == 1 and "\\bottomrule" in tex


def test_compute_table_reads_the_benchmark_files_of_the_cells(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell = grid.Cell("digits", "relu", "none", "pre", 16, 32, 64, 8)
    other = grid.Cell("digits", "relu", "none", "pre", 16, 64, 64, 8)  # not a cell of this run
    for c, s in ((cell, 3600.0), (other, 7200.0)):
        path = Path(c.path(grid.TRAIN_BENCHMARK))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{s}\t1:00:00\t100\n")
    bench = results.read_benchmarks(
        [cell.path(grid.TRAIN_BENCHMARK), other.path(grid.TRAIN_BENCHMARK)]
    )
    tex = tables.make("compute", {**synthetic, "benchmarks": bench})
    e4 = next(line for line in tex.splitlines() if line.startswith("E4 "))
    assert (
        "60.0 min" in e4
    )  # the one benchmarked cell of the run is an E4 cell; the other counts nowhere
    e1 = next(line for line in tex.splitlines() if line.startswith("E1 "))
    assert "--" in e1
    assert "1.0 h" not in tex and "2.0 h" not in tex
