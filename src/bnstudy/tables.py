"""Booktabs tables for the paper: LaTeX `tabular` fragments that the paper `\\input`s.

One function per table of the registry (`vocab.OUTPUTS`, kind "table"), named like it and taking
the study tables it lists as `inputs` as keyword arguments; `make` calls it by name. The caption
and label live in the paper's .tex, so the prose owns the framing and the data owns the numbers.
Accuracies print as percentages with one decimal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnstudy import grid, stats, vocab
from bnstudy.formats import (
    acc_cell,
    acc_ci,
    diff_ci,
    p_equals,
    pct,
    pct_down,
    points,
    pvalue,
    sci,
    seconds,
    share_ci,
    tex_escape,
)
from bnstudy.names import canonical, composition, label, network, ordered


def tabular(header: list[str], rows: list[list[str]], align: str, rules_before=()) -> str:
    """A booktabs tabular with a \\midrule before each row index in `rules_before`."""
    lines = [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(rows):
        if i in rules_before and i > 0:
            lines.append("\\midrule")
        lines.append(" & ".join(row) + " \\\\")
    return "\n".join(lines + ["\\bottomrule", "\\end{tabular}", ""])


def _changes(values: list) -> list[int]:
    """Row indices where `values` differs from the row before (where a group starts)."""
    return [i for i in range(1, len(values)) if values[i] != values[i - 1]]


def _grouped(rows: list[list[str]], groups: list) -> list[list[str]]:
    """`rows` with their first cell (the group's name) blanked on every row but the first of each
    group (`groups`: the group of each row), for tables that rule off their groups."""
    starts = {0, *_changes(groups)}
    return [row if i in starts else ["", *row[1:]] for i, row in enumerate(rows)]


def _dataset_label(frame: pd.DataFrame, row) -> str:
    """The dataset's name, plus ' (post, d4, w64)' when it has several settings in `frame`."""
    same = frame[frame["dataset"] == row.dataset][["placement", "depth", "width"]].drop_duplicates()
    name = label(row.dataset)
    return name if len(same) <= 1 else f"{name} ({row.placement}, d{row.depth}, w{row.width})"


_is = stats.rows_matching


# The compositions the main table shows (those the run has), in this order.
MAIN_CELLS = (
    vocab.LINEAR,
    vocab.BN_ONLY,
    vocab.ZSCORE_ONLY,
    *(("identity", n) for n in vocab.PER_EXAMPLE_NORMS),
    ("relu", "none"),
    vocab.RELU_BN,
)


def _reference_row(reference: pd.DataFrame, cols: pd.DataFrame, column: str) -> list[str]:
    """The mean [t interval] over seeds of `column` of the linear reference, per dataset column."""
    row = []
    for c in cols.itertuples():
        values = (
            reference.loc[reference["dataset"] == c.dataset, column] if column in reference else []
        )
        row.append(acc_cell(*stats.t_interval(values)) if len(values) else "--")
    return row


def main(summary: pd.DataFrame, reference: pd.DataFrame, experiment: str = "E1") -> str:
    """E1: the linear reference (and on 2-D sets the best half-plane), then the key compositions
    (rows), by dataset (columns): mean test accuracy with its interval over seeds."""
    s = summary[summary["experiment"] == experiment]
    cols = canonical(s[list(vocab.SETTING_KEYS)].drop_duplicates(), vocab.SETTING_KEYS)
    header = ["Network"] + [_dataset_label(cols, c) for c in cols.itertuples()]
    rows = [
        ["linear reference (logistic regression)", *_reference_row(reference, cols, "test_acc")]
    ]
    if "halfplane_test_acc" in reference and reference["halfplane_test_acc"].notna().any():
        rows.append(["best half-plane", *_reference_row(reference, cols, "halfplane_test_acc")])
    first_network = len(rows)
    for act, norm in MAIN_CELLS:
        cells = s[_is(s, activation=act, norm=norm)]
        if cells.empty:
            continue
        row = [network(act, norm)]
        for c in cols.itertuples():
            m = cells[_is(cells, **{k: getattr(c, k) for k in vocab.SETTING_KEYS})]
            row.append("--" if m.empty else acc_cell(*m[["mean", "ci_lo", "ci_hi"]].iloc[0]))
        rows.append(row)
    return tabular(header, rows, "l" + "c" * len(cols), [first_network])


def claims(gaps: pd.DataFrame, shares: pd.DataFrame) -> str:
    """E1, per setting: the nonlinearity gap (ReLU + BatchNorm minus the linear reference, points
    [t interval], Holm-corrected one-sided p), then every identity network: test accuracy, the
    share of the gap it recovers (% [Fieller interval]) and its verdict."""
    gaps, shares = stats.of_experiment(gaps, "E1"), stats.of_experiment(shares, "E1")
    header = ["Dataset", "Gap (points)", "Network", "Acc. (\\%)", "Share of gap (\\%)", "Verdict"]
    rows, starts = [], []
    for g in canonical(gaps, vocab.SETTING_KEYS).itertuples():
        mine = shares[_is(shares, **{k: getattr(g, k) for k in vocab.SETTING_KEYS})]
        mine = canonical(mine[mine["activation"] == "identity"], ["norm"])
        starts.append(len(rows))
        gap = [
            _dataset_label(gaps, g),
            f"\\makecell[tl]{{{diff_ci(g.gap, g.gap_lo, g.gap_hi)}\\\\{{\\scriptsize {pvalue_text(g.p_gap_holm)}}}}}",
        ]
        for i, r in enumerate(mine.itertuples()):
            rows.append(
                [
                    *(gap if i == 0 else ["", ""]),
                    network(r.activation, r.norm),
                    pct(r.mean_acc),
                    share_ci(r.share, r.share_lo, r.share_hi),
                    r.verdict,
                ]
            )
    return tabular(header, rows, "llllll", starts)


def pvalue_text(p: float) -> str:
    """'$p < 0.001$' style text of a Holm-corrected p for a table cell."""
    return p_equals(p, "p_{\\mathrm{Holm}}")


def anchors(
    summary: pd.DataFrame, reference: pd.DataFrame, layers: pd.DataFrame, metrics: pd.DataFrame
) -> str:
    """Each published figure the study reproduces (vocab.ANCHORS) beside this run's value and its
    interval over seeds: MNIST-1D's logistic regression and ReLU MLP, and the per-layer growth of
    the input layer's gradient norm at initialization (E4)."""
    header = ["Quantity", "Published", "This run", "Source"]
    rows = []
    ref = reference[reference["dataset"] == "mnist1d"]["test_acc"] if len(reference) else []
    e0 = summary[(summary["experiment"] == "E0") & (summary["dataset"] == "mnist1d")]
    mlp = e0[_is(e0, activation=vocab.ANCHOR_MLP[0], norm=vocab.ANCHOR_MLP[1])]
    mlp = mlp.sort_values("width").tail(1)
    what = {
        "mnist1d_logistic": "MNIST-1D, logistic regression: test acc. (\\%)",
        "mnist1d_mlp": "MNIST-1D, ReLU MLP"
        + (
            f" (depth {int(mlp['depth'].iloc[0])}, width {int(mlp['width'].iloc[0])})"
            if len(mlp)
            else ""
        )
        + ": test acc. (\\%)",
        "grad_growth_relu_bn": "ReLU + BatchNorm: gradient growth per layer at init.",
        "grad_growth_relu": "ReLU, no norm, LeCun-normal init.: gradient growth per layer",
    }
    measured = {
        "mnist1d_logistic": acc_ci(*stats.t_interval(ref)) if len(ref) else "--",
        "mnist1d_mlp": acc_ci(*mlp[["mean", "ci_lo", "ci_hi"]].iloc[0]) if len(mlp) else "--",
        "grad_growth_relu_bn": growth_text(depth_growth(layers, vocab.RELU_BN)),
        "grad_growth_relu": growth_text(depth_growth(layers, ("relu", "none"))),
    }
    from bnstudy import theory

    predicted = {
        "grad_growth_relu_bn": theory.bn_growth("relu"),
        "grad_growth_relu": theory.plain_growth("relu"),
    }
    for key, (value, source) in vocab.ANCHORS.items():
        published = pct(value, 0) if value is not None else f"{predicted[key]:.2f}"
        rows.append([what[key], published, measured[key], f"\\citet{{{source}}}"])
    return tabular(header, rows, "lrrl")


def depth_growth(layers: pd.DataFrame, cell, experiment: str = "E4") -> dict:
    """`stats.depth_growth_by_seed` of the input layer's gradient norm at initialization of one
    (activation, norm) in `experiment`, over its depths."""
    first = stats.at_training_batch(stats.selected(layers, experiment))
    first = first[_is(first, layer=0, activation=cell[0], norm=cell[1])]
    return stats.depth_growth_by_seed(first.rename(columns={"grad_norm_init": "grad"}))


def growth_text(fit, digits: int = 2) -> str:
    """'1.22 [1.21, 1.23]' from a depth-growth fit; '--' when it could not be fitted."""
    if not np.isfinite(fit["factor"]):
        return "--"
    if not np.isfinite(fit["factor_lo"]):
        return f"{fit['factor']:.{digits}f}"
    return (
        f"{fit['factor']:.{digits}f} [{fit['factor_lo']:.{digits}f}, {fit['factor_hi']:.{digits}f}]"
    )


def e4(layers: pd.DataFrame, experiment: str = "E4") -> str:
    """E4: the input layer's gradient growth per added layer at initialization, per network and
    the batch size of the gradient, beside the mean-field prediction (a dagger where the theory
    gives only the large-batch limit)."""
    fits = stats.depth_growth_by_batch(layers, experiment)
    header = ["Network", "Batch size", "Measured", "Predicted"]
    rows = []
    for _, r in fits.iterrows():
        predicted = "--" if not np.isfinite(r["predicted"]) else f"{r['predicted']:.3f}"
        if np.isfinite(r["predicted"]) and not r["exact"]:
            predicted += "$^\\dagger$"
        network_name = composition(r["activation"], r["norm"])
        rows.append([network_name, str(int(r["grad_batch_size"])), growth_text(r, 3), predicted])
    names = [row[0] for row in rows]
    return tabular(header, _grouped(rows, names), "lrrr", rules_before=_changes(names))


def e8(metrics: pd.DataFrame, batchstats: pd.DataFrame, reference: pd.DataFrame, gaps) -> str:
    """E8, per dataset and training batch size: each BatchNorm-only network's test accuracy in
    each mode (stats.MODES) and, for batch-statistics mode, the share of the gap it recovers
    (% [Fieller interval]) and its verdict."""
    sf = stats.strong_form(metrics, batchstats, reference, gaps)
    header = [
        "Dataset",
        "$m$",
        "Network",
        "Inference",
        "Batch",
        "Fixed mates",
        "Share, batch",
        "Verdict",
    ]
    rows, starts = [], []
    if sf.empty:
        return tabular(header, [["--"] * len(header)], "l" * len(header))
    for d in ordered(sf["dataset"], vocab.DATASETS):
        starts.append(len(rows))
        for b in sorted(sf[sf["dataset"] == d]["batch_size"].unique()):
            for i, (act, norm) in enumerate(stats.STRONG_NETWORKS[:2]):
                r = sf[(sf["dataset"] == d) & (sf["batch_size"] == b)]
                r = r[(r["activation"] == act) & (r["norm"] == norm)].set_index("mode")
                if r.empty:
                    continue
                acc = {m: pct(r.loc[m, "mean"]) if m in r.index else "--" for m in stats.MODES}
                batch = r.loc["batch"] if "batch" in r.index else None
                rows.append(
                    [
                        label(d) if not rows or starts[-1] == len(rows) else "",
                        str(int(b)) if i == 0 else "",
                        composition(act, norm),
                        acc["inference"],
                        acc["batch"],
                        acc["conditional"],
                        share_ci(batch["share"], batch["share_lo"], batch["share_hi"])
                        if batch is not None
                        else "--",
                        batch["verdict"] if batch is not None else "--",
                    ]
                )
    return tabular(header, rows, "lrlrrrll", starts)


def e9(gaps: pd.DataFrame, shares: pd.DataFrame) -> str:
    """E9, per dataset: identity + GroupNorm at each number of groups, + LayerNorm and + RMSNorm:
    test accuracy, share of the gap (% [Fieller interval]) and verdict; the gap in the first row."""
    gaps, shares = stats.of_experiment(gaps, "E9"), stats.of_experiment(shares, "E9")
    shares = shares[(shares["activation"] == "identity") & (shares["norm"] != "none")]
    header = ["Dataset", "Gap (points)", "Network", "Acc. (\\%)", "Share of gap (\\%)", "Verdict"]
    rows, starts = [], []
    for g in canonical(gaps, vocab.SETTING_KEYS).itertuples():
        mine = shares[_is(shares, **{k: getattr(g, k) for k in vocab.SETTING_KEYS})]
        mine = canonical(mine, ["norm", "groups"])
        starts.append(len(rows))
        for i, r in enumerate(mine.itertuples()):
            name = network(r.activation, r.norm)
            if r.norm == "groupnorm":
                name += f", {int(r.groups)} group{'s' if r.groups != 1 else ''}"
            rows.append(
                [
                    _dataset_label(gaps, g) if i == 0 else "",
                    diff_ci(g.gap, g.gap_lo, g.gap_hi) if i == 0 else "",
                    name,
                    pct(r.mean_acc),
                    share_ci(r.share, r.share_lo, r.share_hi),
                    r.verdict,
                ]
            )
    return tabular(header, rows or [["--"] * len(header)], "llllll", starts)


def fold(metrics: pd.DataFrame, experiment: str = "E2") -> str:
    """E2, over all trained networks of each kind (every seed and learning rate): the largest fold
    deviation, the lowest agreement of the folded map, the median and largest affinity gap."""
    runs = metrics[metrics["experiment"] == experiment]
    header = [
        "Dataset",
        "Network",
        "Nets",
        "max fold dev.",
        "min agreement (\\%)",
        "median affinity gap",
        "max affinity gap",
    ]
    keys = canonical(
        runs[["dataset", "activation", "norm"]].drop_duplicates(), ["dataset", "activation", "norm"]
    )
    rows = []
    for k in keys.itertuples():
        g = runs[_is(runs, dataset=k.dataset, activation=k.activation, norm=k.norm)]
        folded = g["fold_max_dev"].dropna()
        rows.append(
            [
                label(k.dataset),
                composition(k.activation, k.norm),
                str(len(g)),
                f"${sci(folded.max())}$" if len(folded) else "--",
                pct_down(g["fold_agreement"].min()) if len(folded) else "--",
                f"${sci(g['affine_gap'].median())}$",
                f"${sci(g['affine_gap'].max())}$",
            ]
        )
    return tabular(header, rows, "llrrrrr", _changes(list(keys["dataset"])))


def placement(placement: pd.DataFrame) -> str:
    """E5: pre vs post test accuracy and the Holm-corrected difference test per composition."""
    header = [
        "Dataset",
        "Network",
        "pre (\\%)",
        "post (\\%)",
        "$\\Delta$ post$-$pre (points)",
        "$p$ (Holm)",
    ]
    e = canonical(placement, ["dataset", "activation", "norm", "depth", "width"])
    rows = [
        [
            label(r.dataset),
            composition(r.activation, r.norm),
            pct(r.mean_pre),
            pct(r.mean_post),
            diff_ci(r.diff, r.diff_lo, r.diff_hi),
            pvalue(r.p_diff_holm),
        ]
        for r in e.itertuples()
    ]
    return tabular(header, rows, "llrrrr", _changes(list(e["dataset"])))


def e3(composition: pd.DataFrame) -> str:
    """E3, per dataset and network: test accuracy with one-class batches minus that with random
    batches (points, mean over seeds) at each test batch size; an asterisk where the paired test
    rejects no difference after Holm's correction over the family (stats.composition_effects)."""
    sizes = sorted(composition["test_batch_size"].unique())
    header = ["Dataset", "Network", *[f"$m={int(b)}$" for b in sizes]]
    keys = list(vocab.CELL_KEYS)
    e = canonical(composition, keys + ["test_batch_size"])
    rows, datasets = [], []
    for key, g in e.groupby(keys, sort=False):
        by_size = g.set_index("test_batch_size")
        cells = []
        for b in sizes:
            if b not in by_size.index:
                cells.append("--")
                continue
            r = by_size.loc[b]
            star = "$^*$" if r["significant"] else ""
            cells.append(f"${points(r['diff'], '+')}${star}")
        rows.append([label(key[0]), network(key[1], key[2]), *cells])
        datasets.append(key[0])
    return tabular(header, _grouped(rows, datasets), "ll" + "r" * len(sizes), _changes(datasets))


DYNAMICS_NORMS = vocab.AFFINE_NORMS  # E7: identity networks with these norms (one function class)


DYNAMICS_CELLS = tuple(("identity", n) for n in DYNAMICS_NORMS)


def epoch_loss(
    history: pd.DataFrame, metrics: pd.DataFrame, experiment: str = "E7"
) -> pd.DataFrame:
    """E7: per dataset and norm (identity networks), at the learning rate they share
    (`stats.at_shared_lr`), the mean training loss (training mode, mean over the epoch's
    batches) of the first and of the last epoch, and the learning rate."""
    h = stats.at_shared_lr(history, metrics, experiment, DYNAMICS_CELLS)
    if h.empty:
        return pd.DataFrame(columns=["dataset", "norm", "lr", "loss_first", "loss_last"])
    first = h[h["epoch"] == h.groupby("dataset")["epoch"].transform("min")]
    last = h[h["epoch"] == h.groupby("dataset")["epoch"].transform("max")]
    keys = ["dataset", "norm", "lr"]
    return pd.concat(
        [
            first.groupby(keys)["train_loss"].mean().rename("loss_first"),
            last.groupby(keys)["train_loss"].mean().rename("loss_last"),
        ],
        axis=1,
    ).reset_index()


def dynamics(metrics: pd.DataFrame, history: pd.DataFrame, experiment: str = "E7") -> str:
    """E7, identity networks with no norm, z-score, BatchNorm at the learning rate they share:
    test accuracy [CI], and the training loss of the first and of the last epoch (one definition:
    training mode, mean over the epoch's batches; means over seeds)."""
    runs = stats.at_shared_lr(metrics, metrics, experiment, DYNAMICS_CELLS)
    losses = epoch_loss(history, metrics, experiment)
    header = [
        "Dataset",
        "Network",
        "lr",
        "test acc. (\\%)",
        "train loss, epoch 1",
        "train loss, last epoch",
    ]
    keys = canonical(runs[["dataset", "norm"]].drop_duplicates(), ["dataset", "norm"])
    rows = []
    for k in keys.itertuples():
        g = runs[_is(runs, dataset=k.dataset, norm=k.norm)]
        loss = losses[_is(losses, dataset=k.dataset, norm=k.norm)]
        rows.append(
            [
                label(k.dataset),
                network("identity", k.norm),
                f"{g['lr'].iloc[0]:g}",
                acc_ci(*stats.t_interval(g["test_acc"])),
                _loss(loss["loss_first"].iloc[0] if len(loss) else np.nan),
                _loss(loss["loss_last"].iloc[0] if len(loss) else np.nan),
            ]
        )
    return tabular(header, rows, "llrrrr", _changes(list(keys["dataset"])))


def _loss(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else "--"


def cell_seconds(metrics: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment and cell of `metrics`, with `bench_file`: the training benchmark
    file of the cell's training job (grid.TRAIN_BENCHMARK) and `bench_s`:
    its wall time, NaN where `benchmarks` has none."""
    cells = metrics.drop_duplicates(["experiment", *vocab.CELL_KEYS]).copy()
    seconds_of = dict(zip(benchmarks["file"], benchmarks["s"]))
    cells["bench_file"] = [
        grid.Cell(*(getattr(r, k) for k in vocab.CELL_KEYS)).path(grid.TRAIN_BENCHMARK)
        for r in cells.itertuples()
    ]
    cells["bench_s"] = [seconds_of.get(f, np.nan) for f in cells["bench_file"]]
    return cells


def compute(metrics: pd.DataFrame, benchmarks: pd.DataFrame) -> str:
    """Compute used per experiment: runs, cells, training jobs (grid.jobs), devices, and the
    training jobs' wall time from the rules' benchmark files. A job that serves several
    experiments counts in each; the last row counts every job once."""
    header = ["Experiment", "Runs", "Cells", "Jobs", "Device", "Wall time"]
    cells = cell_seconds(metrics, benchmarks)

    def row(name, runs, c):
        devices = tex_escape(", ".join(sorted(runs["device"].astype(str).unique())))
        jobs = c.drop_duplicates("bench_file")
        wall = seconds(jobs["bench_s"].sum()) if jobs["bench_s"].notna().any() else "--"
        return [name, str(len(runs)), str(len(c)), str(len(jobs)), devices, wall]

    rows = [
        row(e, metrics[metrics["experiment"] == e], cells[cells["experiment"] == e])
        for e in ordered(metrics["experiment"], vocab.EXPERIMENTS)
    ]
    rows.append(
        row(
            "All (distinct)",
            metrics.drop_duplicates(list(vocab.RUN_KEYS)),
            cells.drop_duplicates(list(vocab.CELL_KEYS)),
        )
    )
    return tabular(header, rows, "lrrrlr", [len(rows) - 1])


def make(name: str, inputs: dict) -> str:
    """The table `name` of the registry from the study tables it needs (input name -> table)."""
    entry = vocab.OUTPUTS[name]
    return globals()[name](**{k: inputs[k] for k in entry.inputs})
