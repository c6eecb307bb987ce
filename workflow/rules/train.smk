# Stage 2: one training job per (dataset, placement, depth, width, batch size): its families
# (one per normalization, and groupnorm's groups) one after another in one process, each
# family's activations x seeds x learning rates in one compiled program. The file patterns are
# those of bnstudy.grid. 2-D datasets also write the decision-boundary grids (rule train_2d).


rule train:
    input:
        data=grid.DATA,
    output:
        run=grid.RUN,
        history=grid.HISTORY,
        batchstats=grid.BATCHSTATS,
        layers=grid.LAYERS,
    log:
        grid.TRAIN_LOG,
    benchmark:
        grid.TRAIN_BENCHMARK
    wildcard_constraints:
        dataset="|".join(d for d in vocab.DATASETS if d not in vocab.TWO_D),
    priority: lambda wc: grid.job_cost(config, wc)  # the costliest first
    conda:
        TRAIN_ENV
    threads: lambda wc: grid.resources(config, wc.dataset)["threads"]
    resources:
        mem_mb=lambda wc: grid.resources(config, wc.dataset)["mem_mb"],
        runtime=lambda wc: grid.job_runtime(config, wc),
        gpu=1 if USE_GPU else 0,
    params:
        opts=lambda wc: grid.train_options(config, wc),
        boundary=lambda wc, output: grid.boundary_option(output),
    shell:
        "bnstudy train --data {input.data} {params.opts[families]}"
        " --placement {wildcards.placement} --depth {wildcards.depth}"
        " --width {wildcards.width} --batch-size {wildcards.batch_size}"
        " --seeds {params.opts[seeds]} --lrs {params.opts[lrs]} --epochs {params.opts[epochs]}"
        " --optimizer {params.opts[optimizer]}"
        " --momentum {params.opts[momentum]} --schedule {params.opts[schedule]}"
        " --test-batch-sizes {params.opts[test_batch_sizes]}"
        " --extend-edges {params.opts[extend_edges]}"
        " --out {output.run} --history {output.history} --batchstats {output.batchstats}"
        " --layers {output.layers} {params.boundary} --threads {threads} > {log} 2>&1"


use rule train as train_2d with:
    output:
        run=grid.RUN,
        history=grid.HISTORY,
        batchstats=grid.BATCHSTATS,
        layers=grid.LAYERS,
        boundary=grid.BOUNDARY,
    wildcard_constraints:
        dataset="|".join(vocab.TWO_D),
