"""`macros.tex`: every number and verdict the paper's prose quotes, computed from this run.

The prose never types a result. It says, for example, "identity + BatchNorm reached \\HeadAccBN
against \\HeadAccLinear for the linear baseline, so it was \\HeadVerdictBNLinear{} the baseline",
and this module decides what those macros say. A different outcome prints a different sentence:
the verdict words come from `stats.share_verdict` and `stats.claim_answer`, the sentences that carry them are
assembled here from those words. A cell the configuration did not run prints as "--".
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from bnstudy import stats, vocab
from bnstudy.data import NUM_CLASSES
from bnstudy.formats import (
    MISSING,
    VERDICT_PHRASES,
    acc_ci,
    diff_ci,
    p_equals,
    pct,
    pct_down,
    points,
    sci,
    seconds,
    share_ci,
    tex_escape,
)
from bnstudy.names import composition, join_words, label, network, ordered
from bnstudy.tables import epoch_loss, growth_text

PERCENT = "\\%"  # LaTeX's percent sign, after a number

NUMBER_WORDS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def tex_name(experiment: str) -> str:
    """ "E1" -> "EOne": experiment names as letters, as LaTeX macro names need."""
    return "E" + "".join(NUMBER_WORDS[int(d)] for d in experiment[1:])


def experiment_flags(experiments) -> list[str]:
    """`\\newif\\ifHasEOne` for every experiment of the vocabulary, true for those this run holds:
    the prose mentions an experiment only where the run has it."""
    lines = []
    for e in vocab.EXPERIMENTS:
        lines.append(f"\\newif\\ifHas{tex_name(e)}")
        if e in experiments:
            lines.append(f"\\Has{tex_name(e)}true")
    return lines


def sections(experiments) -> str:
    """`sections.tex`: the results section of each experiment this run holds, in the study's order."""
    return "".join(
        f"\\input{{sections/results/{e.lower()}}}\n" for e in vocab.EXPERIMENTS if e in experiments
    )


def _cell(summary: pd.DataFrame, dataset: str, activation: str, norm: str, setting=None):
    s = summary[
        (summary["experiment"] == "E1")
        & (summary["dataset"] == dataset)
        & (summary["activation"] == activation)
        & (summary["norm"] == norm)
    ]
    if setting is not None:
        s = s[
            (s["placement"] == setting[0]) & (s["depth"] == setting[1]) & (s["width"] == setting[2])
        ]
    return None if s.empty else s.iloc[0]


def _acc(row) -> str:
    """'52.3\\% [50.1, 54.5]' from a summary row (mean, ci_lo, ci_hi); '--' for a missing cell."""
    if row is None:
        return MISSING
    mean, _, interval = acc_ci(row["mean"], row["ci_lo"], row["ci_hi"]).partition(" ")
    return f"{mean}\\% {interval}".strip()


def _interval(values) -> pd.Series:
    return pd.Series(dict(zip(("mean", "ci_lo", "ci_hi"), stats.t_interval(values))))


# The identity networks the prose names, with the tags of their macros (\\ShareListBN, ...).
TAGS = {
    vocab.BN_ONLY: "BN",
    vocab.ZSCORE_ONLY: "Z",
    vocab.LINEAR: "DeepLinear",
    ("identity", "layernorm"): "LN",
    ("identity", "rmsnorm"): "RMS",
    ("identity", "groupnorm"): "GN",
}


def _setting(row) -> tuple:
    return tuple(getattr(row, k) for k in vocab.SETTING_KEYS)


def _where(frame: pd.DataFrame, setting: tuple) -> pd.DataFrame:
    """The rows of `frame` in `setting` (values of vocab.SETTING_KEYS)."""
    return frame[stats.rows_matching(frame, **dict(zip(vocab.SETTING_KEYS, setting)))]


def _setting_name(gaps: pd.DataFrame, setting: tuple) -> str:
    """The dataset's name, plus its setting when the dataset has several."""
    name = label(setting[0])
    if (gaps["dataset"] == setting[0]).sum() > 1:
        name += f" ({setting[1]}, depth {setting[2]}, width {setting[3]})"
    return name


def share_list(gaps: pd.DataFrame, shares: pd.DataFrame, cell) -> str:
    """'3\\% [$-2$, 8] of the gap on MNIST-1D and 1\\% [...] on spirals' for one network, over the
    settings that discriminate."""
    parts = []
    for g in gaps[gaps["discriminates"]].itertuples():
        r = _where(shares, _setting(g))
        r = r[(r["activation"] == cell[0]) & (r["norm"] == cell[1])]
        if len(r):
            r = r.iloc[0]
            share = share_ci(r["share"], r["share_lo"], r["share_hi"], unit=PERCENT)
            parts.append(f"{share} on {_setting_name(gaps, _setting(g))}")
    return join_words(parts) if parts else MISSING


