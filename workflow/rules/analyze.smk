# Stage 4: the tidy table -> statistics, figures, tables and the macros every quoted number
# comes from. Thin rules: each calls one `bnstudy` subcommand (src/bnstudy/{stats,figures,
# tables,report}.py). Outputs marked report(...) appear in `snakemake --report results/report.html`.

FIGURES = ("e1_heatmaps", "e2_collapse", "e3_batch_dependence", "e4_depth", "e5_placement",
           "e6_boundaries", "e7_dynamics")
TABLES = ("main", "comparisons", "fold", "placement", "dynamics", "compute")
# The decision-boundary grids of the E6 cells (written by rule train_2d).
E6_BOUNDARIES = [cell.path(grid.BOUNDARY) for cell, exps in CELLS.items() if "E6" in exps]


rule stats:
    input:
        "results/metrics.parquet",
    output:
        summary=report("results/stats/summary.csv", category="Statistical tests",
                       caption="../../paper/report/summary.rst"),
        comparisons=report("results/stats/comparisons.csv", category="Statistical tests",
                           caption="../../paper/report/comparisons.rst"),
        placement=report("results/stats/placement.csv", category="Statistical tests",
                         caption="../../paper/report/placement.rst"),
    params:
        margin=config.get("analysis", {}).get("margin", 0.02),  # TOST margin (accuracy)
    log:
        "results/logs/analyze/stats.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy stats --metrics {input} --summary {output.summary}"
        " --comparisons {output.comparisons} --placement {output.placement}"
        " --margin {params.margin} > {log} 2>&1"


rule figure:
    input:
        metrics="results/metrics.parquet",
        history=lambda wc: "results/history.parquet" if wc.figure == "e7_dynamics" else [],
        boundaries=lambda wc: E6_BOUNDARIES if wc.figure == "e6_boundaries" else [],
    output:
        report("results/figures/{figure}.pdf", category="Figures",
               caption="../../paper/report/figure.rst"),
    wildcard_constraints:
        figure="|".join(FIGURES),
    params:
        history=lambda wc, input: f"--history {input.history}" if input.history else "",
        boundaries=lambda wc, input: f"--boundaries {' '.join(input.boundaries)}" if input.boundaries else "",
    log:
        "results/logs/analyze/figure_{figure}.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy figure {wildcards.figure} --metrics {input.metrics} {params.history}"
        " {params.boundaries} --out {output} > {log} 2>&1"


rule tables:
    input:
        metrics="results/metrics.parquet",
        history="results/history.parquet",
        stats=rules.stats.output,
    output:
        [f"results/tables/{name}.tex" for name in TABLES],
    params:
        # every training job's benchmark file; they exist once metrics.parquet does
        benchmarks="results/benchmarks/train",
    log:
        "results/logs/analyze/tables.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy tables --metrics {input.metrics} --history {input.history}"
        " --stats-dir results/stats --benchmarks {params.benchmarks} --out-dir results/tables > {log} 2>&1"


rule macros:
    input:
        metrics="results/metrics.parquet",
        history="results/history.parquet",
        stats=rules.stats.output,
    output:
        macros="results/tex/macros.tex",
        config="results/tex/config.yaml",
    params:
        benchmarks="results/benchmarks/train",
        config=shlex.quote(json.dumps(config)),  # a changed config reruns this rule
    log:
        "results/logs/analyze/macros.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy macros --metrics {input.metrics} --history {input.history} --stats-dir results/stats"
        " --benchmarks {params.benchmarks} --config-json {params.config}"
        " --out {output.macros} --config-out {output.config} > {log} 2>&1"
