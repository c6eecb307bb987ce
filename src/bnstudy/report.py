"""`macros.tex`: every number and verdict the paper's prose quotes, computed from this run.

The prose never types a result. It says, for example, "identity + BatchNorm reached \\HeadAccBN
against \\HeadAccLinear for the linear baseline, so it was \\HeadVerdictBNLinear{} the baseline",
and this module decides what those macros say. A different outcome prints a different sentence:
the verdict words come from `stats.verdict` and `stats.answer`, the sentences that carry them are
assembled here from those words. A cell the configuration did not run prints as "--".
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from bnstudy import stats
from bnstudy.tables import (ACTIVATIONS, DATASETS, NORMS, VERDICT_PHRASES, acc_ci, comparison_label,
                            diff_ci, name, ordered, p_equals, pct, sci, seconds, selected_history,
                            tex_escape)

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "pandas", "scipy", "seaborn", "matplotlib",
            "scikit-learn", "snakemake", "bnstudy")
MISSING = "--"


def join_words(items: list[str]) -> str:
    items = [str(i) for i in items]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


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
            parts.append(f"{VERDICT_PHRASES[w]} {obj} on {k} of {n} {noun}" if not parts
                         else f"{VERDICT_PHRASES[w]} {obj} on {k}")
    return "; ".join(parts)


def _cell(summary: pd.DataFrame, dataset: str, activation: str, norm: str, setting=None):
    s = summary[(summary["experiment"] == "E1") & (summary["dataset"] == dataset)
                & (summary["activation"] == activation) & (summary["norm"] == norm)]
    if setting is not None:
        s = s[(s["placement"] == setting[0]) & (s["depth"] == setting[1]) & (s["width"] == setting[2])]
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
    c = comp[(comp["experiment"] == "E1") & (comp["a"] == "identity+batchnorm") & (comp["b"] == "identity+none")]
    best, best_gap = None, -np.inf
    for r in c.itertuples():
        s = summary[(summary["experiment"] == "E1") & (summary["dataset"] == r.dataset)
                    & (summary["placement"] == r.placement) & (summary["depth"] == r.depth)
                    & (summary["width"] == r.width)]
        gap = s["mean"].max() - r.mean_b
        if gap > best_gap:
            best, best_gap = (r.dataset, r.placement, r.depth, r.width), gap
    return best


def headline_macros(summary: pd.DataFrame, comp: pd.DataFrame) -> dict:
    m = {k: MISSING for k in ("HeadDataset", "HeadAccBN", "HeadAccZ", "HeadAccLinear", "HeadAccReluBN",
                              "HeadAccBest", "HeadBestNetwork", "HeadDiffBNLinear", "HeadPBNLinear",
                              "HeadPTostBNLinear", "HeadPBNRelu", "HeadDiffBNRelu", "HeadGap")}
    m["HeadVerdictBNLinear"] = "not compared with"
    m["HeadVerdictBNRelu"] = "not compared with"
    head = head_setting(summary, comp)
    if head is None:
        return m
    d, pl, dp, wd = head
    setting = (pl, dp, wd)
    m["HeadDataset"] = name(DATASETS, d)
    m["HeadAccBN"] = _acc(_cell(summary, d, "identity", "batchnorm", setting))
    m["HeadAccZ"] = _acc(_cell(summary, d, "identity", "zscore", setting))
    m["HeadAccLinear"] = _acc(_cell(summary, d, "identity", "none", setting))
    m["HeadAccReluBN"] = _acc(_cell(summary, d, "relu", "batchnorm", setting))
    s = summary[(summary["experiment"] == "E1") & (summary["dataset"] == d) & (summary["placement"] == pl)
                & (summary["depth"] == dp) & (summary["width"] == wd)]
    best = s.loc[s["mean"].idxmax()]
    m["HeadAccBest"] = _acc(best)
    m["HeadBestNetwork"] = comparison_label(f"{best['activation']}+{best['norm']}")
    lin = _cell(summary, d, "identity", "none", setting)
    m["HeadGap"] = f"{100 * (best['mean'] - lin['mean']):.1f}" if lin is not None else MISSING
    sel = comp[(comp["experiment"] == "E1") & (comp["dataset"] == d) & (comp["placement"] == pl)
               & (comp["depth"] == dp) & (comp["width"] == wd)]
    for b, tag in (("identity+none", "Linear"), ("relu+batchnorm", "Relu")):
        r = sel[(sel["a"] == "identity+batchnorm") & (sel["b"] == b)]
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
    settings = e1[stats.SETTING].drop_duplicates()
    noun = "datasets" if settings["dataset"].is_unique else "settings"
    m = {"NumSettings": str(len(settings)), "SettingNoun": noun}
    targets = {"identity+none": "the linear baseline", "relu+batchnorm": "ReLU + BatchNorm"}
    tags = {"identity+batchnorm": "BN", "identity+zscore": "Z", "identity+layernorm": "LN",
            "identity+rmsnorm": "RMS", "identity+none": "Linear", "relu+batchnorm": "Relu"}
    verdicts = {}
    for a, b in stats.COMPARISONS["E1"]:
        a, b = "+".join(a), "+".join(b)
        v = list(e1[(e1["a"] == a) & (e1["b"] == b)]["verdict"])
        verdicts[(a, b)] = v
        m[f"Verdict{tags[a]}vs{tags[b]}"] = verdict_summary(v, targets[b], noun)
    e7 = comp[comp["experiment"] == "E7"]
    n7 = "datasets" if e7[stats.SETTING].drop_duplicates()["dataset"].is_unique else "settings"
    for a in ("identity+batchnorm", "identity+zscore"):
        v = list(e7[(e7["a"] == a) & (e7["b"] == "identity+none")]["verdict"])
        m[f"ESevenVerdict{tags[a]}"] = verdict_summary(v, "the linear baseline", n7)

    bn = verdicts[("identity+batchnorm", "identity+none")]
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
        "inconclusive": (f"The runs do not settle the question: on {k_open} of {n} {noun}, {seeds} seeds "
                         f"per cell established neither a difference nor equivalence within "
                         f"$\\pm{100 * margin:g}$ points." if n else
                         "The runs do not settle the question: the configuration has no "
                         "identity + BatchNorm and linear cells to compare."),
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
    n = stats.selected(df).groupby(["experiment", *stats.CELL])["seed"].nunique()
    if n.empty:
        return "0"
    return str(n.min()) if n.min() == n.max() else f"{n.min()}--{n.max()}"


def collapse_macros(df: pd.DataFrame) -> dict:
    runs = df[df["experiment"] == "E2"]
    fold = runs["fold_max_dev"].dropna()
    foldable = runs[(runs["activation"] == "identity") & runs["norm"].isin(["none", "batchnorm", "zscore"])]
    per_example = runs[(runs["activation"] == "identity") & runs["norm"].isin(["layernorm", "rmsnorm"])]
    m = {"NumFolded": str(len(fold)),
         "FoldMaxDev": f"${sci(fold.max())}$" if len(fold) else MISSING,
         "FoldMinAgreement": pct(runs["fold_agreement"].min(), 2) if len(fold) else MISSING,
         "GapFoldableMax": f"${sci(foldable['affine_gap'].max())}$" if len(foldable) else MISSING,
         "GapPerExampleMin": f"${sci(per_example['affine_gap'].min())}$" if len(per_example) else MISSING,
         "GapPerExampleMedian": f"${sci(per_example['affine_gap'].median())}$" if len(per_example) else MISSING}
    lo, hi = foldable["affine_gap"].max(), per_example["affine_gap"].min()
    if len(foldable) and len(per_example) and hi > 0:
        orders = math.floor(math.log10(hi / max(lo, 1e-300)))
        m["GapComparison"] = (f"at least {orders} orders of magnitude larger than" if orders >= 1 else
                              "not clearly larger than")
    else:
        m["GapComparison"] = "not compared with"
    return m


def batch_macros(df: pd.DataFrame) -> dict:
    runs = stats.selected(df, "E3")
    runs = runs[runs["norm"].isin(["batchnorm", "zscore"])]
    flips = sorted(((int(c.rsplit("_", 1)[1]), c) for c in runs.columns
                    if re.fullmatch(r"flip_rate_\d+", c) and runs[c].notna().any()))
    m = {k: MISSING for k in ("SmallestBatch", "LargestBatch", "FlipSmallest", "FlipLargest", "BatchSizes",
                              "AccClassSmallest", "AccRandomSmallest")}
    m["FlipTrend"] = "could not be measured (no batch-statistics evaluations)"
    if runs.empty or not flips:
        return m
    cells = runs.groupby(["dataset", "activation", "norm", "placement", "depth", "width"])
    (b0, c0), (b1, c1) = flips[0], flips[-1]
    mean0, mean1 = cells[c0].mean(), cells[c1].mean()
    m.update(SmallestBatch=str(b0), LargestBatch=str(b1), FlipSmallest=pct(mean0.max()),
             FlipLargest=pct(mean1.max()))
    sizes = [str(b) for b, _ in flips] + (["the full test set"] if "bs_acc_random_full" in runs else [])
    m["BatchSizes"] = join_words(sizes)
    if f"bs_acc_class_{b0}" in runs and f"bs_acc_random_{b0}" in runs:
        m["AccClassSmallest"] = pct(cells[f"bs_acc_class_{b0}"].mean().min())
        m["AccRandomSmallest"] = pct(cells[f"bs_acc_random_{b0}"].mean().min())
    m["FlipTrend"] = ("fell as the batch grew, as \\cref{prop:batch} predicts" if mean1.max() < mean0.max()
                      else "did not fall as the batch grew, unlike what \\cref{prop:batch} predicts")
    return m


def depth_macros(df: pd.DataFrame, alpha: float = stats.ALPHA) -> dict:
    runs = stats.selected(df, "E4")
    m = {"MinDepth": MISSING, "MaxDepth": MISSING}
    tags = {("identity", "batchnorm"): "BN", ("relu", "batchnorm"): "ReluBN", ("relu", "none"): "Relu"}
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
        first = [float(np.asarray(g)[0]) for g in r["grad_norm_init"]]
        fit = stats.depth_growth(r["depth"], first)
        if np.isfinite(fit["factor"]):
            ci = f" [{fit['factor_lo']:.2f}, {fit['factor_hi']:.2f}]" if np.isfinite(fit["factor_lo"]) else ""
            m[f"GradGrowth{tag}"] = f"{fit['factor']:.2f}{ci}"
            if fit["p"] < alpha:
                m[f"GradGrowthVerdict{tag}"] = "grew" if fit["factor"] > 1 else "shrank"
            else:
                m[f"GradGrowthVerdict{tag}"] = "did not change significantly"
        deep = r[r["depth"] == r["depth"].max()]
        m[f"AccDeep{tag}"] = _acc(pd.Series(dict(zip(("mean", "ci_lo", "ci_hi"),
                                                     stats.t_interval(deep["test_acc"])))))
    return m


def placement_macros(effects: pd.DataFrame) -> dict:
    n, k = len(effects), int(effects["significant"].sum()) if len(effects) else 0
    m = {"PlacementNum": str(n), "PlacementNumSig": str(k),
         "PlacementMaxAbsDiff": f"{100 * effects['diff'].abs().max():.1f}" if n else MISSING}
    if n == 0:
        m["PlacementSentence"] = "No composition was run with both placements."
    elif k == 0:
        m["PlacementSentence"] = (f"Placement made no significant difference in any of the {n} "
                                  f"compositions (Holm-corrected paired t-tests).")
    else:
        sig = effects[effects["significant"]]
        better = int((sig["diff"] > 0).sum())
        m["PlacementSentence"] = (f"Placement made a significant difference in {k} of the {n} compositions "
                                  f"(Holm-corrected paired t-tests): the norm after the activation was better "
                                  f"in {better} and worse in {k - better} of them.")
    return m


def grid_macros(df: pd.DataFrame) -> dict:
    """What E1 crosses, and the shared training settings, in words."""
    e1 = df[df["experiment"] == "E1"]
    def words(col, labels=None):
        values = ordered(e1[col], labels or {})
        return join_words([name(labels, v) if labels else str(v) for v in values]) if len(values) else MISSING
    def setting(col):
        values = sorted(df[col].unique())
        return join_words([tex_escape(str(v)) for v in values])
    optimizers = {"adam": "Adam", "sgd": "SGD with momentum"}
    return {"EOneActivations": words("activation", ACTIVATIONS), "EOneNorms": words("norm", NORMS),
            "EOneDepths": words("depth"), "EOneWidths": words("width"), "EOnePlacements": words("placement"),
            "Optimizer": join_words([optimizers.get(o, tex_escape(o)) for o in sorted(df["optimizer"].unique())])
            + " (" + setting("schedule") + " learning-rate schedule)",
            "BatchSize": setting("batch_size")}


def boundary_macros(df: pd.DataFrame) -> dict:
    """E6: test accuracy of identity + BatchNorm and ReLU + BatchNorm on each 2-D set."""
    runs = stats.selected(df, "E6")
    m = {}
    for (act, norm), tag in ((("identity", "batchnorm"), "BN"), (("relu", "batchnorm"), "ReluBN")):
        parts = []
        for d in ordered(runs["dataset"], DATASETS):
            g = runs[(runs["dataset"] == d) & (runs["activation"] == act) & (runs["norm"] == norm)]
            if len(g):
                parts.append(f"{pct(g['test_acc'].mean())}\\% on {name(DATASETS, d)}")
        m[f"ESixAcc{tag}"] = join_words(parts) if parts else "-- (not run)"
    return m


def dynamics_macros(df: pd.DataFrame, history: pd.DataFrame) -> dict:
    """E7: which of none / z-score / BatchNorm (identity activation) had the lowest training loss
    after the first epoch, on each dataset."""
    h = selected_history(df, history, "E7")
    h = h[(h["activation"] == "identity") & h["norm"].isin(["none", "zscore", "batchnorm"])]
    if h.empty:
        return {"ESevenFastest": "no training curves were recorded."}
    first = h[h["epoch"] == h.groupby("dataset")["epoch"].transform("min")]
    loss = first.groupby(["dataset", "norm"])["train_loss"].mean().reset_index()
    winners = loss.loc[loss.groupby("dataset")["train_loss"].idxmin()]
    by_norm = {}
    for d in ordered(winners["dataset"], DATASETS):
        norm = winners[winners["dataset"] == d]["norm"].iloc[0]
        by_norm.setdefault(norm, []).append(name(DATASETS, d))
    parts = [f"of {comparison_label(f'identity+{n}')} on {join_words(ds)}" for n, ds in by_norm.items()]
    return {"ESevenFastest": "the lowest training loss after the first epoch was that "
                             + " and ".join(parts) + "."}


def run_macros(df: pd.DataFrame, benchmarks: pd.DataFrame) -> dict:
    distinct = df.drop_duplicates([*stats.CELL, "seed", "lr"])
    cells = df.drop_duplicates(stats.CELL)
    datasets = ordered(df["dataset"], DATASETS)
    devices = sorted(df["device"].astype(str).unique())
    return {"NumRuns": str(len(distinct)), "NumCells": str(len(cells)), "NumDatasets": str(len(datasets)),
            "DatasetList": join_words([name(DATASETS, d) for d in datasets]),
            "NumSeeds": _seeds_text(df), "NumExperiments": str(df["experiment"].nunique()),
            "NumLrs": str(int(df.groupby(["experiment", *stats.CELL, "seed"])["lr"].nunique().max())),
            "LrList": join_words([f"{lr:g}" for lr in sorted(df["lr"].unique())]),
            "Epochs": _epochs_text(df),
            "Devices": tex_escape(join_words(devices)),
            "TrainTime": seconds(benchmarks["s"].sum()) if len(benchmarks) else MISSING,
            "NumBenchmarks": str(len(benchmarks))}


def _epochs_text(df: pd.DataFrame) -> str:
    """'20' or, when datasets differ, '20 (MNIST-1D) or 40 (spirals and XOR)'."""
    by_epochs = {}
    for d in ordered(df["dataset"], DATASETS):
        for e in sorted(df[df["dataset"] == d]["epochs"].unique()):
            by_epochs.setdefault(int(e), []).append(name(DATASETS, d))
    if len(by_epochs) == 1:
        return str(next(iter(by_epochs)))
    return " or ".join(f"{e} ({join_words(ds)})" for e, ds in sorted(by_epochs.items()))


def git_commit(repo: str | Path = ".") -> str:
    """HEAD's short hash, '+dirty' when tracked files have changes; 'unknown' without a commit."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment_macros(repo: str | Path = ".") -> dict:
    versions = []
    for p in PACKAGES:
        try:
            versions.append(f"{p} {importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        tex = subprocess.run(["pdflatex", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        tex = "not found"
    return {"GitCommit": tex_escape(git_commit(repo)), "PythonVersion": platform.python_version(),
            "PackageVersions": tex_escape(", ".join(versions)), "TexVersion": tex_escape(tex),
            "Platform": tex_escape(f"{platform.system()} {platform.machine()}")}


def macros(df: pd.DataFrame, history: pd.DataFrame, summary: pd.DataFrame, comp: pd.DataFrame,
           effects: pd.DataFrame, benchmarks: pd.DataFrame, margin: float = stats.MARGIN, alpha: float = stats.ALPHA,
           repo: str | Path = ".") -> dict:
    """Every macro the paper uses, name -> LaTeX text."""
    m = {"Margin": f"{100 * margin:g}", "Alpha": f"{alpha:g}", "ConfidenceLevel": f"{100 * stats.LEVEL:g}"}
    m |= run_macros(df, benchmarks)
    m |= grid_macros(df)
    m |= boundary_macros(df)
    m |= dynamics_macros(df, history)
    m |= headline_macros(summary, comp)
    m |= verdict_macros(comp, df, margin)
    m |= collapse_macros(df)
    m |= batch_macros(df)
    m |= depth_macros(df, alpha)
    m |= placement_macros(effects)
    m |= environment_macros(repo)
    return m


def render(m: dict) -> str:
    lines = ["% Generated by `bnstudy macros` from this run's results. Do not edit."]
    for k, v in m.items():
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ValueError(f"macro name {k!r} must be letters only")
        lines.append(f"\\newcommand{{\\{k}}}{{{v}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the PDF

# The Debian/Ubuntu packages the paper needs (checked against latexmk's recorder file, main.fls).
TEX_PACKAGES = ("latexmk", "texlive-latex-base", "texlive-latex-recommended", "texlive-latex-extra", "lmodern")
INSTALL_HINT = ("latexmk was not found, so the paper cannot be compiled. Install TeX from the Debian/"
                "Ubuntu packages with:\n  sudo apt-get install -y --no-install-recommends "
                + " ".join(TEX_PACKAGES) + " poppler-utils\n(see the README's Install), then rerun snakemake.")
_WARNING = re.compile(r"^(LaTeX Warning|Package \w+ Warning|Class \w+ Warning|LaTeX Font Warning"
                      r"|Overfull \\[hv]box|Underfull \\[hv]box|Missing character)")


def latex_warnings(build: str | Path) -> list[str]:
    """The warnings of the last LaTeX pass (main.log) and of BibTeX (main.blg)."""
    build = Path(build)
    out = []
    log = build / "main.log"
    if log.exists():
        out += [line for line in log.read_text(errors="replace").splitlines() if _WARNING.match(line)]
    blg = build / "main.blg"
    if blg.exists():
        out += [line for line in blg.read_text(errors="replace").splitlines() if line.startswith("Warning--")]
    return out


def compile_paper(src: str | Path, build: str | Path, out: str | Path, generated: dict,
                  log: str | Path | None = None) -> list[str]:
    """Copy the paper's sources and the generated files (build-relative path -> file) into `build`,
    run `latexmk -pdf` there, and copy the PDF to `out` atomically. Returns the LaTeX warnings;
    latexmk's output and the warnings are also written to `log` if given."""
    import shutil

    from bnstudy.results import atomic_output

    if shutil.which("latexmk") is None:
        raise SystemExit(INSTALL_HINT)
    src, build = Path(src), Path(build)
    for stale in ("sections", "figures", "tables", "tex"):  # nothing left over from an earlier run
        shutil.rmtree(build / stale, ignore_errors=True)
    shutil.copytree(src, build, dirs_exist_ok=True)
    for rel, path in generated.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, build / rel)
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "main.tex"]
    proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    warnings = latex_warnings(build)
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(proc.stdout + proc.stderr + f"\n{len(warnings)} LaTeX warnings\n"
                             + "".join(w + "\n" for w in warnings))
    if proc.returncode != 0:
        errors = [line for line in proc.stdout.splitlines() if ":" in line and "error" in line.lower()
                  or line.startswith("!")]
        raise SystemExit(f"latexmk failed (exit {proc.returncode}); see {build / 'main.log'}\n"
                         + "\n".join(errors[-20:] or proc.stdout.splitlines()[-30:]))
    with atomic_output(out) as tmp:
        shutil.copyfile(build / "main.pdf", tmp)
    return warnings