def verdict_words(gaps: pd.DataFrame, shares: pd.DataFrame, cell) -> str:
    """'no better than linear on 2 of 2 datasets with a gap' (or the mix of verdicts) for one network."""
    counted = shares[
        (shares["activation"] == cell[0])
        & (shares["norm"] == cell[1])
        & (shares["verdict"] != "cannot discriminate")
    ]
    n = int(gaps["discriminates"].sum())
    if counted.empty:
        return "not testable (no dataset with a significant gap had this network)"
    noun = "datasets" if gaps["dataset"].is_unique else "settings"
    parts = []
    for w in stats.SHARE_VERDICTS:
        k = int((counted["verdict"] == w).sum())
        if k:
            parts.append(f"{VERDICT_PHRASES[w]} on {k} of the {n} {noun} with a gap")
    return join_words(parts)


def claim_macros(
    summary: pd.DataFrame, reference: pd.DataFrame, gaps: pd.DataFrame, shares: pd.DataFrame, df
) -> dict:
    """The verdict: the gap per E1 setting, the share each identity network recovers, the answer."""
    gaps, shares = stats.of_experiment(gaps, "E1"), stats.of_experiment(shares, "E1")
    m = {
        "NumSettings": str(len(gaps)),
        "SettingNoun": "datasets" if gaps["dataset"].is_unique else "settings",
        "NumDiscriminating": str(int(gaps["discriminates"].sum())),
    }
    with_gap = [_setting_name(gaps, _setting(g)) for g in gaps[gaps["discriminates"]].itertuples()]
    without = gaps[~gaps["discriminates"]]
    m["DiscriminatingList"] = join_words(with_gap) if with_gap else "none"
    m["GapList"] = (
        join_words(
            [
                f"{diff_ci(g.gap, g.gap_lo, g.gap_hi)} points on {_setting_name(gaps, _setting(g))}"
                for g in gaps.itertuples()
            ]
        )
        or MISSING
    )
    floor = f"{100 * gaps['min_gap'].iloc[0]:g}" if len(gaps) else MISSING
    m["NoGapSentence"] = (
        f"Every dataset had a gap significantly above {floor} points, so every one of them can "
        "discriminate."
        if without.empty
        else "On "
        + join_words([_setting_name(gaps, _setting(g)) for g in without.itertuples()])
        + f" the gap was not significantly above {floor} points ("
        + "; ".join(
            f"{_setting_name(gaps, _setting(g))}: {diff_ci(g.gap, g.gap_lo, g.gap_hi)} points, "
            f"{p_equals(g.p_gap_holm)} for a gap above {floor}"
            for g in without.itertuples()
        )
        + "): a nonlinearity buys too little there to tell how much of it a network recovers, so "
        + ("it cannot discriminate" if len(without) == 1 else "they cannot discriminate")
        + " and does not count towards the answer."
    )
    for cell, tag in TAGS.items():
        m[f"ShareList{tag}"] = share_list(gaps, shares, cell)
        m[f"Verdict{tag}"] = verdict_words(gaps, shares, cell)

    # The headline: the setting with the largest significant gap (where a nonlinearity matters most).
    keys = ("HeadDataset", "HeadAccBN", "HeadAccZ", "HeadAccReference", "HeadAccReluBN", "HeadGap")
    m |= {k: MISSING for k in (*keys, "HeadShareBN", "HeadShareZ")}
    m["HeadVerdictBN"] = "not testable"
    found = gaps[gaps["discriminates"]]
    if len(found):
        g = found.loc[found["gap"].idxmax()]
        setting = _setting(g)
        d, rest = setting[0], setting[1:]
        m["HeadDataset"] = _setting_name(gaps, setting)
        m["HeadAccBN"] = _acc(_cell(summary, d, *vocab.BN_ONLY, rest))
        m["HeadAccZ"] = _acc(_cell(summary, d, *vocab.ZSCORE_ONLY, rest))
        m["HeadAccReluBN"] = _acc(_cell(summary, d, *vocab.RELU_BN, rest))
        m["HeadAccReference"] = _acc(_interval(reference[reference["dataset"] == d]["test_acc"]))
        m["HeadGap"] = diff_ci(g["gap"], g["gap_lo"], g["gap_hi"])
        here = _where(shares, setting)
        for cell, tag in ((vocab.BN_ONLY, "BN"), (vocab.ZSCORE_ONLY, "Z")):
            r = here[(here["activation"] == cell[0]) & (here["norm"] == cell[1])]
            if len(r):
                r = r.iloc[0]
                m[f"HeadShare{tag}"] = share_ci(
                    r["share"], r["share_lo"], r["share_hi"], unit=PERCENT
                )
                if tag == "BN":
                    m["HeadVerdictBN"] = VERDICT_PHRASES[r["verdict"]]

    claim_rows = shares[shares["claim"].astype(bool)]
    word = stats.claim_answer(list(claim_rows["verdict"]))
    m["AnswerWord"] = word
    counted = claim_rows[claim_rows["verdict"] != "cannot discriminate"]
    f = f"{100 * shares['fraction'].iloc[0]:g}\\%" if len(shares) else MISSING
    n_nonlinear = int((counted["verdict"] == "nonlinear").sum())
    m["AnswerSentence"] = {
        "no": f"BatchNorm alone did not act as a nonlinearity: on every dataset that can tell a "
        f"nonlinearity from none, identity + BatchNorm and identity + z-score recovered less than "
        f"{f} of the gap between the best linear classifier and ReLU + BatchNorm.",
        "yes": f"BatchNorm alone acted as a nonlinearity: on every dataset with a gap, identity + "
        f"BatchNorm and identity + z-score recovered more than {f} of the gap between the best "
        f"linear classifier and ReLU + BatchNorm.",
        "mixed": f"The evidence is mixed: in {n_nonlinear} of {len(counted)} tests BatchNorm alone "
        f"recovered more than {f} of the gap between the best linear classifier and ReLU + "
        f"BatchNorm, and not in the others.",
        "inconclusive": f"The runs do not settle the question: with {_seeds_text(df)} seeds, the "
        f"share of the gap that BatchNorm alone recovers was not bounded away from {f} in "
        f"{len(counted) - int((counted['verdict'] == 'linear').sum())} of {len(counted)} tests.",
        "cannot discriminate": "The runs cannot answer the question: on no dataset did ReLU + "
        "BatchNorm beat the best linear classifier significantly, so no dataset can tell a "
        "nonlinearity from none.",
    }[word]
    m["Recommendation"] = {
        "no": "The answer to the practitioner is therefore to keep the activation function.",
        "yes": "These runs contradict the collapse argument; before acting on them, check how the "
        "networks were evaluated, since an inference-mode BatchNorm network is affine.",
        "mixed": "These runs alone do not settle what to tell the practitioner; more seeds, a larger "
        "budget or more datasets would.",
        "inconclusive": "These runs alone do not settle what to tell the practitioner; more seeds or "
        "a larger budget would.",
        "cannot discriminate": "A dataset on which a nonlinearity matters is needed to answer it.",
    }[word]
    return m


