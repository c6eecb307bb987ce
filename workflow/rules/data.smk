# Stage 1: one dataset file per dataset the grid uses (generated, bundled or downloaded; each
# training seed draws its own split from it), and the convex linear reference on each seed's split.


rule prepare_data:
    output:
        grid.DATA,
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv"
    priority: 1_000_000  # before any training job: it is short, and the dataset's jobs wait for it
    conda:
        "../envs/bnstudy.yaml"
    params:
        options=lambda wc: grid.prepare_options(config, wc.dataset),
    shell:
        "bnstudy prepare-data {wildcards.dataset} --out {output} {params.options} > {log} 2>&1"


rule reference:
    input:
        data=grid.DATA,
    output:
        grid.REFERENCE,
    log:
        grid.REFERENCE_LOG,
    benchmark:
        "results/benchmarks/reference/{dataset}.tsv"
    priority: lambda wc: grid.reference_cost(config, wc.dataset)  # as train's: seconds
    conda:
        "../envs/bnstudy.yaml"
    params:
        seeds=lambda wc: " ".join(map(str, grid.training(config, wc.dataset)["seeds"])),
    shell:
        "bnstudy reference --data {input.data} --seeds {params.seeds} --out {output} > {log} 2>&1"
