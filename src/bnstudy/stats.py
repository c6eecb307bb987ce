"""Statistics behind every sentence of the paper: intervals, tests, verdicts.

Choices, stated once:
- Replicates: the seeds. Each seed draws its own data split (bnstudy.data), initialization and
  batch order, so an interval over seeds covers the data as well as the optimization.
- Per-cell uncertainty: the mean over seeds with a two-sided 95% Student-t interval
  (mean +- t_{0.975, n-1} * sd / sqrt(n)).
- Differences between two cells: paired over seeds. Within one seed, every cell and the linear
  reference see the same split, every cell starts from the same Linear weights and sees the same
  batches (bnstudy.models, bnstudy.train), so the per-seed difference removes the seed's own luck.
  Only seeds present in all the compared arms count.
- The claims (`claims`; E1, per setting = dataset x placement x depth x width, per seed s: R_s the
  linear reference's test accuracy on seed s's split, N_s that of relu+batchnorm, A_s that of
  the network judged):
  - Nonlinearity gap G_s = N_s - R_s: one-sided paired t-test of H0 mean G <= min_gap (5
    accuracy points by default), Holm over the settings (the family of the gap claim); a setting
    "discriminates" iff its Holm-adjusted p < alpha. A setting where a nonlinearity buys less
    cannot resolve a share of its gap with a test set of hundreds of examples: it is reported and
    does not count.
  - Share of the gap recovered by A: theta = mean(A - R) / mean(N - R), with Fieller's interval.
  - Verdict with margin fraction f: "linear" iff the share's upper bound < f (the one-sided
    paired t-test of H0 theta >= f at level (1 - LEVEL) / 2: non-superiority), "nonlinear" iff
    its lower bound > f, else "inconclusive"; "cannot discriminate" where the setting does not
    discriminate. Each (setting, network) has exactly one verdict.
  - The answer conjoins the verdicts of identity+batchnorm and identity+zscore over the
    discriminating settings: an intersection-union test (Berger 1982), declared only if every
    component rejects, so its level is that of each component and needs no correction.
- E5 (placement): a paired t-test of post - pre per composition, Holm over the compositions.

Everything here is a pure function of a metrics table (one row per run, the contract's columns
plus `experiment` and `selected`) and the reference table; the reported model of a cell is its
selected learning rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy import vocab
from bnstudy.vocab import BN_ONLY, RELU_BN, ZSCORE_ONLY

ALPHA = vocab.ANALYSIS_DEFAULTS["alpha"]
GAP_FRACTION = vocab.ANALYSIS_DEFAULTS["gap_fraction"]  # f of the share verdict
MIN_GAP = vocab.ANALYSIS_DEFAULTS["min_gap"]  # the gap a dataset must exceed to discriminate
LEVEL = vocab.CONFIDENCE_LEVEL

SETTING = list(vocab.SETTING_KEYS)  # what must match for two cells to be compared


def rows_matching(frame: pd.DataFrame, **keys) -> pd.Series:
    """Boolean mask of the rows of `frame` whose columns equal `keys`."""
    mask = pd.Series(True, index=frame.index)
    for k, v in keys.items():
        mask &= frame[k] == v
    return mask


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


def at_shared_lr(df: pd.DataFrame, metrics: pd.DataFrame, experiment: str, cells) -> pd.DataFrame:
    """The rows of `df` (metrics or history) of `cells` ((activation, norm) pairs) in
    `experiment` at one learning rate per setting shared by all of them: the rate, among those
    every cell was trained at, with the highest validation accuracy averaged over the cells and
    seeds (E7 compares training curves at the same step size)."""
    runs = _of_cells(metrics[metrics["experiment"] == experiment], cells)
    chosen = []
    for key, g in runs.groupby(SETTING, sort=True):
        per = (
            g.groupby(["activation", "norm", "lr"])["val_acc"]
            .mean()
            .unstack(["activation", "norm"])
        )
        per = per.dropna()
        if len(per):
            chosen.append({**dict(zip(SETTING, key)), "lr": per.mean(axis=1).idxmax()})
    if not chosen:
        return df.iloc[:0]
    on = [*SETTING, "lr"]
    out = df[df["experiment"] == experiment].merge(pd.DataFrame(chosen), on=on, how="inner")
    return _of_cells(out, cells)


def _of_cells(frame: pd.DataFrame, cells) -> pd.DataFrame:
    """The rows of `frame` whose (activation, norm) is one of `cells`."""
    pairs = pd.MultiIndex.from_frame(frame[["activation", "norm"]])
    return frame[pairs.isin([tuple(c) for c in cells])]


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


def paired(a, b) -> tuple[float, float, float, float]:
    """(mean per-seed difference a - b, its 95% t interval low, high, two-sided p-value), on the
    seeds where both are finite (`_by_seed`)."""
    a, b = _by_seed(a, b)
    d = a - b
    diff = float(d.mean()) if len(d) else np.nan
    if len(d) < 2:
        return diff, np.nan, np.nan, np.nan
    if _constant(d, a, b):  # the same difference for every seed: exactly known
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(LEVEL)
    return diff, float(ci.low), float(ci.high), float(res.pvalue)


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


def paired_effects(
    frame: pd.DataFrame, keys: list, arm: str, arms: tuple, value: str, alpha: float = ALPHA
) -> pd.DataFrame:
    """Per group of `keys` that has both arms (column `arm` equal to arms = (control, treated)):
    the means over seeds of `value` in each arm (mean_<control>, mean_<treated>), the mean
    per-seed difference treated - control with its t interval (diff, diff_lo, diff_hi) and the
    two-sided paired t-test (p_diff), Holm-corrected over all groups (p_diff_holm, significant)."""
    control, treated = arms
    rows = []
    for key, g in frame.groupby(keys, sort=True):
        a, b = (g[g[arm] == x].set_index("seed")[value].dropna() for x in (control, treated))
        if a.empty or b.empty:
            continue
        diff, lo, hi, p = paired(b, a)
        rows.append(
            {
                **dict(zip(keys, key)),
                f"mean_{control}": a.mean(),
                f"mean_{treated}": b.mean(),
                "diff": diff,
                "diff_lo": lo,
                "diff_hi": hi,
                "p_diff": p,
            }
        )
    columns = [*keys, f"mean_{control}", f"mean_{treated}", "diff", "diff_lo", "diff_hi", "p_diff"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_diff_holm"] = holm(out["p_diff"])
    out["significant"] = out["p_diff_holm"] < alpha
    return out


def placement_effects(
    df: pd.DataFrame, experiment: str = "E5", alpha: float = ALPHA, value: str = "test_acc"
) -> pd.DataFrame:
    """E5: post minus pre for every (dataset, activation, norm, depth, width) that has both,
    paired over seeds, Holm-corrected over the family."""
    keys = ["dataset", "activation", "norm", "depth", "width"]
    return paired_effects(
        selected(df, experiment), keys, "placement", ("pre", "post"), value, alpha
    )


def composition_effects(batchstats: pd.DataFrame, experiment: str = "E3", alpha: float = ALPHA):
    """E3, per network and test batch size (not the whole set): accuracy with one-class batches
    minus accuracy with random batches in batch-statistics mode, paired over seeds, Holm-corrected
    over the family."""
    bs = selected(batchstats, experiment)
    bs = bs[~bs["full"].astype(bool)]
    keys = [*vocab.CELL_KEYS, "test_batch_size"]
    return paired_effects(bs, keys, "composition", ("random", "class"), "accuracy", alpha)


# ------------------------------------------------------------------------------ the claims design

CLAIM_NETWORKS = (BN_ONLY, ZSCORE_ONLY)  # the networks whose verdicts the answer conjoins
SHARE_VERDICTS = ("linear", "nonlinear", "inconclusive", "cannot discriminate")
GAP_COLUMNS = [
    "experiments",  # those of CLAIM_EXPERIMENTS with cells in the setting, space-separated
    *SETTING,
    "n",
    "mean_reference",
    "mean_nonlinear",
    "gap",
    "gap_lo",
    "gap_hi",
    "p_gap",
    "min_gap",
    "p_gap_holm",
    "discriminates",
]
SHARE_COLUMNS = [
    "experiments",  # those of CLAIM_EXPERIMENTS that use the cell, space-separated
    *SETTING,
    "activation",
    "norm",
    "groups",
    "n",
    "mean_acc",
    "mean_reference",
    "mean_nonlinear",
    "share",
    "share_lo",
    "share_hi",
    "p_linear",
    "p_nonlinear",
    "verdict",
    "claim",
    "fraction",
]


def _by_seed(*xs) -> list[np.ndarray]:
    """The values of every x on the seeds where all of them are finite: Series are aligned by their
    index (the seed), plain arrays by position."""
    if all(isinstance(x, pd.Series) for x in xs):
        frame = pd.concat([x.rename(i) for i, x in enumerate(xs)], axis=1, join="inner")
    else:
        frame = pd.DataFrame({i: np.asarray(x, float) for i, x in enumerate(xs)})
    frame = frame.astype(float)
    frame = frame[np.isfinite(frame).all(axis=1)]
    return [frame[i].to_numpy() for i in range(len(xs))]


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else np.nan


def _constant(d, *operands) -> bool:
    """Whether the values `d` are one value up to the float rounding of the `operands` they were
    computed from (in floats, 0.8 - 0.7 != 0.9 - 0.8). They are then known exactly, and a t-test
    on them would divide rounding by rounding."""
    scale = max(float(np.abs(np.asarray(x, float)).max()) for x in (d, *operands))
    return bool(np.ptp(d) <= 4 * np.finfo(float).eps * scale)


def _t_pvalue(d, alternative: str = "two-sided", operands=()) -> float:
    """p-value of the one-sample t-test of mean(d) = 0 against `alternative` ("two-sided",
    "greater", "less"). A constant d (`_constant`, given the `operands` it was computed from) is
    known exactly: p = 0 if its value lies in the alternative, else 1. NaN when n < 2."""
    d = np.asarray(d, float)
    if len(d) < 2:
        return np.nan
    if _constant(d, *operands):
        m = d.mean()
        inside = {"two-sided": m != 0, "greater": m > 0, "less": m < 0}[alternative]
        return 0.0 if inside else 1.0
    return float(stats.ttest_1samp(d, 0.0, alternative=alternative).pvalue)


def gap(nonlinear, reference, level: float = LEVEL, min_gap: float = 0.0) -> dict:
    """The nonlinearity gap G_s = N_s - R_s over the seeds both have: n, the two means, mean G with
    its two-sided Student-t interval at `level`, and p_gap, the one-sided paired t-test of
    H0: mean G <= min_gap against H1: mean G > min_gap."""
    n, r = _by_seed(nonlinear, reference)
    g, lo, hi = t_interval(n - r, level)
    return {
        "n": len(n),
        "mean_reference": _mean(r),
        "mean_nonlinear": _mean(n),
        "gap": g,
        "gap_lo": lo,
        "gap_hi": hi,
        "p_gap": _t_pvalue(n - r - min_gap, "greater", (n, r, min_gap)),
    }


def fieller(u, v, level: float = LEVEL) -> tuple[float, float]:
    """Fieller's interval for theta = mean(u) / mean(v) from paired samples u, v (by test inversion):
    theta is inside iff the two-sided one-sample t-test of D_theta = u - theta v against 0 does not
    reject at level 1 - `level`, i.e. iff a theta^2 + b theta + c <= 0 with t = t_{(1+level)/2, n-1},
    a = vbar^2 - t^2 s_vv / n, b = -2 (ubar vbar - t^2 s_uv / n), c = ubar^2 - t^2 s_uu / n
    (sample (co)variances, ddof = 1).

    a > 0 (mean(v) significantly non-zero): the bounded interval between the roots; a single point
    ubar / vbar when u is exactly proportional to v (e.g. zero variances). Otherwise the set is
    unbounded and the bounds are its hull: (x, inf) or (-inf, x) for the half-line of a = 0,
    (-inf, inf) for a < 0 (the whole line or two rays); (nan, nan) for an empty set or n < 2."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    n = len(u)
    if n < 2:
        return np.nan, np.nan
    t2n = stats.t.ppf((1 + level) / 2, n - 1) ** 2 / n
    ubar, vbar = u.mean(), v.mean()
    (suu, suv), (_, svv) = np.cov(u, v)
    a = vbar**2 - t2n * svv
    half_b = -(ubar * vbar - t2n * suv)
    c = ubar**2 - t2n * suu
    if a > 0:
        # (b/2)^2 - ac, written so that it is exactly 0 when u is proportional to v
        disc = t2n * (np.var(vbar * u - ubar * v, ddof=1) - t2n * (suu * svv - suv**2))
        root = np.sqrt(max(disc, 0.0))
        return float((-half_b - root) / a), float((-half_b + root) / a)
    if a == 0 and half_b != 0:  # 2 half_b theta + c <= 0
        x = float(-c / (2 * half_b))
        return (x, np.inf) if half_b < 0 else (-np.inf, x)
    if a < 0 or c <= 0:
        return -np.inf, np.inf
    return np.nan, np.nan