def edge_macros(df: pd.DataFrame) -> dict:
    """How many cells selected a learning rate at an edge of their grid (the optimum may lie
    outside it): count and share over every cell of the study, and the E1 cells."""
    runs = df.drop_duplicates(list(vocab.RUN_KEYS))
    per_cell = runs.groupby(list(vocab.CELL_KEYS)).agg(
        low=("lr", "min"), high=("lr", "max"), n=("lr", "nunique")
    )
    chosen = stats.selected(runs).groupby(list(vocab.CELL_KEYS))["lr"].first()
    per_cell = per_cell.join(chosen.rename("chosen"), how="inner")
    top = per_cell["chosen"] == per_cell["high"]
    bottom = per_cell["chosen"] == per_cell["low"]
    n = len(per_cell)
    return {
        "NumGridCells": str(n),
        "EdgeCells": str(int((top | bottom).sum())),
        "EdgeTop": str(int(top.sum())),
        "EdgeBottom": str(int(bottom.sum())),
        "EdgeShare": f"{100 * (top | bottom).mean():.0f}" if n else MISSING,
    }


def strong_macros(df, batchstats, reference, gaps, f: float) -> dict:
    """E8: does any training batch size let BatchNorm alone, used with batch statistics, beat the
    linear reference; how the batch-mode gain and the conditional affinity gap fade with m."""
    keys = ("EEightSizes", "EEightBest", "EEightModeGapSmall", "EEightModeGapLarge")
    m = {k: MISSING for k in (*keys, "EEightCondGapSmall", "EEightCondGapLarge")}
    m["EEightVerdict"] = "was not run"
    sf = stats.strong_form(df, batchstats, reference, gaps, f)
    if sf.empty:
        return m
    alone = sf[sf["activation"] == "identity"]
    sizes = sorted(alone["batch_size"].unique())
    m["EEightSizes"] = join_words([str(int(b)) for b in sizes])
    batch = alone[alone["mode"] == "batch"]
    tested = batch[batch["verdict"] != "cannot discriminate"]
    if len(tested):
        best = tested.loc[tested["share"].idxmax()]
        m["EEightBest"] = (
            f"{share_ci(best['share'], best['share_lo'], best['share_hi'], unit=PERCENT)} of the gap "
            f"({composition(best['activation'], best['norm'])}, $m = {int(best['batch_size'])}$, "
            f"{label(best['dataset'])})"
        )
        words = [
            f"{VERDICT_PHRASES[w]} in {int((tested['verdict'] == w).sum())}"
            for w in stats.SHARE_VERDICTS
            if (tested["verdict"] == w).any()
        ]
        m["EEightVerdict"] = (
            f"was, over the {len(tested)} tests with a gap large enough to tell, "
            + join_words(words)
        )
    pivot = alone.pivot_table(
        index=["dataset", "activation", "norm", "batch_size"], columns="mode", values="mean"
    )
    if {"batch", "inference"} <= set(pivot.columns):
        diff = (pivot["batch"] - pivot["inference"]).groupby(level="batch_size").mean()
        m["EEightModeGapSmall"] = f"${points(diff.iloc[0], '+')}$"
        m["EEightModeGapLarge"] = f"${points(diff.iloc[-1], '+')}$"
    cond = alone[alone["mode"] == "conditional"].groupby("batch_size")["cond_affine_gap"].median()
    if len(cond):
        m["EEightCondGapSmall"] = f"${sci(cond.iloc[0])}$"
        m["EEightCondGapLarge"] = f"${sci(cond.iloc[-1])}$"
    return m


