# Stage 2: one training job per cell (dataset, activation, norm, placement, depth, width): all
# seeds x learning rates of the cell in one compiled program. 2-D datasets also write the
# decision-boundary grids (rule train_2d).


rule train:
    input:
        data="results/data/{dataset}.npz",
    output:
        run="results/runs/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.parquet",
        history="results/runs/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.history.parquet",
    wildcard_constraints:
        dataset="|".join(d for d in grid.DATASETS if d not in grid.TWO_D),
    params:
        opts=lambda wc: grid.train_options(config, wc),
        boundary=lambda wc, output: grid.boundary_option(output),
    log:
        "results/logs/train/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.tsv"
    threads: lambda wc: grid.resources(config, wc.dataset)["threads"]
    resources:
        mem_mb=lambda wc: grid.resources(config, wc.dataset)["mem_mb"],
        runtime=lambda wc: grid.resources(config, wc.dataset)["runtime"],
        gpu=1 if USE_GPU else 0,
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy train --data {input.data} --activation {wildcards.activation}"
        " --norm {wildcards.norm} --placement {wildcards.placement}"
        " --depth {wildcards.depth} --width {wildcards.width} {params.opts[groups]}"
        " --seeds {params.opts[seeds]} --lrs {params.opts[lrs]} --epochs {params.opts[epochs]}"
        " --batch-size {params.opts[batch_size]} --optimizer {params.opts[optimizer]}"
        " --momentum {params.opts[momentum]} --schedule {params.opts[schedule]}"
        " --test-batch-sizes {params.opts[test_batch_sizes]}"
        " --out {output.run} --history {output.history} {params.boundary} > {log} 2>&1"


use rule train as train_2d with:
    output:
        run="results/runs/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.parquet",
        history="results/runs/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.history.parquet",
        boundary="results/runs/{dataset}/{activation}-{norm}-{placement}-d{depth}-w{width}.boundary.npz",
    wildcard_constraints:
        dataset="|".join(grid.TWO_D),
