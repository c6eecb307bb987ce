"""Booktabs tables for the paper (LaTeX fragments to `\\input`), and the display names and number
formats shared by the tables, the figures and the macros.

Every table is a function of the metrics table or of the statistics in `bnstudy.stats`, and
writes one `tabular`; the caption and label live in the paper's .tex, so the prose owns the
framing and the data owns the numbers. Accuracies print as percentages with one decimal.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bnstudy import grid, stats
from bnstudy.results import atomic_output

# Display names, in the study's canonical order (none of them needs LaTeX escaping).
DATASETS = {"spirals": "spirals", "xor": "XOR", "mnist1d": "MNIST-1D", "digits": "digits",
            "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
ACTIVATIONS = {"identity": "identity", "relu": "ReLU", "tanh": "tanh", "gelu": "GELU",
               "silu": "SiLU", "elu": "ELU", "leaky_relu": "leaky ReLU", "sigmoid": "sigmoid"}
NORMS = {"none": "none", "batchnorm": "BatchNorm", "zscore": "z-score", "layernorm": "LayerNorm",
         "rmsnorm": "RMSNorm", "groupnorm": "GroupNorm"}
ORDER = {"dataset": DATASETS, "activation": ACTIVATIONS, "norm": NORMS,
         "experiment": grid.EXPERIMENTS, "placement": grid.PLACEMENTS}
VERDICT_PHRASES = {"equivalent": "statistically equivalent to",
                   "better": "significantly better than",
                   "worse": "significantly worse than",
                   "inconclusive": "not distinguishable (inconclusive) from"}


# ---------------------------------------------------------------- names and order

def name(kind: dict, key: str) -> str:
    """Display name of a dataset/activation/norm key; an unknown key is shown as itself."""
    return kind.get(key, str(key).replace("_", " "))


def composition(activation: str, norm: str) -> str:
    """'identity + BatchNorm', or the bare activation when there is no normalization."""
    a = name(ACTIVATIONS, activation)
    return a if norm == "none" else f"{a} + {name(NORMS, norm)}"


def comparison_label(cell: str) -> str:
    """'identity+batchnorm' (a stats cell key) -> its display name; identity+none is the linear baseline."""
    activation, norm = cell.split("+")
    return "linear (identity)" if (activation, norm) == stats.BASELINE else composition(activation, norm)


def ordered(values, order) -> list:
    """The distinct `values` in the order of `order` (a dict or sequence); unknown ones last."""
    order = list(order)
    return sorted(dict.fromkeys(values), key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def canonical(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`frame` sorted by `by`, with datasets, activations, norms, experiments in the study's order."""
    def key(col: pd.Series) -> pd.Series:
        if col.name not in ORDER:
            return col
        order = list(ORDER[col.name])
        return col.map(lambda v: order.index(v) if v in order else len(order))
    return frame.sort_values(list(by), key=key, kind="stable")


# ---------------------------------------------------------------- number formats

def pct(x: float, digits: int = 1) -> str:
    return "--" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def acc_ci(mean: float, lo: float, hi: float) -> str:
    """'52.3 [50.1, 54.5]' (percent); the interval is left out when it cannot be computed."""
    if not np.isfinite(lo):
        return pct(mean)
    return f"{pct(mean)} [{pct(lo)}, {pct(hi)}]"


def acc_cell(mean: float, lo: float, hi: float) -> str:
    """A two-line table cell: the mean, and the interval below it in small type."""
    if not np.isfinite(lo):
        return pct(mean)
    return f"\\makecell[t]{{{pct(mean)}\\\\{{\\scriptsize [{pct(lo)}, {pct(hi)}]}}}}"


def pvalue(p: float) -> str:
    """A p-value for a table cell (LaTeX): three decimals, '$<$0.001' below that."""
    if p is None or not np.isfinite(p):
        return "--"
    return "$<$0.001" if p < 1e-3 else f"{p:.3f}"


def p_equals(p: float, symbol: str = "p") -> str:
    """A p-value for prose (LaTeX math): '$p = 0.012$' or '$p < 0.001$'."""
    if p is None or not np.isfinite(p):
        return f"${symbol}$ not computable"
    return f"${symbol} < 0.001$" if p < 1e-3 else f"${symbol} = {p:.3f}$"


def points(x: float, sign: str = "") -> str:
    """An accuracy difference in points, one decimal, never '-0.0'."""
    text = f"{100 * x:{sign}.1f}"
    return text.replace("-0.0", "0.0") if text.lstrip("+-") == "0.0" else text


def diff_ci(diff: float, lo: float, hi: float) -> str:
    """A difference in points with its interval (LaTeX math): '$+1.2$ [$-0.3$, $2.7$]'."""
    if not np.isfinite(diff):
        return "--"
    if not np.isfinite(lo):
        return f"${points(diff, '+')}$"
    return f"${points(diff, '+')}$ [${points(lo)}$, ${points(hi)}$]"


