# Stage 5: the paper. paper/ (hand-written prose) + the generated figures, tables and macros ->
# results/paper.pdf, compiled by latexmk in results/paper_build/. Without latexmk the workflow
# says so when it starts, and the paper rule fails at once with the install command
# (the README lists the packages); everything before the paper still runs.

import glob
import shutil
import sys

if shutil.which("latexmk") is None:
    print("WARNING: latexmk not found; results/paper.pdf cannot be built. Install TeX with:\n"
          "  sudo apt-get install -y --no-install-recommends latexmk texlive-latex-base "
          "texlive-latex-recommended texlive-latex-extra lmodern",
          file=sys.stderr)


rule paper:
    input:
        sources=["paper/main.tex", "paper/references.bib", *sorted(glob.glob("paper/sections/*.tex"))],
        figures=expand("results/figures/{figure}.pdf", figure=FIGURES),
        tables=rules.tables.output,
        macros=rules.macros.output,
    output:
        report("results/paper.pdf", category="Paper", caption="../../paper/report/paper.rst"),
    log:
        "results/logs/paper/latexmk.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        # errors go to the console (stderr); latexmk's output and the warnings go to the log
        "bnstudy paper --src paper --root results --build results/paper_build --out {output}"
        " --log {log} {input.figures} {input.tables} {input.macros}"
