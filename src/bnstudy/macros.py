"""`macros.tex`: every number and verdict the paper's prose quotes, computed from this run.

The prose never types a result. It says, for example, "identity + BatchNorm reached \\HeadAccBN
against \\HeadAccLinear for the linear baseline, so it was \\HeadVerdictBNLinear{} the baseline",
and this module decides what those macros say. A different outcome prints a different sentence:
the verdict words come from `stats.verdict` and `stats.answer`, the sentences that carry them are
assembled here from those words. A cell the configuration did not run prints as "--".
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from bnstudy import stats, vocab
from bnstudy.formats import (
    MISSING,
    VERDICT_PHRASES,
    acc_ci,
    diff_ci,
    p_equals,
    pct,
    sci,
    seconds,
    tex_escape,
)
from bnstudy.names import comparison_label, join_words, label, network, ordered
from bnstudy.tables import first_epoch_loss

# The comparisons the headline and the verdict sentences quote, as comparison keys ("a+b").
LINEAR, BN_ONLY, ZSCORE_ONLY, RELU_BN = (
    "+".join(c) for c in (vocab.LINEAR, vocab.BN_ONLY, vocab.ZSCORE_ONLY, vocab.RELU_BN)
)

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


def verdict_summary(verdicts: list[str], target: str, noun: str) -> str:
    """'statistically equivalent to the linear baseline on 3 of 4 datasets; not distinguishable
    (inconclusive) from it on 1' from the per-setting verdict words."""
    n = len(verdicts)
    if n == 0:
        return f"not compared with {target} (the configuration has no such cells)"
    parts = []
    for w in stats.VERDICTS:
        k = verdicts.count(w)
        if k:
            obj = target if not parts else "it"
            parts.append(
                f"{VERDICT_PHRASES[w]} {obj} on {k} of {n} {noun}"
                if not parts
                else f"{VERDICT_PHRASES[w]} {obj} on {k}"
            )
    return "; ".join(parts)


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


def head_setting(summary: pd.DataFrame, comp: pd.DataFrame):
    """The headline setting: among the E1 settings with an identity+batchnorm vs linear comparison,
    the one where the best network beats the linear baseline by the most (where a nonlinearity
    matters most, so the most telling test). Returns a comparison row's setting or None."""
    c = comp[(comp["experiment"] == "E1") & (comp["a"] == BN_ONLY) & (comp["b"] == LINEAR)]
    best, best_gap = None, -np.inf
    for r in c.itertuples():
        s = summary[
            (summary["experiment"] == "E1")
            & (summary["dataset"] == r.dataset)
            & (summary["placement"] == r.placement)
            & (summary["depth"] == r.depth)
            & (summary["width"] == r.width)
        ]
        gap = s["mean"].max() - r.mean_b
        if gap > best_gap:
            best, best_gap = (r.dataset, r.placement, r.depth, r.width), gap
    return best


def headline_macros(summary: pd.DataFrame, comp: pd.DataFrame) -> dict:
    m = {
        k: MISSING
        for k in (
            "HeadDataset",
            "HeadAccBN",
            "HeadAccZ",
            "HeadAccLinear",
            "HeadAccReluBN",
            "HeadAccBest",
            "HeadBestNetwork",
            "HeadDiffBNLinear",
            "HeadPBNLinear",
            "HeadPTostBNLinear",
            "HeadPBNRelu",
            "HeadDiffBNRelu",
            "HeadGap",
        )
    }
    m["HeadVerdictBNLinear"] = "not compared with"
    m["HeadVerdictBNRelu"] = "not compared with"
    head = head_setting(summary, comp)
    if head is None:
        return m
    d, pl, dp, wd = head
    setting = (pl, dp, wd)
    m["HeadDataset"] = label(d)
    m["HeadAccBN"] = _acc(_cell(summary, d, *vocab.BN_ONLY, setting))
    m["HeadAccZ"] = _acc(_cell(summary, d, *vocab.ZSCORE_ONLY, setting))
    m["HeadAccLinear"] = _acc(_cell(summary, d, *vocab.LINEAR, setting))
    m["HeadAccReluBN"] = _acc(_cell(summary, d, *vocab.RELU_BN, setting))
    s = summary[
        (summary["experiment"] == "E1")
        & (summary["dataset"] == d)
        & (summary["placement"] == pl)
        & (summary["depth"] == dp)
        & (summary["width"] == wd)
    ]
    best = s.loc[s["mean"].idxmax()]
    m["HeadAccBest"] = _acc(best)
    m["HeadBestNetwork"] = comparison_label(f"{best['activation']}+{best['norm']}")
    lin = _cell(summary, d, *vocab.LINEAR, setting)
    m["HeadGap"] = f"{100 * (best['mean'] - lin['mean']):.1f}" if lin is not None else MISSING
    sel = comp[
        (comp["experiment"] == "E1")
        & (comp["dataset"] == d)
        & (comp["placement"] == pl)
        & (comp["depth"] == dp)
        & (comp["width"] == wd)
    ]
    for b, tag in ((LINEAR, "Linear"), (RELU_BN, "Relu")):
        r = sel[(sel["a"] == BN_ONLY) & (sel["b"] == b)]
        if r.empty:
            continue
        r = r.iloc[0]
        m[f"HeadDiffBN{tag}"] = diff_ci(r["diff"], r["diff_lo"], r["diff_hi"])
        m[f"HeadPBN{tag}"] = p_equals(r["p_diff_holm"])
        m[f"HeadVerdictBN{tag}"] = VERDICT_PHRASES[r["verdict"]]
        if tag == "Linear":
            m["HeadPTostBNLinear"] = p_equals(r["p_tost_holm"])
    return m