def sci(x: float, digits: int = 1) -> str:
    """A float in LaTeX scientific notation, math-mode content: 3.2\\times10^{-7}."""
    if x is None or not np.isfinite(x):
        return "\\text{--}"
    if x == 0:
        return "0"
    exp = math.floor(math.log10(abs(x)))
    mant = x / 10 ** exp
    if round(mant, digits) >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:.{digits}f}\\times10^{{{exp}}}"


def seconds(s: float) -> str:
    """Wall time in words: '42 s', '3.5 min', '2.1 h'."""
    if s is None or not np.isfinite(s):
        return "--"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def tex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", str(text))


# ---------------------------------------------------------------- tables

def tabular(header: list[str], rows: list[list[str]], align: str, rules_before=()) -> str:
    """A booktabs tabular with a \\midrule before each row index in `rules_before`."""
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
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
    label = name(DATASETS, row.dataset)
    return label if len(same) <= 1 else f"{label} ({row.placement}, d{row.depth}, w{row.width})"


# The compositions the main table shows (those the run has), in this order.
MAIN_CELLS = (("identity", "none"), ("identity", "batchnorm"), ("identity", "zscore"),
              ("identity", "layernorm"), ("identity", "rmsnorm"), ("relu", "none"), ("relu", "batchnorm"))


def main_results(summary: pd.DataFrame, experiment: str = "E1") -> str:
    """E1 key compositions (rows) by dataset (columns): mean test accuracy with its interval."""
    s = summary[summary["experiment"] == experiment]
    cols = canonical(s[["dataset", "placement", "depth", "width"]].drop_duplicates(),
                     ["dataset", "placement", "depth", "width"])
    header = ["Network"] + [_dataset_label(cols, c) for c in cols.itertuples()]
    rows = []
    for act, norm in MAIN_CELLS:
        cells = s[(s["activation"] == act) & (s["norm"] == norm)]
        if cells.empty:
            continue
        row = [comparison_label(f"{act}+{norm}")]
        for c in cols.itertuples():
            m = cells[(cells["dataset"] == c.dataset) & (cells["placement"] == c.placement)
                      & (cells["depth"] == c.depth) & (cells["width"] == c.width)]
            row.append("--" if m.empty else acc_cell(*m[["mean", "ci_lo", "ci_hi"]].iloc[0]))
        rows.append(row)
    return tabular(header, rows, "l" + "c" * len(cols))


def comparisons(comp: pd.DataFrame) -> str:
    """One row per comparison: mean per-seed difference [t CI] in points, Holm p-values, verdict."""
    header = ["Exp.", "Dataset", "A", "B", "$\\Delta$ (points)", "$p$ (Holm)",
              "$p_{\\mathrm{TOST}}$ (Holm)", "Verdict"]
    comp = canonical(comp, ["experiment", "dataset", "placement", "depth", "width"])
    rows = [[r.experiment, _dataset_label(comp, r), comparison_label(r.a), comparison_label(r.b),
             diff_ci(r.diff, r.diff_lo, r.diff_hi), pvalue(r.p_diff_holm), pvalue(r.p_tost_holm),
             r.verdict] for r in comp.itertuples()]
    return tabular(header, rows, "llllrrrl", _changes(list(zip(comp["experiment"], comp["dataset"]))))


def fold_affinity(df: pd.DataFrame, experiment: str = "E2") -> str:
    """E2, over all trained networks of each kind (every seed and learning rate): the largest fold
    deviation, the lowest agreement of the folded map, the median and largest affinity gap."""
    runs = df[df["experiment"] == experiment]
    header = ["Dataset", "Network", "Nets", "max fold dev.", "min agreement (\\%)",
              "median affinity gap", "max affinity gap"]
    keys = canonical(runs[["dataset", "activation", "norm"]].drop_duplicates(), ["dataset", "activation", "norm"])
    rows = []
    for k in keys.itertuples():
        g = runs[(runs["dataset"] == k.dataset) & (runs["activation"] == k.activation) & (runs["norm"] == k.norm)]
        fold = g["fold_max_dev"].dropna()
        rows.append([name(DATASETS, k.dataset), composition(k.activation, k.norm), str(len(g)),
                     f"${sci(fold.max())}$" if len(fold) else "--",
                     pct(g["fold_agreement"].min(), 2) if len(fold) else "--",
                     f"${sci(g['affine_gap'].median())}$", f"${sci(g['affine_gap'].max())}$"])
    return tabular(header, rows, "llrrrrr", _changes(list(keys["dataset"])))


