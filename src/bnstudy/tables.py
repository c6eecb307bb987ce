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
from bnstudy.formats import acc_cell, acc_ci, diff_ci, pct, pvalue, sci, seconds, tex_escape
from bnstudy.names import canonical, comparison_label, composition, label, network, ordered


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


def _dataset_label(frame: pd.DataFrame, row) -> str:
    """The dataset's name, plus ' (post, d4, w64)' when it has several settings in `frame`."""
    same = frame[frame["dataset"] == row.dataset][["placement", "depth", "width"]].drop_duplicates()
    name = label(row.dataset)
    return name if len(same) <= 1 else f"{name} ({row.placement}, d{row.depth}, w{row.width})"


def _is(frame: pd.DataFrame, **keys) -> pd.Series:
    """Boolean mask of the rows of `frame` whose columns equal `keys`."""
    mask = pd.Series(True, index=frame.index)
    for k, v in keys.items():
        mask &= frame[k] == v
    return mask


# The compositions the main table shows (those the run has), in this order.
MAIN_CELLS = (
    vocab.LINEAR,
    vocab.BN_ONLY,
    vocab.ZSCORE_ONLY,
    *(("identity", n) for n in vocab.PER_EXAMPLE_NORMS),
    ("relu", "none"),
    vocab.RELU_BN,
)


def main(summary: pd.DataFrame, experiment: str = "E1") -> str:
    """E1 key compositions (rows) by dataset (columns): mean test accuracy with its interval."""
    s = summary[summary["experiment"] == experiment]
    cols = canonical(s[list(vocab.SETTING_KEYS)].drop_duplicates(), vocab.SETTING_KEYS)
    header = ["Network"] + [_dataset_label(cols, c) for c in cols.itertuples()]
    rows = []
    for act, norm in MAIN_CELLS:
        cells = s[_is(s, activation=act, norm=norm)]
        if cells.empty:
            continue
        row = [network(act, norm)]
        for c in cols.itertuples():
            m = cells[_is(cells, **{k: getattr(c, k) for k in vocab.SETTING_KEYS})]
            row.append("--" if m.empty else acc_cell(*m[["mean", "ci_lo", "ci_hi"]].iloc[0]))
        rows.append(row)
    return tabular(header, rows, "l" + "c" * len(cols))


def comparisons(comparisons: pd.DataFrame) -> str:
    """One row per comparison: mean per-seed difference [t CI] in points, Holm p-values, verdict."""
    header = [
        "Exp.",
        "Dataset",
        "A",
        "B",
        "$\\Delta$ (points)",
        "$p$ (Holm)",
        "$p_{\\mathrm{TOST}}$ (Holm)",
        "Verdict",
    ]
    comp = canonical(comparisons, ["experiment", *vocab.SETTING_KEYS])
    rows = [
        [
            r.experiment,
            _dataset_label(comp, r),
            comparison_label(r.a),
            comparison_label(r.b),
            diff_ci(r.diff, r.diff_lo, r.diff_hi),
            pvalue(r.p_diff_holm),
            pvalue(r.p_tost_holm),
            r.verdict,
        ]
        for r in comp.itertuples()
    ]
    return tabular(
        header, rows, "llllrrrl", _changes(list(zip(comp["experiment"], comp["dataset"])))
    )


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
                pct(g["fold_agreement"].min(), 2) if len(folded) else "--",
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


DYNAMICS_NORMS = vocab.AFFINE_NORMS  # E7: identity networks with these norms (one function class)


def first_epoch_loss(history: pd.DataFrame, experiment: str = "E7") -> pd.DataFrame:
    """E7: per dataset and norm (identity networks), the mean training loss after the first
    epoch, of the selected runs."""
    h = stats.selected(history, experiment)
    h = h[(h["activation"] == "identity") & h["norm"].isin(DYNAMICS_NORMS)]
    first = h[h["epoch"] == h.groupby("dataset")["epoch"].transform("min")]
    return (
        first.groupby(["dataset", "norm"])["train_loss"].mean().rename("loss_first").reset_index()
    )


def dynamics(metrics: pd.DataFrame, history: pd.DataFrame, experiment: str = "E7") -> str:
    """E7, identity networks with no norm, z-score, BatchNorm: test accuracy [CI], and the training
    loss after the first and the last epoch (means over seeds, selected learning rate)."""
    runs = stats.selected(metrics, experiment)
    runs = runs[(runs["activation"] == "identity") & runs["norm"].isin(DYNAMICS_NORMS)]
    first = first_epoch_loss(history, experiment)
    header = [
        "Dataset",
        "Network",
        "test acc. (\\%)",
        "train loss, epoch 1",
        "train loss, last epoch",
    ]
    keys = canonical(runs[["dataset", "norm"]].drop_duplicates(), ["dataset", "norm"])
    rows = []
    for k in keys.itertuples():
        g = runs[_is(runs, dataset=k.dataset, norm=k.norm)]
        loss1 = first[_is(first, dataset=k.dataset, norm=k.norm)]["loss_first"]
        rows.append(
            [
                label(k.dataset),
                network("identity", k.norm),
                acc_ci(*stats.t_interval(g["test_acc"])),
                _loss(loss1.iloc[0] if len(loss1) else np.nan),
                _loss(g["train_loss"].mean()),
            ]
        )
    return tabular(header, rows, "llrrr", _changes(list(keys["dataset"])))


def _loss(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else "--"


def cell_seconds(metrics: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment and cell of `metrics`, with `bench_file`: the training benchmark
    file of the cell's family (grid.TRAIN_BENCHMARK; one training job per family) and `bench_s`:
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
    """Compute used per experiment: runs, cells, training jobs (one per family of cells),
    devices, and the training jobs' wall time from the rules' benchmark files. A job whose
    family serves several experiments counts in each; the last row counts every job once."""
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