def verdict_macros(comp: pd.DataFrame, df: pd.DataFrame, margin: float) -> dict:
    e1 = comp[comp["experiment"] == "E1"]
    settings = e1[list(vocab.SETTING_KEYS)].drop_duplicates()
    noun = "datasets" if settings["dataset"].is_unique else "settings"
    m = {"NumSettings": str(len(settings)), "SettingNoun": noun}
    targets = {LINEAR: "the linear baseline", RELU_BN: "ReLU + BatchNorm"}
    tags = {
        BN_ONLY: "BN",
        ZSCORE_ONLY: "Z",
        "identity+layernorm": "LN",
        "identity+rmsnorm": "RMS",
        LINEAR: "Linear",
        RELU_BN: "Relu",
    }  # macro names: \\VerdictBNvsLinear, ...
    verdicts = {}
    for a, b in stats.COMPARISONS["E1"]:
        a, b = "+".join(a), "+".join(b)
        v = list(e1[(e1["a"] == a) & (e1["b"] == b)]["verdict"])
        verdicts[(a, b)] = v
        m[f"Verdict{tags[a]}vs{tags[b]}"] = verdict_summary(v, targets[b], noun)
    e7 = comp[comp["experiment"] == "E7"]
    n7 = (
        "datasets"
        if e7[list(vocab.SETTING_KEYS)].drop_duplicates()["dataset"].is_unique
        else "settings"
    )
    for a in (BN_ONLY, ZSCORE_ONLY):
        v = list(e7[(e7["a"] == a) & (e7["b"] == LINEAR)]["verdict"])
        m[f"ESevenVerdict{tags[a]}"] = verdict_summary(v, "the linear baseline", n7)

    bn = verdicts[(BN_ONLY, LINEAR)]
    word = stats.answer(bn)
    m["AnswerWord"] = word
    n, k_better = len(bn), bn.count("better")
    k_open = bn.count("inconclusive")
    seeds = _seeds_text(df)
    m["AnswerSentence"] = {
        "no": "BatchNorm alone did not act as a nonlinearity: wherever it was tested, "
        "it was no better than the linear classifier.",
        "yes": f"BatchNorm alone acted as a nonlinearity: it beat the linear classifier on every one "
        f"of the {n} {noun}.",
        "mixed": f"The evidence is mixed: BatchNorm alone beat the linear classifier on {k_better} of "
        f"{n} {noun} and not on the others.",
        "inconclusive": (
            f"The runs do not settle the question: on {k_open} of {n} {noun}, {seeds} seeds "
            f"per cell established neither a difference nor equivalence within "
            f"$\\pm{100 * margin:g}$ points."
            if n
            else "The runs do not settle the question: the configuration has no "
            "identity + BatchNorm and linear cells to compare."
        ),
    }[word]
    m["Recommendation"] = {
        "no": "The answer to the practitioner is therefore to keep the activation function.",
        "yes": "These runs contradict the collapse argument; before acting on them, check how the "
        "networks were evaluated, since an inference-mode BatchNorm network is affine.",
        "mixed": "These runs alone do not settle what to tell the practitioner; more seeds, a larger "
        "budget or more datasets would.",
        "inconclusive": "These runs alone do not settle what to tell the practitioner; more seeds or "
        "a larger budget would.",
    }[word]
    return m