def share(network, nonlinear, reference, f: float = GAP_FRACTION, level: float = LEVEL) -> dict:
    """The share of the gap that `network` recovers, over the seeds all three have (u = A - R,
    v = N - R): n, the three means, share = mean(u) / mean(v) (NaN when mean(v) = 0), Fieller's
    interval (share_lo, share_hi) at `level`, and the one-sided paired t-tests of D_f = u - f v:
    p_linear (non-superiority, H0: theta >= f i.e. mean D_f >= 0, alternative "less") and
    p_nonlinear (superiority, H0: theta <= f, alternative "greater")."""
    a, n, r = _by_seed(network, nonlinear, reference)
    u, v = a - r, n - r
    lo, hi = fieller(u, v, level)
    return {
        "n": len(a),
        "mean_acc": _mean(a),
        "mean_reference": _mean(r),
        "mean_nonlinear": _mean(n),
        "share": float(u.mean() / v.mean()) if len(v) and v.mean() != 0 else np.nan,
        "share_lo": lo,
        "share_hi": hi,
        "p_linear": _t_pvalue(u - f * v, "less", (a, n, r)),
        "p_nonlinear": _t_pvalue(u - f * v, "greater", (a, n, r)),
    }


def share_verdict(discriminates: bool, lo: float, hi: float, f: float = GAP_FRACTION) -> str:
    """ "cannot discriminate" where the setting has no gap; else "linear" if share_hi < f, "nonlinear"
    if share_lo > f, "inconclusive" otherwise (also for NaN bounds). With a bounded interval and a
    positive gap, share_hi < f iff p_linear < (1 - LEVEL) / 2 (and share_lo > f iff
    p_nonlinear < (1 - LEVEL) / 2); with an unbounded one the verdict is at most "inconclusive"."""
    if not discriminates:
        return "cannot discriminate"
    if hi < f:
        return "linear"
    if lo > f:
        return "nonlinear"
    return "inconclusive"