def groups_macros(gaps: pd.DataFrame, shares: pd.DataFrame) -> dict:
    """E9: how much of the gap per-example normalization recovers without an activation."""
    e9 = stats.of_experiment(shares, "E9")
    e9 = e9[
        (e9["activation"] == "identity") & e9["norm"].isin(vocab.PER_EXAMPLE_NORMS + ("groupnorm",))
    ]
    m = {"ENineBest": MISSING, "ENineVerdict": "was not run", "ENineGroups": MISSING}
    m["ENineExtremes"] = "were not run"
    if e9.empty:
        return m
    gn = e9[e9["norm"] == "groupnorm"]
    m["ENineGroups"] = join_words([str(int(g)) for g in sorted(gn["groups"].unique())])
    parts = []
    for d in ordered(e9["dataset"], vocab.DATASETS):
        r = gn[gn["dataset"] == d]
        if len(r):
            b = r.loc[r["share"].idxmax()]
            parts.append(
                f"{share_ci(b['share'], b['share_lo'], b['share_hi'], unit=PERCENT)} on {label(d)} "
                f"(with {int(b['groups'])} groups)"
            )
    m["ENineBest"] = join_words(parts) if parts else MISSING
    extremes = []
    for units, what in ((2, "two units per group"), (1, "one unit per group")):
        at = gn[gn["groups"] * units == gn["width"]]
        if len(at):
            shares = [
                f"{share_ci(r.share, r.share_lo, r.share_hi, unit=PERCENT)} on {label(r.dataset)}"
                for r in at.itertuples()
            ]
            extremes.append(f"with {what} it recovered {join_words(shares)}")
    if extremes:
        m["ENineExtremes"] = "; ".join(extremes)
    tested = e9[e9["verdict"] != "cannot discriminate"]
    if len(tested):
        words = [
            f"{VERDICT_PHRASES[w]} in {int((tested['verdict'] == w).sum())}"
            for w in stats.SHARE_VERDICTS
            if (tested["verdict"] == w).any()
        ]
        m["ENineVerdict"] = f"was, over its {len(tested)} tests, " + join_words(words)
    return m