def _seeds_text(df: pd.DataFrame) -> str:
    n = stats.selected(df).groupby(["experiment", *vocab.CELL_KEYS])["seed"].nunique()
    if n.empty:
        return "0"
    return str(n.min()) if n.min() == n.max() else f"{n.min()}--{n.max()}"


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
        "FoldMinAgreement": pct(runs["fold_agreement"].min(), 2) if len(fold) else MISSING,
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
            "BatchSizes",
            "AccClassSmallest",
            "AccRandomSmallest",
        )
    }
    m["FlipTrend"] = "could not be measured (no batch-statistics evaluations)"
    measured = bs[bs["flip_rate"].notna()]
    if measured.empty:
        return m
    per_cell = bs.groupby([*vocab.CELL_KEYS, "full", "batch_size", "composition"])[
        ["accuracy", "flip_rate"]
    ].mean()
    per_cell = per_cell.reset_index()
    b0, b1 = int(measured["batch_size"].min()), int(measured["batch_size"].max())

    def at(b, comp):
        """The per-cell means at test batch size b (not the whole set) and composition comp."""
        sel = ~per_cell["full"] & (per_cell["batch_size"] == b) & (per_cell["composition"] == comp)
        return per_cell[sel]

    flip0, flip1 = at(b0, "random")["flip_rate"].max(), at(b1, "random")["flip_rate"].max()
    m.update(
        SmallestBatch=str(b0), LargestBatch=str(b1), FlipSmallest=pct(flip0), FlipLargest=pct(flip1)
    )
    sizes = sorted(measured["batch_size"].unique())
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


def depth_macros(df: pd.DataFrame, layers: pd.DataFrame, alpha: float = stats.ALPHA) -> dict:
    """E4: the growth factor per added layer of the input layer's gradient norm at
    initialization, and the test accuracy of the deepest networks."""
    runs = stats.selected(df, "E4")
    first_layer = stats.selected(layers, "E4")
    first_layer = first_layer[first_layer["layer"] == 0]
    m = {"MinDepth": MISSING, "MaxDepth": MISSING}
    tags = {vocab.BN_ONLY: "BN", vocab.RELU_BN: "ReluBN", ("relu", "none"): "Relu"}
    for tag in tags.values():
        m[f"GradGrowth{tag}"] = MISSING
        m[f"GradGrowthVerdict{tag}"] = "was not measured"
        m[f"AccDeep{tag}"] = MISSING
    if runs.empty:
        return m
    m["MinDepth"], m["MaxDepth"] = str(int(runs["depth"].min())), str(int(runs["depth"].max()))
    for (act, norm), tag in tags.items():
        r = runs[(runs["activation"] == act) & (runs["norm"] == norm)]
        if r.empty:
            continue
        g = first_layer[(first_layer["activation"] == act) & (first_layer["norm"] == norm)]
        fit = stats.depth_growth(g["depth"], g["grad_norm_init"])
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
    return m


def dynamics_macros(history: pd.DataFrame) -> dict:
    """E7: which of none / z-score / BatchNorm (identity activation) had the lowest training loss
    after the first epoch, on each dataset."""
    loss = first_epoch_loss(history)
    if loss.empty:
        return {"ESevenFastest": "no training curves were recorded."}
    winners = loss.loc[loss.groupby("dataset")["loss_first"].idxmin()]
    by_norm = {}
    for d in ordered(winners["dataset"], vocab.DATASETS):
        norm = winners[winners["dataset"] == d]["norm"].iloc[0]
        by_norm.setdefault(norm, []).append(label(d))
    parts = [f"of {network('identity', n)} on {join_words(ds)}" for n, ds in by_norm.items()]
    return {
        "ESevenFastest": "the lowest training loss after the first epoch was that "
        + " and ".join(parts)
        + "."
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


def macros(inputs: dict, margin: float = stats.MARGIN, alpha: float = stats.ALPHA) -> dict:
    """Every macro the paper uses, name -> LaTeX text, from the study tables (input name -> table:
    metrics, history, batchstats, layers, summary, comparisons, placement, benchmarks)."""
    df, comp = inputs["metrics"], inputs["comparisons"]
    m = {
        "Margin": f"{100 * margin:g}",
        "Alpha": f"{alpha:g}",
        "ConfidenceLevel": f"{100 * stats.LEVEL:g}",
    }
    m |= run_macros(df, inputs["benchmarks"])
    m |= grid_macros(df)
    m |= boundary_macros(df)
    m |= dynamics_macros(inputs["history"])
    m |= headline_macros(inputs["summary"], comp)
    m |= verdict_macros(comp, df, margin)
    m |= collapse_macros(df)
    m |= batch_macros(inputs["batchstats"])
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