def claim_answer(verdicts) -> str:
    """The answer to "is BatchNorm alone no better than linear?" from the verdicts of the claim rows
    (`claims(...)["shares"]` where claim is True). Verdicts "cannot discriminate" do not count;
    of the rest: "no" if every one is "linear" (the intersection-union test rejects: every
    component rejects at (1 - LEVEL) / 2 one-sided), "yes" if every one is "nonlinear", "mixed" if
    some are, "inconclusive" otherwise; "cannot discriminate" if none counts."""
    v = [x for x in verdicts if x != "cannot discriminate"]
    if not v:
        return "cannot discriminate"
    if all(x == "linear" for x in v):
        return "no"
    n_nonlinear = v.count("nonlinear")
    if n_nonlinear == len(v):
        return "yes"
    return "mixed" if n_nonlinear else "inconclusive"


def _cell_key(setting: dict, activation: str, norm: str, groups) -> tuple:
    values = {**setting, "activation": activation, "norm": norm, "groups": groups}
    return tuple(values[k] for k in vocab.CELL_KEYS)


def of_experiment(frame: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of a "gaps" or "shares" table (cells, settings) that `experiment` uses."""
    held = [experiment in str(e).split() for e in frame["experiments"]]
    return frame.loc[np.asarray(held, bool)]


CLAIM_EXPERIMENTS = vocab.CLAIM_EXPERIMENTS
ANSWER_EXPERIMENT = vocab.ANSWER_EXPERIMENT


def claims(
    df: pd.DataFrame,
    ref: pd.DataFrame,
    experiments=CLAIM_EXPERIMENTS,
    f: float = GAP_FRACTION,
    alpha: float = ALPHA,
    min_gap: float = MIN_GAP,
    value: str = "test_acc",
) -> dict[str, pd.DataFrame]:
    """The claims design on the selected runs of `experiments` (each cell once, however many of
    them use it) and the linear reference `ref` (one row per dataset x seed, test_acc): "gaps",
    one row per setting (`gap` against `min_gap`, Holm over the settings, discriminates iff
    p_gap_holm < alpha), and "shares", one row per setting x cell (`share` of the cell's `value`
    and `share_verdict`; claim True for CLAIM_NETWORKS in the settings of ANSWER_EXPERIMENT).
    Seeds pair the three accuracies; the gap is always that of test accuracy (inference mode)."""
    all_runs = df[df["selected"].astype(bool) & df["experiment"].isin(list(experiments))]
    answer_settings = {
        tuple(k) for k in all_runs[all_runs["experiment"] == ANSWER_EXPERIMENT][SETTING].values
    }
    runs = all_runs.drop_duplicates(list(vocab.RUN_KEYS))

    def names(e):
        return " ".join(sorted(set(e), key=list(vocab.EXPERIMENTS).index))

    member = all_runs.groupby(list(vocab.CELL_KEYS))["experiment"].agg(names)
    setting_member = all_runs.groupby(SETTING)["experiment"].agg(names)
    reference = {d: g.set_index("seed")["test_acc"] for d, g in ref.groupby("dataset")}
    none = pd.Series(dtype=float)
    cell = ["activation", "norm", "groups"]
    settings = [
        (dict(zip(SETTING, key)), {c: x.set_index("seed") for c, x in g.groupby(cell)})
        for key, g in runs.groupby(SETTING, sort=True)
    ]

    def nonlinear(cells):
        found = [x["test_acc"] for (a, n, _), x in cells.items() if (a, n) == RELU_BN]
        return found[0] if found else none

    gaps = pd.DataFrame(
        [
            {
                "experiments": setting_member[tuple(key.values())],
                **key,
                **gap(nonlinear(cells), reference.get(key["dataset"], none), min_gap=min_gap),
                "min_gap": min_gap,
            }
            for key, cells in settings
        ],
        columns=GAP_COLUMNS[:-2],
    )
    gaps["p_gap_holm"] = holm(gaps["p_gap"])
    gaps["discriminates"] = gaps["p_gap_holm"] < alpha
    rows = []
    for (key, cells), discriminates in zip(settings, gaps["discriminates"]):
        for (act, norm, groups), x in cells.items():
            s = share(x[value], nonlinear(cells), reference.get(key["dataset"], none), f)
            rows.append(
                {
                    "experiments": member[_cell_key(key, act, norm, groups)],
                    **key,
                    "activation": act,
                    "norm": norm,
                    "groups": groups,
                    **s,
                    "verdict": share_verdict(discriminates, s["share_lo"], s["share_hi"], f),
                    "claim": (act, norm) in CLAIM_NETWORKS
                    and tuple(key.values()) in answer_settings,
                    "fraction": f,
                }
            )
    return {"gaps": gaps, "shares": pd.DataFrame(rows, columns=SHARE_COLUMNS)}


MODES = {  # E8: how a batch-statistics network is used, and where its accuracy comes from
    "inference": "running statistics (metrics.test_acc)",
    "batch": "batch statistics, random batch-mates, batch = its training batch size (batchstats)",
    "conditional": "batch statistics, fixed training batch-mates (metrics.cond_test_acc)",
}
STRONG_NETWORKS = (BN_ONLY, ZSCORE_ONLY, RELU_BN)  # E8's networks


def strong_form(
    df: pd.DataFrame,
    batchstats: pd.DataFrame,
    ref: pd.DataFrame,
    gaps: pd.DataFrame,
    f: float = GAP_FRACTION,
    experiment: str = "E8",
) -> pd.DataFrame:
    """E8: per (dataset, training batch size, network, mode), the test accuracy over seeds (mean,
    t interval) and the share of the setting's nonlinearity gap it recovers (Fieller interval),
    with the verdict of `share_verdict` (the gap and whether it discriminates come from `gaps`, the
    study's one gap family). Modes: MODES."""
    runs = selected(df, experiment)
    own = selected(batchstats, experiment)
    own = own[
        (own["composition"] == "random")
        & ~own["full"]
        & (own["test_batch_size"] == own["batch_size"])
    ]
    reference = {d: g.set_index("seed")["test_acc"] for d, g in ref.groupby("dataset")}
    rows = []
    for key, g in runs.groupby(SETTING, sort=True):
        setting = dict(zip(SETTING, key))
        where = gaps[rows_matching(gaps, **setting)]
        discriminates = bool(where["discriminates"].iloc[0]) if len(where) else False
        relu = g[(g["activation"] == RELU_BN[0]) & (g["norm"] == RELU_BN[1])]
        nonlinear = relu.set_index("seed")["test_acc"]
        for act, norm in STRONG_NETWORKS:
            cell = g[(g["activation"] == act) & (g["norm"] == norm)]
            if cell.empty:
                continue
            b = own[rows_matching(own, **setting, activation=act, norm=norm)]
            accs = {
                "inference": cell.set_index("seed")["test_acc"],
                "batch": b.set_index("seed")["accuracy"],
                "conditional": cell.set_index("seed")["cond_test_acc"]
                if "cond_test_acc" in cell
                else pd.Series(dtype=float),
            }
            for mode, acc in accs.items():
                acc = acc.dropna()
                if acc.empty:
                    continue
                mean, lo, hi = t_interval(acc)
                s = share(
                    acc, nonlinear, reference.get(setting["dataset"], pd.Series(dtype=float)), f
                )
                rows.append(
                    {
                        **setting,
                        "activation": act,
                        "norm": norm,
                        "mode": mode,
                        "n": len(acc),
                        "mean": mean,
                        "ci_lo": lo,
                        "ci_hi": hi,
                        "share": s["share"],
                        "share_lo": s["share_lo"],
                        "share_hi": s["share_hi"],
                        "verdict": share_verdict(discriminates, s["share_lo"], s["share_hi"], f),
                        "cond_affine_gap": float(cell["cond_affine_gap"].mean())
                        if mode == "conditional" and "cond_affine_gap" in cell
                        else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def depth_growth_by_seed(frame: pd.DataFrame, level: float = LEVEL) -> dict:
    """Growth of the input layer's gradient norm at initialization per added layer, with the seeds
    as replicates (the depths of one seed share its weights, so they are not independent): per
    seed, the least-squares slope of log(grad) on depth (seeds with < 2 depths drop out); factor =
    exp(mean slope), its Student-t interval over seeds at `level` (factor_lo, factor_hi), p of the
    two-sided one-sample t-test of mean slope = 0, and n_seeds."""
    slopes = []
    for _, g in frame.groupby("seed", sort=True):
        g = g[np.isfinite(g["grad"]) & (g["grad"] > 0)]
        if g["depth"].nunique() >= 2:
            slopes.append(stats.linregress(g["depth"], np.log(g["grad"])).slope)
    slope, lo, hi = t_interval(slopes, level)
    return {
        "factor": float(np.exp(slope)),
        "factor_lo": float(np.exp(lo)),
        "factor_hi": float(np.exp(hi)),
        "p": _t_pvalue(slopes),
        "n_seeds": len(slopes),
    }


def at_training_batch(layers: pd.DataFrame) -> pd.DataFrame:
    """The gradient norms at initialization measured at each run's own training batch size
    (results without `grad_batch_size` hold only those)."""
    if "grad_batch_size" not in layers.columns:
        return layers
    return layers[layers["grad_batch_size"] == layers["batch_size"]]


def depth_growth_by_batch(layers: pd.DataFrame, experiment: str, level: float = LEVEL):
    """One row per (activation, norm, placement, gradient batch size) of `experiment`'s selected
    runs: `depth_growth_by_seed` of the input layer's gradient norm at initialization, beside
    bnstudy.theory.predicted_growth (`predicted`, and `exact`: False where the theory gives only
    the large-batch limit), whose rank cap is `rank` = min(input rank, width)."""
    from bnstudy import theory

    first = selected(layers, experiment)
    first = first[first["layer"] == 0]
    if "grad_batch_size" not in first.columns:  # results from before the batch-size probe
        first = first.assign(grad_batch_size=first["batch_size"], input_rank=np.iinfo(int).max)
    keys = ["activation", "norm", "placement", "grad_batch_size"]
    rows = []
    for key, g in first.groupby(keys, sort=True):
        fit = depth_growth_by_seed(g.rename(columns={"grad_norm_init": "grad"}), level)
        rank = min(int(g["input_rank"].min()), int(g["width"].min()))
        predicted, exact = theory.predicted_growth(*key[:3], int(key[3]), rank)
        rows.append(
            {**dict(zip(keys, key)), **fit, "rank": rank, "predicted": predicted, "exact": exact}
        )
    columns = [*keys, "factor", "factor_lo", "factor_hi", "p", "n_seeds", "rank", "predicted"]
    columns.append("exact")
    return pd.DataFrame(rows, columns=columns)


def study(
    df: pd.DataFrame,
    ref: pd.DataFrame,
    batchstats: pd.DataFrame,
    f: float = GAP_FRACTION,
    alpha: float = ALPHA,
    min_gap: float = MIN_GAP,
) -> dict[str, pd.DataFrame]:
    """The statistics of a metrics table, its linear reference and its batch-statistics table:
    "summary" (per cell), "gaps" and "shares" (`claims` on E1, E8 and E9), "placement" (E5) and
    "composition" (E3)."""
    return {
        "summary": summarize(df),
        **claims(df, ref, f=f, alpha=alpha, min_gap=min_gap),
        "placement": placement_effects(df, alpha=alpha),
        "composition": composition_effects(batchstats, alpha=alpha),
    }
