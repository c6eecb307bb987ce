# Stage 1: one dataset file per dataset the grid uses (generated, bundled or downloaded).


rule prepare_data:
    output:
        grid.DATA,
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv"
    conda:
        "../envs/bnstudy.yaml"
    params:
        options=lambda wc: grid.prepare_options(config, wc.dataset),
    shell:
        "bnstudy prepare-data {wildcards.dataset} --out {output} {params.options} > {log} 2>&1"