def placement(effects: pd.DataFrame) -> str:
    """E5: pre vs post test accuracy and the Holm-corrected difference test per composition."""
    header = ["Dataset", "Network", "pre (\\%)", "post (\\%)", "$\\Delta$ post$-$pre (points)", "$p$ (Holm)"]
    e = canonical(effects, ["dataset", "activation", "norm", "depth", "width"])
    rows = [[name(DATASETS, r.dataset), composition(r.activation, r.norm), pct(r.mean_pre), pct(r.mean_post),
             diff_ci(r.diff, r.diff_lo, r.diff_hi), pvalue(r.p_diff_holm)] for r in e.itertuples()]
    return tabular(header, rows, "llrrrr", _changes(list(e["dataset"])))


def selected_history(df: pd.DataFrame, history: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The per-epoch history of the selected runs of one experiment."""
    keys = [c for c in ["experiment", *stats.CELL, "seed", "lr"] if c in history.columns]
    sel = stats.selected(df, experiment)[keys].drop_duplicates()
    return history.merge(sel, on=keys, how="inner")


def dynamics(df: pd.DataFrame, history: pd.DataFrame, experiment: str = "E7") -> str:
    """E7, identity networks with no norm, z-score, BatchNorm: test accuracy [CI], and the training
    loss after the first and the last epoch (means over seeds, selected learning rate)."""
    runs = stats.selected(df, experiment)
    runs = runs[(runs["activation"] == "identity") & runs["norm"].isin(["none", "zscore", "batchnorm"])]
    h = selected_history(df, history, experiment)
    first = h[h["epoch"] == h.groupby("dataset")["epoch"].transform("min")]
    header = ["Dataset", "Network", "test acc. (\\%)", "train loss, epoch 1", "train loss, last epoch"]
    keys = canonical(runs[["dataset", "norm"]].drop_duplicates(), ["dataset", "norm"])
    rows = []
    for k in keys.itertuples():
        g = runs[(runs["dataset"] == k.dataset) & (runs["norm"] == k.norm)]
        loss1 = first[(first["dataset"] == k.dataset) & (first["activation"] == "identity")
                      & (first["norm"] == k.norm)]["train_loss"].mean()
        rows.append([name(DATASETS, k.dataset), comparison_label(f"identity+{k.norm}"),
                     acc_ci(*stats.t_interval(g["test_acc"])), _loss(loss1), _loss(g["train_loss"].mean())])
    return tabular(header, rows, "llrrr", _changes(list(keys["dataset"])))


def _loss(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else "--"


# ---------------------------------------------------------------- compute used

def read_benchmarks(folder: str | Path) -> pd.DataFrame:
    """Every Snakemake benchmark TSV under `folder`, one row per file (path relative to folder)."""
    folder = Path(folder)
    frames = []
    for path in sorted(folder.rglob("*.tsv")) if folder.exists() else []:
        b = pd.read_csv(path, sep="\t")
        b.insert(0, "file", str(path.relative_to(folder)))
        frames.append(b)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["file", "s", "max_rss"])


def attach_benchmarks(df: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment and cell of `df`, with `bench_s`: the wall time of the benchmark
    file whose path ends in {dataset}/{cell} (as grid.TRAIN_BENCHMARK names it), NaN if none."""
    cells = df.drop_duplicates(["experiment", *stats.CELL]).copy()
    seconds_of = {str(Path(f).with_suffix("")): s for f, s in zip(benchmarks["file"], benchmarks["s"])}

    def lookup(r) -> float:
        key = f"{r.dataset}/" + grid.CELL.format(activation=r.activation, norm=r.norm, placement=r.placement,
                                                 depth=r.depth, width=r.width)
        hits = [s for f, s in seconds_of.items() if f == key or f.endswith("/" + key)]
        return float(sum(hits)) if hits else np.nan

    cells["bench_s"] = [lookup(r) for r in cells.itertuples()]
    return cells


def compute(df: pd.DataFrame, benchmarks: pd.DataFrame) -> str:
    """Compute used per experiment: runs, cells, devices, and the training jobs' wall time from the
    rules' benchmark files. A cell shared by several experiments counts in each; the last row
    counts every cell once."""
    header = ["Experiment", "Runs", "Cells", "Device", "Wall time"]
    cells = attach_benchmarks(df, benchmarks)

    def row(label, runs, c):
        devices = tex_escape(", ".join(sorted(runs["device"].astype(str).unique())))
        wall = seconds(c["bench_s"].sum()) if c["bench_s"].notna().any() else "--"
        return [label, str(len(runs)), str(len(c)), devices, wall]

    rows = [row(e, df[df["experiment"] == e], cells[cells["experiment"] == e])
            for e in ordered(df["experiment"], grid.EXPERIMENTS)]
    rows.append(row("All (distinct)", df.drop_duplicates([*stats.CELL, "seed", "lr"]),
                    cells.drop_duplicates(stats.CELL)))
    return tabular(header, rows, "lrrlr", [len(rows) - 1])


def write(text: str, path: str | Path) -> None:
    """Write a text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
