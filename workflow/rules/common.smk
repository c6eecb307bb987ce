# Shared by the rule files: the cells of the configured grid and the outputs of its experiments,
# wildcard constraints, the job environment and the cleanup of temp files left by killed jobs.

import json
import os
import shlex

from bnstudy import grid, results, vocab

CELLS = grid.cells(config)  # cell -> experiments that use it
OUTPUTS = {o.name: o for o in grid.outputs(config)}  # the figures and tables of its experiments
USE_GPU = grid.use_gpu(config)
# With --software-deployment-method conda: training jobs that use a GPU get the CUDA environment
# (requirements/cuda.txt), every other job the CPU one (requirements/cpu.txt).
TRAIN_ENV = "../envs/bnstudy-cuda.yaml" if USE_GPU else "../envs/bnstudy.yaml"

# Every job inherits these (JAX compilation cache under results/, no GPU memory preallocation);
# a variable already set in the environment wins.
os.environ.update({**grid.job_environment(config), **os.environ})


wildcard_constraints:
    **grid.WILDCARDS,


localrules:
    all,
    prepare_data,
    collect,
    reference,


onstart:
    results.remove_partial_files("results")
