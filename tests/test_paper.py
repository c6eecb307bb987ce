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

from bnstudy import figures, report, stats, tables
from conftest import run_snakemake
from test_figures import synthetic_results

PAPER = Path(__file__).resolve().parents[1] / "paper"
SECTION_TITLES = ("Introduction", "Background and theory", "Setup", "Results", "Related work",
                  "Limitations", "Conclusion", "References", "Reproducibility")
# Commands starting with a capital that LaTeX or its packages define (not generated macros).
LATEX_CAPITALS = {"Cref", "Citet", "TeX", "Delta", "FloatBarrier"}
needs_tex = pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
                               reason="needs latexmk and pdftotext (see the README, Install)")


def _tex_sources() -> str:
    return "\n".join(p.read_text() for p in [PAPER / "main.tex", *sorted((PAPER / "sections").glob("*.tex"))])


def used_macros() -> set[str]:
    """Capitalised control sequences the .tex files use, minus those main.tex defines itself."""
    text = _tex_sources()
    defined = set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", text))
    return set(re.findall(r"\\([A-Z][A-Za-z]*)", text)) - defined - LATEX_CAPITALS


def all_macros(metrics, history, benchmarks=None):
    summary = stats.summarize(metrics)
    comp = pd.concat([stats.compare(metrics, e) for e in stats.COMPARISONS], ignore_index=True)
    benchmarks = tables.read_benchmarks("/nonexistent") if benchmarks is None else benchmarks
    return report.macros(metrics, history, summary, comp, stats.placement_effects(metrics), benchmarks)


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
    metrics, history, _ = synthetic
    m = all_macros(metrics, history)
    missing = used_macros() - set(m)
    assert not missing, f"the paper uses macros that bnstudy.report does not write: {sorted(missing)}"
    assert "AnswerSentence" in used_macros()  # the check sees the prose's macros at all


def test_a_sparse_run_still_defines_every_macro(synthetic):
    """A config without most experiments prints '--' and 'not compared', never an undefined macro."""
    metrics, history, _ = synthetic
    e1 = metrics[metrics["experiment"] == "E1"]
    sparse = all_macros(e1[e1["activation"] != "relu"], history.iloc[:0])
    assert set(sparse) == set(all_macros(metrics, history))
    assert "not compared with ReLU + BatchNorm" in sparse["VerdictBNvsRelu"]


def test_verdict_sentence_follows_the_data(synthetic):
    metrics, history, _ = synthetic
    m = all_macros(metrics, history)
    assert m["AnswerWord"] == "no"
    assert m["VerdictBNvsLinear"] == "statistically equivalent to the linear baseline on 2 of 2 datasets"

    better = metrics.copy()  # the same study, had BatchNorm alone beaten the linear model
    lift = (better["activation"] == "identity") & (better["norm"] == "batchnorm")
    better.loc[lift, "test_acc"] += 0.2
    b = all_macros(better, history)
    assert b["AnswerWord"] == "yes" and b["AnswerSentence"] != m["AnswerSentence"]
    assert b["VerdictBNvsLinear"] == "significantly better than the linear baseline on 2 of 2 datasets"

    noisy = metrics.copy()  # seeds too noisy to tell
    rng = np.random.default_rng(0)
    noisy.loc[lift, "test_acc"] += rng.normal(0, 0.2, lift.sum())
    assert all_macros(noisy, history)["AnswerWord"] == "inconclusive"


def test_macro_names_must_be_letters():
    with pytest.raises(ValueError):
        report.render({"Acc2": "1"})


