"""Statistics behind every sentence of the paper: intervals, tests, verdicts.

Choices, stated once:
- Per-cell uncertainty: the mean over seeds with a two-sided 95% Student-t interval
  (mean +- t_{0.975, n-1} * sd / sqrt(n)); seeds are the independent replicates.
- Differences between two cells: a paired t-test over seeds. The design pairs them: for one
  seed, every cell starts from the same Linear weights and sees the same batches (bnstudy.models,
  bnstudy.train), so the per-seed difference removes the seed's own luck. The interval is the
  t interval of the mean per-seed difference. Only seeds present in both cells count.
- "No better than linear": two one-sided paired t-tests (TOST) against a margin of +-`margin`
  accuracy (default 2 percentage points). Equivalence is declared when both one-sided nulls
  (difference <= -margin, difference >= +margin) are rejected.
- Multiple comparisons: Holm's step-down correction within each experiment's family, applied to
  the difference p-values and, separately, to the TOST p-values.
- Verdict of one comparison (A against B, alpha = 0.05 after correction):
  "equivalent" if TOST rejects, else "better"/"worse" (sign of the difference) if the difference
  test rejects, else "inconclusive".

Everything here is a pure function of a metrics table (one row per run, the contract's columns
plus `experiment` and `selected`); the reported model of a cell is its selected learning rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy import vocab
from bnstudy.vocab import BN_ONLY, LINEAR, RELU_BN, ZSCORE_ONLY

ALPHA = vocab.ANALYSIS_DEFAULTS["alpha"]
MARGIN = vocab.ANALYSIS_DEFAULTS["margin"]  # TOST equivalence margin, in accuracy
LEVEL = vocab.CONFIDENCE_LEVEL

SETTING = list(vocab.SETTING_KEYS)  # what must match for two cells to be compared

# The comparisons the verdict needs, per experiment: (cell A, cell B) as (activation, norm).
COMPARISONS = {
    "E1": (
        (BN_ONLY, LINEAR),
        (ZSCORE_ONLY, LINEAR),
        (BN_ONLY, RELU_BN),
        (ZSCORE_ONLY, RELU_BN),
        *((("identity", n), LINEAR) for n in vocab.PER_EXAMPLE_NORMS),
    ),
    "E7": (
        (BN_ONLY, LINEAR),
        (ZSCORE_ONLY, LINEAR),
    ),
}

VERDICTS = ("equivalent", "better", "worse", "inconclusive")


def t_interval(x, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval for the mean of `x` (NaN bounds when n < 2)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, np.nan, np.nan
    sem = stats.sem(x)
    if sem == 0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(x) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def selected(df: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """The reported runs: the selected learning rate of each cell (of one experiment if given)."""
    out = df[df["selected"].astype(bool)]
    if experiment is not None:
        out = out[out["experiment"] == experiment]
    return out


def summarize(
    df: pd.DataFrame, value: str = "test_acc", by=("experiment", *vocab.CELL_KEYS)
) -> pd.DataFrame:
    """One row per cell: n seeds, mean, sd, and the t interval of `value` over the selected runs."""
    rows = []
    for key, g in selected(df).groupby(list(by), sort=True):
        mean, lo, hi = t_interval(g[value])
        rows.append(
            {
                **dict(zip(by, key)),
                "lr": g["lr"].iloc[0],
                "n": int(g[value].notna().sum()),
                "mean": mean,
                "sd": float(g[value].std(ddof=1)) if len(g) > 1 else np.nan,
                "ci_lo": lo,
                "ci_hi": hi,
                "diverged": int(g["diverged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def _differences(a, b) -> np.ndarray:
    """Per-seed differences a - b. Series indexed by seed are aligned on their common seeds;
    plain arrays are paired by position."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.align(b, join="inner")
    d = np.asarray(a, float) - np.asarray(b, float)
    return d[np.isfinite(d)]


def paired(a, b) -> tuple[float, float, float, float]:
    """(mean per-seed difference a - b, its 95% t interval low, high, two-sided p-value)."""
    d = _differences(a, b)
    diff = float(d.mean()) if len(d) else np.nan
    if len(d) < 2:
        return diff, np.nan, np.nan, np.nan
    if d.var() == 0:  # the same difference for every seed: exactly known
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(LEVEL)
    return diff, float(ci.low), float(ci.high), float(res.pvalue)


def tost(a, b, margin: float = MARGIN) -> float:
    """TOST p-value for |mean per-seed difference a - b| < margin (two one-sided paired t-tests;
    the larger of their p-values)."""
    d = _differences(a, b)
    if len(d) < 2:
        return np.nan
    if d.var() == 0:
        return 0.0 if abs(d.mean()) < margin else 1.0
    p_lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    p_upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(p_lower, p_upper))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else []
    out[order] = np.minimum(adjusted, 1.0)
    return out


def verdict(diff: float, p_diff: float, p_tost: float, alpha: float = ALPHA) -> str:
    """One word from the (corrected) p-values: equivalent, better, worse or inconclusive."""
    if p_tost < alpha:
        return "equivalent"
    if p_diff < alpha:
        return "better" if diff > 0 else "worse"
    return "inconclusive"


