"""The paper: macros cover the prose, verdict sentences follow the data, latexmk builds a real PDF
whose text (pdftotext) carries the results; the smoke pipeline ends with results/paper.pdf."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake
from test_figures import synthetic_results

from bnstudy import figures, formats, latex, macros, stats, summary, tables, vocab
from bnstudy.names import ordered

PAPER = Path(__file__).resolve().parents[1] / "paper"
SECTION_TITLES = (
    "Introduction",
    "Background and theory",
    "Setup",
    "Results",
    "Related work",
    "Limitations",
    "Conclusion",
    "References",
    "Reproducibility",
)
# Commands starting with a capital that LaTeX or its packages define (not generated macros).
LATEX_CAPITALS = {"Cref", "Citet", "TeX", "Delta", "FloatBarrier"}
needs_tex = pytest.mark.skipif(
    shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
    reason="needs latexmk and pdftotext (see the README, Install)",
)


def _tex_sources() -> str:
    return "\n".join(
        p.read_text() for p in [PAPER / "main.tex", *sorted((PAPER / "sections").glob("*.tex"))]
    )


def used_macros() -> set[str]:
    """Capitalised control sequences the .tex files use, minus those main.tex defines itself."""
    text = _tex_sources()
    defined = set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", text))
    return set(re.findall(r"\\([A-Z][A-Za-z]*)", text)) - defined - LATEX_CAPITALS


def all_macros(inputs: dict) -> dict:
    return macros.macros(inputs)


def plain(tex: str) -> str:
    """What a LaTeX snippet of ours looks like in pdftotext output, minus spaces and hyphens."""
    text = tex.replace("$\\pm", "±").replace("\\%", "%").replace("$", "").replace("--", "–")
    return squash(re.sub(r"\\[a-zA-Z]+", "", text).replace("{", "").replace("}", ""))


def squash(text: str) -> str:
    """Drop whitespace and hyphens, so that line breaks and hyphenation do not matter."""
    return re.sub(r"[\s\-‐−]+", "", text)


def pdf_text(path, layout: bool = False) -> str:
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_results(tmp_path_factory.mktemp("synthetic"))


def test_every_macro_the_paper_uses_is_generated(synthetic):
    m = all_macros(synthetic) | latex.environment()
    missing = used_macros() - set(m) - {f"Has{macros.tex_name(e)}true" for e in vocab.EXPERIMENTS}
    assert not missing, (
        f"the paper uses macros that bnstudy.macros does not write: {sorted(missing)}"
    )
    assert "AnswerSentence" in used_macros()  # the check sees the prose's macros at all


def test_a_sparse_run_still_defines_every_macro(synthetic):
    """A config without most experiments prints '--' and 'not testable', never an undefined macro."""
    e1 = synthetic["metrics"].query("experiment == 'E1' and activation != 'relu'")
    empty = {k: v.iloc[:0] for k, v in synthetic.items() if k not in ("metrics", "boundaries")}
    ref = synthetic["reference"]
    sparse = all_macros(
        {**empty, "metrics": e1, "reference": ref, **stats.study(e1, ref, empty["batchstats"])}
    )
    assert set(sparse) == set(all_macros(synthetic))
    assert sparse["AnswerWord"] == "cannot discriminate"  # no ReLU + BatchNorm: no gap to measure
    assert sparse["VerdictBN"].startswith("not testable")


def _study(synthetic, metrics) -> dict:
    return all_macros(
        {
            **synthetic,
            "metrics": metrics,
            **stats.study(metrics, synthetic["reference"], synthetic["batchstats"]),
        }
    )


def test_verdict_sentence_follows_the_data(synthetic):
    m = all_macros(synthetic)
    assert m["AnswerWord"] == "no"
    assert m["VerdictBN"] == "no better than linear on 1 of the 1 datasets with a gap"

    lift = (synthetic["metrics"]["activation"] == "identity") & (
        synthetic["metrics"]["norm"].isin(["batchnorm", "zscore"])
    )
    better = synthetic["metrics"].copy()  # the same study, had BatchNorm alone been nonlinear
    half_gap = {"spirals": 0.2, "digits": 0.02}  # half of each dataset's gap
    better.loc[lift, "test_acc"] += better.loc[lift, "dataset"].map(half_gap)
    b = _study(synthetic, better)
    assert b["AnswerWord"] == "yes" and b["AnswerSentence"] != m["AnswerSentence"]
    assert b["VerdictBN"] == "nonlinear on 1 of the 1 datasets with a gap"

    noisy = synthetic["metrics"].copy()  # seeds too noisy to tell
    rng = np.random.default_rng(0)
    noisy.loc[lift, "test_acc"] += rng.normal(0, 0.2, lift.sum())
    assert _study(synthetic, noisy)["AnswerWord"] == "inconclusive"

    flat = synthetic["metrics"].copy()  # a nonlinearity buys nothing: no dataset can discriminate
    relu = flat["activation"] != "identity"
    flat.loc[relu, "test_acc"] = flat.loc[relu, "dataset"].map(
        {"spirals": 0.52, "digits": 0.95}
    ) + rng.normal(0, 0.003, relu.sum())
    assert _study(synthetic, flat)["AnswerWord"] == "cannot discriminate"


def test_the_fold_agreement_sentence_never_rounds_up_to_every_example():
    runs = pd.DataFrame(
        {
            "experiment": "E2",
            "activation": "identity",
            "norm": ["none", "batchnorm"],
            "fold_max_dev": [1e-6, 2e-6],
            "fold_agreement": [1.0, 1.0],
            "affine_gap": [1e-7, 2e-7],
        }
    )
    assert macros.collapse_macros(runs)["FoldAgreement"] == "on every test example"
    runs.loc[1, "fold_agreement"] = 0.99996  # 1 of 25,000 differs: not "100.00%"
    assert macros.collapse_macros(runs)["FoldAgreement"] == (
        "on at least 99.99\\% of the test examples"
    )


def test_a_share_just_below_zero_reads_0_in_the_paper_and_the_runs_last_lines():
    """A share of the gap that rounds to zero from below (the default run's spirals: -0.4%) is
    '0', not '-0', in the paper's sentences and tables and in what a finished run prints."""
    assert formats.share_ci(-0.004, -0.031, 0.029) == "$0$ [$-3$, $3$]"
    assert formats.share_ci(0.004, -0.004, 0.5, "\\%") == "$0$\\% [$0$, $50$]"
    row = dict(experiments="E1", activation=vocab.BN_ONLY[0], norm=vocab.BN_ONLY[1])
    row |= dict(dataset="spirals", mean_acc=0.548, mean_reference=0.549, mean_nonlinear=0.952)
    row |= dict(share=-0.004, share_lo=-0.031, share_hi=0.029, verdict="linear")
    (line,) = summary.headline(pd.DataFrame([row]))
    assert line.endswith("share of the gap 0% [-3%, 3%]: linear"), line


def test_macro_names_must_be_letters():
    with pytest.raises(ValueError):
        macros.render({"Acc2": "1"})


def _generated(tmp: Path, inputs: dict, experiments=tuple(vocab.EXPERIMENTS)) -> dict:
    """Every generated file of the paper for `experiments`, from synthetic data, under tmp (as the
    rules do): build-relative path -> file."""
    out = {}
    for o in vocab.outputs_for(experiments):
        rel = Path(o.path).relative_to("results")
        if o.kind == "figure":
            figures.draw(o.name, inputs, tmp / rel)
        else:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(tables.make(o.name, inputs))
        out[str(rel)] = tmp / rel
    (tmp / "tex").mkdir(exist_ok=True)
    (tmp / "tex" / "macros.tex").write_text(macros.render(all_macros(inputs), experiments))
    (tmp / "tex" / "sections.tex").write_text(macros.sections(experiments))
    (tmp / "tex" / "config.yaml").write_text("training: {seeds: [0, 1, 2, 3, 4]}\n")
    for name in ("macros.tex", "sections.tex", "config.yaml"):
        out[f"tex/{name}"] = tmp / "tex" / name
    return out


@needs_tex
def test_synthetic_study_compiles_to_a_pdf_that_states_its_results(synthetic, tmp_path):
    generated = _generated(tmp_path, synthetic)
    pdf = tmp_path / "paper.pdf"
    warnings = latex.compile_paper(PAPER, tmp_path / "build", pdf, generated)
    assert warnings == []
    text = pdf_text(pdf)
    for title in SECTION_TITLES:
        assert title in text
    m = all_macros(synthetic)
    assert plain(m["AnswerSentence"]) in squash(text)
    # the headline number: identity + BatchNorm on the headline dataset, as the table computes it
    s = synthetic["summary"]
    row = s[
        (s["experiment"] == "E1")
        & (s["dataset"] == "spirals")
        & (s["activation"] == "identity")
        & (s["norm"] == "batchnorm")
    ].iloc[0]
    assert f"reached {100 * row['mean']:.1f}%" in " ".join(text.split())
    assert "??" not in text  # no unresolved reference or citation


@needs_tex
def test_paper_without_latexmk_fails_at_once_saying_how_to_install(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # a PATH without latexmk (or anything else)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnstudy.cli",
            "paper",
            "--build",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "p.pdf"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "latexmk was not found" in proc.stderr and "apt-get install" in proc.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@needs_tex
def test_smoke_pipeline_ends_with_the_paper(smoke_run):
    results = smoke_run / "results"
    text = pdf_text(results / "paper.pdf")
    for title in SECTION_TITLES:
        assert title in text
    macros = dict(
        re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (results / "tex" / "macros.tex").read_text())
    )
    assert plain(macros["AnswerSentence"]) in squash(text)
    assert macros["AnswerWord"] in {"no", "yes", "mixed", "inconclusive", "cannot discriminate"}
    # a number of the main table equals the metrics table's value
    metrics = pd.read_parquet(results / "metrics.parquet")
    e1 = stats.selected(metrics, "E1")
    first = ordered(e1["dataset"], vocab.DATASETS)[0]
    base = e1[(e1["dataset"] == first) & (e1["activation"] == "identity") & (e1["norm"] == "none")]
    row = next(
        line
        for line in pdf_text(results / "paper.pdf", layout=True).splitlines()
        if line.strip().startswith("deep linear (identity)") and re.search(r"\d", line)
    )
    assert f"{100 * base['test_acc'].mean():.1f}" == row.split()[3]
    assert "\n0 LaTeX warnings" in (results / "logs" / "paper" / "latexmk.log").read_text()


@pytest.mark.slow
def test_smoke_pipeline_gives_an_html_report(smoke_run, tmp_path):
    out = tmp_path / "report.html"
    proc = run_snakemake(
        smoke_run, "--configfile", "workflow/config/smoke.yaml", "--report", str(out), timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    html = out.read_text(errors="replace")
    for name in ("e1_heatmaps.pdf", "shares.csv", "paper.pdf"):
        assert name in html