def _generated(tmp: Path, metrics, history, boundaries) -> dict:
    """Every generated file of the paper, from synthetic data, under tmp (as the rules do)."""
    figures.set_style()
    out = {}
    for fig in figures.FIGURES:
        path = tmp / "figures" / f"{fig}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        fn = getattr(figures, fig)
        args = {"e6_boundaries": (metrics, boundaries), "e7_dynamics": (metrics, history)}.get(fig, (metrics,))
        fn(*args, path)
        out[f"figures/{fig}.pdf"] = path
    summary = stats.summarize(metrics)
    comp = pd.concat([stats.compare(metrics, e) for e in stats.COMPARISONS], ignore_index=True)
    bench = tables.read_benchmarks(tmp / "none")
    texts = {"main": tables.main_results(summary), "comparisons": tables.comparisons(comp),
             "fold": tables.fold_affinity(metrics), "placement": tables.placement(stats.placement_effects(metrics)),
             "dynamics": tables.dynamics(metrics, history), "compute": tables.compute(metrics, bench)}
    for name, text in texts.items():
        tables.write(text, tmp / "tables" / f"{name}.tex")
        out[f"tables/{name}.tex"] = tmp / "tables" / f"{name}.tex"
    (tmp / "tex").mkdir(exist_ok=True)
    tables.write(report.render(all_macros(metrics, history)), tmp / "tex" / "macros.tex")
    (tmp / "tex" / "config.yaml").write_text("training: {seeds: [0, 1, 2, 3, 4]}\n")
    out["tex/macros.tex"] = tmp / "tex" / "macros.tex"
    out["tex/config.yaml"] = tmp / "tex" / "config.yaml"
    return out


@needs_tex
def test_synthetic_study_compiles_to_a_pdf_that_states_its_results(synthetic, tmp_path):
    metrics, history, boundaries = synthetic
    generated = _generated(tmp_path, metrics, history, boundaries)
    pdf = tmp_path / "paper.pdf"
    warnings = report.compile_paper(PAPER, tmp_path / "build", pdf, generated)
    assert warnings == []
    text = pdf_text(pdf)
    for title in SECTION_TITLES:
        assert title in text
    m = all_macros(metrics, history)
    assert plain(m["AnswerSentence"]) in squash(text)
    # the headline number: identity + BatchNorm on the headline dataset, as the table computes it
    s = stats.summarize(metrics)
    row = s[(s["experiment"] == "E1") & (s["dataset"] == "spirals") & (s["activation"] == "identity")
            & (s["norm"] == "batchnorm")].iloc[0]
    assert f"reached {100 * row['mean']:.1f}%" in " ".join(text.split())
    assert "??" not in text  # no unresolved reference or citation


@needs_tex
def test_paper_without_latexmk_fails_at_once_saying_how_to_install(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # a PATH without latexmk (or anything else)
    proc = subprocess.run([sys.executable, "-m", "bnstudy.cli", "paper", "--build", str(tmp_path / "b"),
                           "--out", str(tmp_path / "p.pdf")], env=env, capture_output=True, text=True,
                          timeout=60)
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
    macros = dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (results / "tex" / "macros.tex").read_text()))
    assert plain(macros["AnswerSentence"]) in squash(text)
    assert macros["AnswerWord"] in {"no", "yes", "mixed", "inconclusive"}
    # a number of the main table equals the metrics table's value
    metrics = pd.read_parquet(results / "metrics.parquet")
    e1 = stats.selected(metrics, "E1")
    first = tables.ordered(e1["dataset"], tables.DATASETS)[0]
    base = e1[(e1["dataset"] == first) & (e1["activation"] == "identity") & (e1["norm"] == "none")]
    row = next(line for line in pdf_text(results / "paper.pdf", layout=True).splitlines()
               if line.strip().startswith("linear (identity)") and re.search(r"\d", line))
    assert f"{100 * base['test_acc'].mean():.1f}" == row.split()[2]
    assert "\n0 LaTeX warnings" in (results / "logs" / "paper" / "latexmk.log").read_text()


@pytest.mark.slow
def test_smoke_pipeline_gives_an_html_report(smoke_run, tmp_path):
    out = tmp_path / "report.html"
    proc = run_snakemake(smoke_run, "--configfile", "workflow/config/smoke.yaml", "--report", str(out),
                         timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    html = out.read_text(errors="replace")
    for name in ("e1_heatmaps.pdf", "comparisons.csv", "paper.pdf"):
        assert name in html
