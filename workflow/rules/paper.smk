# Stage 5: the paper. paper/ (hand-written prose) + the generated figures, tables and macros ->
# results/paper.pdf, compiled by latexmk in results/paper_build/. Without latexmk the workflow
# says so when it starts, and the paper rule fails at once with the install command
# (the README lists the packages); everything before the paper still runs.

import glob
import shutil
import sys

from bnstudy import latex

if shutil.which("latexmk") is None:
    print(f"WARNING: {latex.INSTALL_HINT}", file=sys.stderr)


rule paper:
    input:
        sources=[
            "paper/main.tex",
            "paper/references.bib",
            *sorted(glob.glob("paper/sections/**/*.tex", recursive=True)),
        ],
        generated=[o.path for o in OUTPUTS.values()]
        + [grid.MACROS, grid.SECTIONS, grid.CONFIG_COPY],
    output:
        report(grid.PAPER, category="Paper", caption="../../paper/report/paper.rst"),
    log:
        "results/logs/paper/latexmk.log",
    benchmark:
        "results/benchmarks/paper.tsv"
    conda:
        "../envs/bnstudy.yaml"
    shell:
        # errors go to the console (stderr); latexmk's output and the warnings go to the log
        "bnstudy paper --src paper --root results --build results/paper_build --out {output}"
        " --log {log} {input.generated}"
