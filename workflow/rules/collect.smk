# Stage 3: the files of every cell -> the study's tables: one row per experiment x cell x seed x
# lr (the selected learning rate marked), and the per-epoch, per-test-batch and per-layer tables.


rule collect:
    input:
        run=grid.paths(CELLS, grid.RUN),
        history=grid.paths(CELLS, grid.HISTORY),
        batchstats=grid.paths(CELLS, grid.BATCHSTATS),
        layers=grid.paths(CELLS, grid.LAYERS),
        reference=[grid.REFERENCE.format(dataset=d) for d in grid.datasets(config)],
    output:
        metrics=grid.STUDY_FILES["metrics"],
        csv=grid.METRICS_CSV,
        history=grid.STUDY_FILES["history"],
        batchstats=grid.STUDY_FILES["batchstats"],
        layers=grid.STUDY_FILES["layers"],
        reference=grid.STUDY_FILES["reference"],
    log:
        "results/logs/collect.log",
    benchmark:
        "results/benchmarks/collect.tsv"
    conda:
        "../envs/bnstudy.yaml"
    params:
        # which experiments use which cells
        experiments=shlex.quote(json.dumps(config["experiments"], sort_keys=True)),
        training=shlex.quote(json.dumps(config["training"], sort_keys=True)),
    shell:
        "bnstudy collect --experiments {params.experiments} --training {params.training}"
        " --run-files {input.run}"
        " --history-files {input.history} --batchstats-files {input.batchstats}"
        " --layers-files {input.layers} --reference-files {input.reference}"
        " --metrics {output.metrics} --csv {output.csv} --history {output.history}"
        " --batchstats {output.batchstats} --layers {output.layers}"
        " --reference {output.reference}"
        " > {log} 2>&1"