def compare(
    df: pd.DataFrame,
    experiment: str,
    pairs=None,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    value: str = "test_acc",
) -> pd.DataFrame:
    """Every comparison of `pairs` (default COMPARISONS[experiment]) in every setting where both
    cells exist, with Holm-corrected p-values and a verdict per row."""
    pairs = COMPARISONS.get(experiment, ()) if pairs is None else pairs
    runs = selected(df, experiment)
    rows = []
    for setting, g in runs.groupby(SETTING, sort=True):
        for a, b in pairs:
            xa, xb = (
                g[(g["activation"] == c[0]) & (g["norm"] == c[1])].set_index("seed")[value].dropna()
                for c in (a, b)
            )
            if xa.empty or xb.empty:
                continue
            diff, lo, hi, p = paired(xa, xb)
            rows.append(
                {
                    "experiment": experiment,
                    **dict(zip(SETTING, setting)),
                    "a": "+".join(a),
                    "b": "+".join(b),
                    "n_a": len(xa),
                    "n_b": len(xb),
                    "mean_a": xa.mean(),
                    "mean_b": xb.mean(),
                    "diff": diff,
                    "diff_lo": lo,
                    "diff_hi": hi,
                    "p_diff": p,
                    "p_tost": tost(xa, xb, margin),
                }
            )
    out = pd.DataFrame(
        rows,
        columns=[
            "experiment",
            *SETTING,
            "a",
            "b",
            "n_a",
            "n_b",
            "mean_a",
            "mean_b",
            "diff",
            "diff_lo",
            "diff_hi",
            "p_diff",
            "p_tost",
        ],
    )
    out["p_diff_holm"] = holm(out["p_diff"])
    out["p_tost_holm"] = holm(out["p_tost"])
    out["margin"] = margin
    out["verdict"] = [
        verdict(d, p, q, alpha)
        for d, p, q in zip(out["diff"], out["p_diff_holm"], out["p_tost_holm"])
    ]
    return out


def placement_effects(
    df: pd.DataFrame, experiment: str = "E5", alpha: float = ALPHA, value: str = "test_acc"
) -> pd.DataFrame:
    """E5: post minus pre for every (dataset, activation, norm, depth, width) that has both,
    paired over seeds, Holm-corrected over the family."""
    runs = selected(df, experiment)
    rows = []
    for key, g in runs.groupby(["dataset", "activation", "norm", "depth", "width"], sort=True):
        pre, post = (
            g[g["placement"] == p].set_index("seed")[value].dropna() for p in ("pre", "post")
        )
        if pre.empty or post.empty:
            continue
        diff, lo, hi, p = paired(post, pre)
        rows.append(
            {
                **dict(zip(["dataset", "activation", "norm", "depth", "width"], key)),
                "mean_pre": pre.mean(),
                "mean_post": post.mean(),
                "diff": diff,
                "diff_lo": lo,
                "diff_hi": hi,
                "p_diff": p,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "activation",
            "norm",
            "depth",
            "width",
            "mean_pre",
            "mean_post",
            "diff",
            "diff_lo",
            "diff_hi",
            "p_diff",
        ],
    )
    out["p_diff_holm"] = holm(out["p_diff"])
    out["significant"] = out["p_diff_holm"] < alpha
    return out


def answer(verdicts_vs_linear) -> str:
    """The study's answer to "does identity+batchnorm act as a nonlinearity?", from its verdicts
    against the linear baseline, one per dataset/setting:
    "no" (equivalent to or worse than linear everywhere), "yes" (better everywhere),
    "mixed" (better somewhere, not everywhere), "inconclusive" (never better, not settled)."""
    v = list(verdicts_vs_linear)
    if not v:
        return "inconclusive"
    n_better = v.count("better")
    if n_better == len(v):
        return "yes"
    if n_better > 0:
        return "mixed"
    if all(x in ("equivalent", "worse") for x in v):
        return "no"
    return "inconclusive"


def depth_growth(depths, grad_first_layer) -> dict:
    """Least-squares fit of log(gradient norm of the input layer) against depth: the growth factor
    per added layer exp(slope), its 95% interval, and the p-value of slope = 0."""
    d = np.asarray(depths, float)
    g = np.asarray(grad_first_layer, float)
    ok = np.isfinite(g) & (g > 0)
    d, g = d[ok], g[ok]
    if len(np.unique(d)) < 2:
        return {
            "factor": np.nan,
            "factor_lo": np.nan,
            "factor_hi": np.nan,
            "p": np.nan,
            "n": len(d),
        }
    fit = stats.linregress(d, np.log(g))
    tcrit = stats.t.ppf(0.5 + LEVEL / 2, len(d) - 2) if len(d) > 2 else np.nan
    return {
        "factor": float(np.exp(fit.slope)),
        "factor_lo": float(np.exp(fit.slope - tcrit * fit.stderr)),
        "factor_hi": float(np.exp(fit.slope + tcrit * fit.stderr)),
        "p": float(fit.pvalue) if len(d) > 2 else np.nan,
        "n": int(len(d)),
    }


def study(
    df: pd.DataFrame, margin: float = MARGIN, alpha: float = ALPHA
) -> dict[str, pd.DataFrame]:
    """The statistics of a metrics table: "summary" (per cell), "comparisons" (every family of
    COMPARISONS the table has runs for) and "placement" (E5)."""
    comparisons = pd.concat(
        [compare(df, e, margin=margin, alpha=alpha) for e in COMPARISONS], ignore_index=True
    )
    return {
        "summary": summarize(df),
        "comparisons": comparisons,
        "placement": placement_effects(df, alpha=alpha),
    }
