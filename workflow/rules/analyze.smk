# Stage 4: the study's tables -> statistics, figures, tables and the macros every quoted number
# comes from. Which figures and tables exist, and what each reads, is bnstudy.vocab.OUTPUTS,
# restricted to the experiments of the config (OUTPUTS below). Outputs marked report(...) appear
# in `snakemake --report results/report.html`.


rule stats:
    input:
        metrics=grid.STUDY_FILES["metrics"],
        batchstats=grid.STUDY_FILES["batchstats"],
        reference=grid.STUDY_FILES["reference"],
    output:
        summary=report(
            grid.STUDY_FILES["summary"],
            category="Statistical tests",
            caption="../../paper/report/summary.rst",
        ),
        gaps=report(
            grid.STUDY_FILES["gaps"],
            category="Statistical tests",
            caption="../../paper/report/gaps.rst",
        ),
        shares=report(
            grid.STUDY_FILES["shares"],
            category="Statistical tests",
            caption="../../paper/report/shares.rst",
        ),
        placement=report(
            grid.STUDY_FILES["placement"],
            category="Statistical tests",
            caption="../../paper/report/placement.rst",
        ),
        composition=report(
            grid.STUDY_FILES["composition"],
            category="Statistical tests",
            caption="../../paper/report/composition.rst",
        ),
    log:
        "results/logs/analyze/stats.log",
    benchmark:
        "results/benchmarks/analyze/stats.tsv"
    priority: 2  # first: figures, tables and macros read its tests
    conda:
        "../envs/bnstudy.yaml"
    params:
        analysis=grid.analysis(config),
    shell:
        "bnstudy stats --metrics {input.metrics} --batchstats {input.batchstats}"
        " --reference {input.reference}"
        " --summary {output.summary} --gaps {output.gaps} --shares {output.shares}"
        " --placement {output.placement} --composition {output.composition}"
        " --alpha {params.analysis[alpha]} --gap-fraction {params.analysis[gap_fraction]}"
        " --min-gap {params.analysis[min_gap]} > {log} 2>&1"


rule figure:
    input:
        unpack(lambda wc: grid.output_inputs(config, OUTPUTS[wc.name])),
    output:
        report(
            "results/figures/{name}.pdf",
            category="Figures",
            caption="../../paper/report/figure.rst",
        ),
    log:
        "results/logs/analyze/figure_{name}.log",
    benchmark:
        "results/benchmarks/analyze/figure_{name}.tsv"
    wildcard_constraints:
        name="|".join(n for n in OUTPUTS if n in vocab.FIGURES),
    priority: 1  # before the tables, which take about half as long
    conda:
        "../envs/bnstudy.yaml"
    params:
        inputs=lambda wc, input: grid.cli_options(input),
        caption=lambda wc: OUTPUTS[wc.name].caption,
    shell:
        "bnstudy figure {wildcards.name} {params.inputs} --out {output} > {log} 2>&1"


rule table:
    input:
        unpack(lambda wc: grid.output_inputs(config, OUTPUTS[wc.name])),
    output:
        "results/tables/{name}.tex",
    log:
        "results/logs/analyze/table_{name}.log",
    benchmark:
        "results/benchmarks/analyze/table_{name}.tsv"
    wildcard_constraints:
        name="|".join(n for n in OUTPUTS if n in vocab.TABLES),
    conda:
        "../envs/bnstudy.yaml"
    params:
        inputs=lambda wc, input: grid.cli_options(input),
    shell:
        "bnstudy table {wildcards.name} {params.inputs} --out {output} > {log} 2>&1"


rule macros:
    input:
        **grid.STUDY_FILES,
        benchmarks=grid.paths(CELLS, grid.TRAIN_BENCHMARK),
    output:
        macros=grid.MACROS,
        sections=grid.SECTIONS,
        config=grid.CONFIG_COPY,
    log:
        "results/logs/analyze/macros.log",
    benchmark:
        "results/benchmarks/analyze/macros.tsv"
    conda:
        "../envs/bnstudy.yaml"
    params:
        inputs=lambda wc, input: grid.cli_options(input),
        analysis=grid.analysis(config),
        experiments=" ".join(config["experiments"]),
        config=shlex.quote(json.dumps(config)),  # a changed config reruns this rule
    shell:
        "bnstudy macros {params.inputs} --alpha {params.analysis[alpha]}"
        " --gap-fraction {params.analysis[gap_fraction]}"
        " --min-gap {params.analysis[min_gap]} --experiments {params.experiments}"
        " --config-json {params.config} --out {output.macros} --sections-out {output.sections}"
        " --config-out {output.config} > {log} 2>&1"