def anchor_macros(summary: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """MNIST-1D's published logistic regression and ReLU MLP accuracies beside this run's."""
    ref = reference[reference["dataset"] == "mnist1d"]["test_acc"] if len(reference) else []
    mlp = summary[
        (summary["experiment"] == "E0")
        & (summary["dataset"] == "mnist1d")
        & (summary["activation"] == vocab.ANCHOR_MLP[0])
        & (summary["norm"] == vocab.ANCHOR_MLP[1])
    ].sort_values("width")
    return {
        "PublishedLogistic": pct(vocab.ANCHORS["mnist1d_logistic"][0], 0),
        "PublishedMLP": pct(vocab.ANCHORS["mnist1d_mlp"][0], 0),
        "AnchorLogistic": _acc(_interval(ref)) if len(ref) else MISSING,
        "AnchorMLP": _acc(mlp.iloc[-1]) if len(mlp) else MISSING,
    }


def _seeds_text(df: pd.DataFrame) -> str:
    n = stats.selected(df).groupby(["experiment", *vocab.CELL_KEYS])["seed"].nunique()
    if n.empty:
        return "0"
    return str(n.min()) if n.min() == n.max() else f"{n.min()}--{n.max()}"


def _agreement(share: float) -> str:
    """Where a folded map predicts the network's class: 'on every test example', else the
    smallest share, rounded down (a share below 1 never prints as 100.00)."""
    if share == 1:
        return "on every test example"
    return f"on at least {pct_down(share)}\\% of the test examples"


def collapse_macros(df: pd.DataFrame) -> dict:
    runs = df[df["experiment"] == "E2"]
    fold = runs["fold_max_dev"].dropna()
    foldable = runs[(runs["activation"] == "identity") & runs["norm"].isin(vocab.AFFINE_NORMS)]
    per_example = runs[
        (runs["activation"] == "identity") & runs["norm"].isin(vocab.PER_EXAMPLE_NORMS)
    ]
    m = {
        "NumFolded": str(len(fold)),
        "FoldMaxDev": f"${sci(fold.max())}$" if len(fold) else MISSING,
        "FoldAgreement": _agreement(runs["fold_agreement"].min()) if len(fold) else MISSING,
        "GapFoldableMax": f"${sci(foldable['affine_gap'].max())}$" if len(foldable) else MISSING,
        "GapPerExampleMin": f"${sci(per_example['affine_gap'].min())}$"
        if len(per_example)
        else MISSING,
        "GapPerExampleMedian": f"${sci(per_example['affine_gap'].median())}$"
        if len(per_example)
        else MISSING,
    }
    lo, hi = foldable["affine_gap"].max(), per_example["affine_gap"].min()
    if len(foldable) and len(per_example) and hi > 0:
        orders = math.floor(math.log10(hi / max(lo, 1e-300)))
        m["GapComparison"] = (
            f"at least {orders} orders of magnitude larger than"
            if orders >= 1
            else "not clearly larger than"
        )
    else:
        m["GapComparison"] = "not compared with"
    return m


def batch_macros(batchstats: pd.DataFrame) -> dict:
    """E3: the flip rate at the smallest and largest test batch, and accuracy with one-class
    against random batches at the smallest, over the cells (means over seeds)."""
    bs = stats.selected(batchstats, "E3")
    m = {
        k: MISSING
        for k in (
            "SmallestBatch",
            "LargestBatch",
            "FlipSmallest",
            "FlipLargest",
            "FlipConfidentSmallest",
            "BatchSizes",
            "AccClassSmallest",
            "AccRandomSmallest",
        )
    }
    m["FlipTrend"] = "could not be measured (no batch-statistics evaluations)"
    m["ClassCollapse"] = "not measured"
    measured = bs[bs["flip_rate"].notna()]
    if measured.empty:
        return m
    one_class = bs[bs["composition"] == "class"].groupby("dataset")["accuracy"].max()
    m["ClassCollapse"] = join_words(
        [
            f"{pct(one_class[d])}\\% on {label(d)} (chance: {pct(1 / NUM_CLASSES[d], 0)}\\%)"
            for d in ordered(one_class.index, vocab.DATASETS)
        ]
    )
    bs = bs.reindex(
        columns=[*bs.columns.drop("flip_rate_confident", errors="ignore"), "flip_rate_confident"]
    )
    per_cell = bs.groupby([*vocab.CELL_KEYS, "full", "test_batch_size", "composition"])[
        ["accuracy", "flip_rate", "flip_rate_confident"]  # (absent from older runs: NaN)
    ].mean()
    per_cell = per_cell.reset_index()
    b0, b1 = int(measured["test_batch_size"].min()), int(measured["test_batch_size"].max())

    def at(b, comp):
        """The per-cell means at test batch size b (not the whole set) and composition comp."""
        sel = (
            ~per_cell["full"]
            & (per_cell["test_batch_size"] == b)
            & (per_cell["composition"] == comp)
        )
        return per_cell[sel]

    flip0, flip1 = at(b0, "random")["flip_rate"].max(), at(b1, "random")["flip_rate"].max()
    m.update(
        SmallestBatch=str(b0),
        LargestBatch=str(b1),
        FlipSmallest=pct(flip0),
        FlipLargest=pct(flip1),
        FlipConfidentSmallest=pct(at(b0, "random")["flip_rate_confident"].max()),
    )
    sizes = sorted(measured["test_batch_size"].unique())
    m["BatchSizes"] = join_words(
        [str(b) for b in sizes] + (["the full test set"] if bs["full"].any() else [])
    )
    m["AccClassSmallest"] = pct(at(b0, "class")["accuracy"].min())
    m["AccRandomSmallest"] = pct(at(b0, "random")["accuracy"].min())
    m["FlipTrend"] = (
        "fell as the batch grew, as \\cref{prop:batch} predicts"
        if flip1 < flip0
        else "did not fall as the batch grew, unlike what \\cref{prop:batch} predicts"
    )
    return m


def composition_macros(composition: pd.DataFrame) -> dict:
    """E3's paired statements: in how many (network, test batch size) comparisons one-class
    batches changed accuracy significantly (Holm), the range of the changes, and the
    comparisons that were not significant."""
    m = {
        "CompNum": "0",
        "CompSig": "0",
        "CompWorse": "0",
        "CompDropMin": MISSING,
        "CompDropMax": MISSING,
        "CompNotSig": "none",
    }
    if composition.empty:
        return m
    sig = composition[composition["significant"].astype(bool)]
    m["CompNum"], m["CompSig"] = str(len(composition)), str(len(sig))
    worse = sig[sig["diff"] < 0]
    m["CompWorse"] = str(len(worse))
    if len(worse):
        m["CompDropMin"] = points(-worse["diff"].max())
        m["CompDropMax"] = points(-worse["diff"].min())
    rest = composition[~composition["significant"].astype(bool)]
    if len(rest) > 3:
        m["CompNotSig"] = f"{len(rest)} comparisons (those without an asterisk in \\cref{{tab:e3}})"
    elif len(rest):
        m["CompNotSig"] = join_words(
            [
                f"{network(r.activation, r.norm)} on {label(r.dataset)} at test batch size "
                f"{int(r.test_batch_size)} (${points(r.diff, '+')}$ points, "
                f"$p_{{\\mathrm{{Holm}}}} = {r.p_diff_holm:.2f}$)"
                for r in rest.itertuples()
            ]
        )
    return m


def depth_macros(df: pd.DataFrame, layers: pd.DataFrame, alpha: float = stats.ALPHA) -> dict:
    """E4: the growth factor per added layer of the input layer's gradient norm at
    initialization, and the test accuracy of the deepest networks."""
    runs = stats.selected(df, "E4")
    first_layer = stats.at_training_batch(stats.selected(layers, "E4"))
    first_layer = first_layer[first_layer["layer"] == 0]
    from bnstudy import theory

    m = {
        "MinDepth": MISSING,
        "MaxDepth": MISSING,
        "GradPredReluBN": f"{theory.bn_growth('relu'):.2f}",  # mean field, large batch
        "GradPredBN": f"{theory.bn_growth('identity'):.2f}",
        "GradPredRelu": f"{theory.plain_growth('relu'):.2f}",  # LeCun-normal, no norm
    }
    tags = {vocab.BN_ONLY: "BN", vocab.RELU_BN: "ReluBN", ("relu", "none"): "Relu"}
    for tag in tags.values():
        m[f"GradGrowth{tag}"] = MISSING
        m[f"GradGrowthVerdict{tag}"] = "was not measured"
        m[f"AccDeep{tag}"] = MISSING
    m |= growth_by_batch_macros(layers)
    if runs.empty:
        return m
    m["MinDepth"], m["MaxDepth"] = str(int(runs["depth"].min())), str(int(runs["depth"].max()))
    for (act, norm), tag in tags.items():
        r = runs[(runs["activation"] == act) & (runs["norm"] == norm)]
        if r.empty:
            continue
        g = first_layer[(first_layer["activation"] == act) & (first_layer["norm"] == norm)]
        fit = stats.depth_growth_by_seed(g.rename(columns={"grad_norm_init": "grad"}))
        if np.isfinite(fit["factor"]):
            ci = (
                f" [{fit['factor_lo']:.2f}, {fit['factor_hi']:.2f}]"
                if np.isfinite(fit["factor_lo"])
                else ""
            )
            m[f"GradGrowth{tag}"] = f"{fit['factor']:.2f}{ci}"
            if fit["p"] < alpha:
                m[f"GradGrowthVerdict{tag}"] = "grew" if fit["factor"] > 1 else "shrank"
            else:
                m[f"GradGrowthVerdict{tag}"] = "did not change significantly"
        deep = r[r["depth"] == r["depth"].max()]
        m[f"AccDeep{tag}"] = _acc(
            pd.Series(dict(zip(("mean", "ci_lo", "ci_hi"), stats.t_interval(deep["test_acc"]))))
        )
    return m


def growth_by_batch_macros(layers: pd.DataFrame) -> dict:
    """E4 at several gradient batch sizes: identity + BatchNorm's measured growth per layer
    against Proposition 6's sqrt((B - 2) / (B - 3)), whether every prediction lies in its
    interval, and ReLU + BatchNorm's growth at the smallest and largest size."""
    fits = stats.depth_growth_by_batch(layers, "E4")
    m = {
        "GradBatchSizes": MISSING,
        "GradInputRank": MISSING,
        "GradGrowthBNByBatch": MISSING,
        "GradGrowthBNCover": MISSING,
        "GradGrowthReluBNByBatch": MISSING,
        "GradGrowthBNMaxDev": MISSING,
        "GradGrowthReluBNTrend": "was not measured",
    }
    if fits.empty:
        return m
    m["GradBatchSizes"] = join_words(
        [str(int(b)) for b in sorted(fits["grad_batch_size"].unique())]
    )
    e4 = stats.selected(layers, "E4")
    if "input_rank" in e4.columns:
        ranks = e4.groupby("dataset")["input_rank"].min()
        m["GradInputRank"] = join_words(
            [f"{int(ranks[d])} for {label(d)}" for d in ordered(ranks.index, vocab.DATASETS)]
        )

    def listed(rows, predicted: bool) -> str:
        return join_words(
            [
                f"{growth_text(r, 3)} at batch {int(r['grad_batch_size'])}"
                + (f" (predicted {r['predicted']:.3f})" if predicted else "")
                for _, r in rows.iterrows()
            ]
        )

    bn = fits[stats.rows_matching(fits, activation=vocab.BN_ONLY[0], norm=vocab.BN_ONLY[1])]
    if len(bn):
        m["GradGrowthBNByBatch"] = listed(bn, predicted=True)
        inside = (bn["factor_lo"] <= bn["predicted"]) & (bn["predicted"] <= bn["factor_hi"])
        m["GradGrowthBNCover"] = (
            "each interval holds its prediction"
            if inside.all()
            else "the prediction lies outside the interval at batch "
            + join_words([str(int(b)) for b in bn.loc[~inside, "grad_batch_size"]])
        )
        deviation = (bn["factor"] / bn["predicted"] - 1).abs()
        m["GradGrowthBNMaxDev"] = pct(deviation.max())
    relu = fits[stats.rows_matching(fits, activation=vocab.RELU_BN[0], norm=vocab.RELU_BN[1])]
    if len(relu):
        m["GradGrowthReluBNByBatch"] = listed(relu, predicted=False)
        growth = relu.sort_values("grad_batch_size")["factor"].to_numpy()
        m["GradGrowthReluBNTrend"] = (
            "fell as the batch grew" if (np.diff(growth) < 0).all() else "did not fall steadily"
        )
    return m


def placement_macros(effects: pd.DataFrame) -> dict:
    n, k = len(effects), int(effects["significant"].sum()) if len(effects) else 0
    m = {
        "PlacementNum": str(n),
        "PlacementNumSig": str(k),
        "PlacementMaxAbsDiff": f"{100 * effects['diff'].abs().max():.1f}" if n else MISSING,
    }
    if n == 0:
        m["PlacementSentence"] = "No composition was run with both placements."
    elif k == 0:
        m["PlacementSentence"] = (
            f"Placement made no significant difference in any of the {n} "
            f"compositions (Holm-corrected paired t-tests)."
        )
    else:
        sig = effects[effects["significant"]]
        better = int((sig["diff"] > 0).sum())
        m["PlacementSentence"] = (
            f"Placement made a significant difference in {k} of the {n} compositions "
            f"(Holm-corrected paired t-tests): the norm after the activation was better "
            f"in {better} and worse in {k - better} of them."
        )
    return m


def grid_macros(df: pd.DataFrame) -> dict:
    """What E1 crosses, and the shared training settings, in words."""
    e1 = df[df["experiment"] == "E1"]

    def words(col, labels=None):
        values = ordered(e1[col], labels or {})
        return (
            join_words([label(v) if labels else str(v) for v in values]) if len(values) else MISSING
        )

    def setting(col):
        values = sorted(df[col].unique())
        return join_words([tex_escape(str(v)) for v in values])

    return {
        "EOneActivations": words("activation", vocab.ACTIVATIONS),
        "EOneNorms": words("norm", vocab.NORMS),
        "EOneDepths": words("depth"),
        "EOneWidths": words("width"),
        "EOnePlacements": words("placement"),
        "Optimizer": join_words([tex_escape(label(o)) for o in sorted(df["optimizer"].unique())])
        + " ("
        + setting("schedule")
        + " learning-rate schedule)",
        "BatchSize": setting("batch_size"),
    }


def boundary_macros(df: pd.DataFrame) -> dict:
    """E6: test accuracy of identity + BatchNorm and ReLU + BatchNorm on each 2-D set."""
    runs = stats.selected(df, "E6")
    m = {}
    for (act, norm), tag in ((vocab.BN_ONLY, "BN"), (vocab.RELU_BN, "ReluBN")):
        parts = []
        for d in ordered(runs["dataset"], vocab.DATASETS):
            g = runs[(runs["dataset"] == d) & (runs["activation"] == act) & (runs["norm"] == norm)]
            if len(g):
                parts.append(f"{pct(g['test_acc'].mean())}\\% on {label(d)}")
        m[f"ESixAcc{tag}"] = join_words(parts) if parts else "-- (not run)"
    g = runs[
        (runs["dataset"] == "xor") & (runs["activation"] == "tanh") & (runs["norm"] == "zscore")
    ]
    m["XorTanhZ"] = f"{pct(g['test_acc'].mean())}\\%" if len(g) else "-- (not run)"
    return m


def dynamics_macros(history: pd.DataFrame, metrics: pd.DataFrame) -> dict:
    """E7: which of none / z-score / BatchNorm (identity activation), at the learning rate they
    share, had the lowest training loss after the first epoch, on each dataset."""
    loss = epoch_loss(history, metrics)
    if loss.empty:
        return {"ESevenFastest": "no training curves were recorded."}
    winners = loss.loc[loss.groupby("dataset")["loss_first"].idxmin()]
    by_norm = {}
    for d in ordered(winners["dataset"], vocab.DATASETS):
        norm = winners[winners["dataset"] == d]["norm"].iloc[0]
        by_norm.setdefault(norm, []).append(label(d))
    parts = [f"of {network('identity', n)} on {join_words(ds)}" for n, ds in by_norm.items()]
    return {
        "ESevenFastest": "at the learning rate the three networks share, the lowest training loss "
        "after the first epoch was that " + " and ".join(parts) + "."
    }


def run_macros(df: pd.DataFrame, benchmarks: pd.DataFrame) -> dict:
    distinct = df.drop_duplicates(list(vocab.RUN_KEYS))
    cells = df.drop_duplicates(list(vocab.CELL_KEYS))
    datasets = ordered(df["dataset"], vocab.DATASETS)
    devices = sorted(df["device"].astype(str).unique())
    return {
        "NumRuns": str(len(distinct)),
        "NumCells": str(len(cells)),
        "NumDatasets": str(len(datasets)),
        "DatasetList": join_words([label(d) for d in datasets]),
        "NumSeeds": _seeds_text(df),
        "NumExperiments": str(df["experiment"].nunique()),
        "ExperimentList": join_words(ordered(df["experiment"], vocab.EXPERIMENTS)),
        "NumLrs": str(
            int(df.groupby(["experiment", *vocab.CELL_KEYS, "seed"])["lr"].nunique().max())
        ),
        "LrList": join_words([f"{lr:g}" for lr in sorted(df["lr"].unique())]),
        "Epochs": _epochs_text(df),
        "Devices": tex_escape(join_words(devices)),
        "TrainTime": seconds(benchmarks["s"].sum()) if len(benchmarks) else MISSING,
        "NumBenchmarks": str(len(benchmarks)),
    }


def _epochs_text(df: pd.DataFrame) -> str:
    """'20' or, when datasets differ, '20 (MNIST-1D) or 40 (spirals and XOR)'."""
    by_epochs = {}
    for d in ordered(df["dataset"], vocab.DATASETS):
        for e in sorted(df[df["dataset"] == d]["epochs"].unique()):
            by_epochs.setdefault(int(e), []).append(label(d))
    if len(by_epochs) == 1:
        return str(next(iter(by_epochs)))
    return " or ".join(f"{e} ({join_words(ds)})" for e, ds in sorted(by_epochs.items()))


def macros(
    inputs: dict,
    gap_fraction: float = stats.GAP_FRACTION,
    alpha: float = stats.ALPHA,
    min_gap: float = stats.MIN_GAP,
) -> dict:
    """Every macro the paper uses, name -> LaTeX text, from the study tables (input name -> table:
    metrics, history, batchstats, layers, reference, summary, gaps, shares, placement,
    composition, benchmarks)."""
    df = inputs["metrics"]
    m = {
        "GapFraction": f"{100 * gap_fraction:g}",
        "MinGap": f"{100 * min_gap:g}",
        "Alpha": f"{alpha:g}",
        "ConfidenceLevel": f"{100 * stats.LEVEL:g}",
        "OneSidedLevel": f"{(1 - stats.LEVEL) / 2:g}",
    }
    m |= run_macros(df, inputs["benchmarks"])
    m |= grid_macros(df)
    m |= edge_macros(df)
    m |= boundary_macros(df)
    m |= dynamics_macros(inputs["history"], df)
    m |= claim_macros(inputs["summary"], inputs["reference"], inputs["gaps"], inputs["shares"], df)
    m |= strong_macros(df, inputs["batchstats"], inputs["reference"], inputs["gaps"], gap_fraction)
    m |= groups_macros(inputs["gaps"], inputs["shares"])
    m |= anchor_macros(inputs["summary"], inputs["reference"])
    m |= collapse_macros(df)
    m |= batch_macros(inputs["batchstats"])
    m |= composition_macros(inputs["composition"])
    m |= depth_macros(df, inputs["layers"], alpha)
    m |= placement_macros(inputs["placement"])
    return m


def render(m: dict, experiments=tuple(vocab.EXPERIMENTS)) -> str:
    """macros.tex: the experiment flags of `experiments`, then one \\newcommand per macro."""
    lines = [
        "% Generated by `bnstudy macros` from this run's results. Do not edit.",
        *experiment_flags(experiments),
    ]
    for k, v in m.items():
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ValueError(f"macro name {k!r} must be letters only")
        lines.append(f"\\newcommand{{\\{k}}}{{{v}}}")
    return "\n".join(lines) + "\n"
