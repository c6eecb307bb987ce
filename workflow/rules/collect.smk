# Stage 3: every run file -> one tidy table (one row per experiment x cell x seed x lr, with the
# selected learning rate marked) and the per-epoch curves.


rule collect:
    input:
        runs=[cell.path(grid.RUN) for cell in CELLS],
        histories=[cell.path(grid.HISTORY) for cell in CELLS],
    output:
        metrics="results/metrics.parquet",
        csv="results/metrics.csv",
        history="results/history.parquet",
    params:
        # which experiments use which cells: collect derives the run paths from it
        experiments=shlex.quote(json.dumps(config["experiments"], sort_keys=True)),
    log:
        "results/logs/collect.log",
    conda:
        "../envs/bnstudy.yaml"
    shell:
        "bnstudy collect --experiments {params.experiments} --metrics {output.metrics}"
        " --csv {output.csv} --history {output.history} > {log} 2>&1"
