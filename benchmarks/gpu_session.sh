#!/usr/bin/env bash
# The GPU path in one call, for a machine lent for minutes (docs/speed.md, "On a GPU").
#
# Here, beforehand (any machine with the package; writes .gpu/commands.txt, the `bnstudy train`
# commands of the slice's 8 full.yaml jobs, and their data under results/data):
#   bash benchmarks/gpu_session.sh prepare
# There, in one call, carrying .gpu and results/data (OUT: the folder whose files come back):
#   bash benchmarks/gpu_session.sh run OUT [SLICE_SECONDS]
#
# The run starts NVIDIA MPS where it can (docs/running.md, "GPUs and threads"), runs
# gpu_check.sh's steps 1, 2 and 4 (the products' precision and kernels, the engine tests, the
# slice: the 8 jobs 8 at a time for SLICE_SECONDS, default 200), then gpu_job.sh's `profile`
# variant of the MNIST-1D post job at 10 epochs (where its probes' time goes), stops MPS and packs
# everything into OUT/gpu.tar.gz, since a device run returns only a few files. About 8 minutes
# on an H100; GPU_SESSION_STEPS="check slice profile" (the default) picks parts.
set -u
cd "$(dirname "$0")/.."
# the slice: the same 8 jobs as every GPU run since the first (docs/speed.md)
TARGETS="mnist1d/pre-d2-w128-b128 mnist1d/post-d2-w128-b128 mnist1d/pre-d2-w128-b16
digits/pre-d16-w128-b128 spirals/pre-d2-w128-b128 xor/pre-d2-w128-b64 digits/pre-d2-w128-b128
mnist1d/pre-d8-w128-b128"
PROFILED=results/runs/mnist1d/post-d2-w128-b128.parquet

case ${1:-} in
prepare)
    mkdir -p .gpu results/logs/data
    # shellcheck disable=SC2046
    snakemake -n -p --cores 16 $(printf 'results/runs/%s.parquet ' $TARGETS) \
        --configfile workflow/config/full.yaml >.gpu/dry.txt || exit 1
    for t in $TARGETS; do  # in the slice's order
        grep -o "bnstudy train .* --out results/runs/$t.parquet .*" .gpu/dry.txt
    done >.gpu/commands.txt
    grep -o 'bnstudy prepare-data .*' .gpu/dry.txt | sed 's/^/python3 -m /' | bash || exit 1
    echo "$(wc -l <.gpu/commands.txt) commands in .gpu/commands.txt; data: $(ls results/data)"
    ;;
run)
    OUT=${2:?output folder}
    SLICE=${3:-200}
    STEPS=${GPU_SESSION_STEPS:-check slice profile}
    has() { [[ " $STEPS " == *" $1 "* ]]; }
    [ -s .gpu/commands.txt ] || { echo "no .gpu/commands.txt: run 'prepare' first"; exit 2; }
    export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
    work=$(mktemp -d)
    mps=no
    if command -v nvidia-cuda-mps-control >/dev/null; then
        export CUDA_MPS_PIPE_DIRECTORY=$work/mps-pipe CUDA_MPS_LOG_DIRECTORY=$work/mps-log
        mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
        nvidia-cuda-mps-control -d && sleep 1 &&
            timeout 60 python3 -c "import jax.numpy as j; print('MPS:', float(j.ones(8).sum()))" &&
            mps=yes
        [ $mps = yes ] || {
            echo quit | nvidia-cuda-mps-control
            unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        }
    fi
    echo "== MPS: $mps"
    checks=""
    has check && checks="1 2"
    has slice && checks="$checks 4"
    [ -n "$checks" ] && GPU_CHECK_STEPS="$checks" SLICE_JOBS=8 \
        bash benchmarks/gpu_check.sh "$work/check" .gpu/commands.txt "$SLICE" 2>&1 |
        tee "$work/check.txt"
    has profile && VARIANT_TIMEOUT=150 bash benchmarks/gpu_job.sh "$work/job" .gpu/commands.txt \
        "$PROFILED" 10 profile 2>&1 | tee "$work/job.txt"
    [ $mps = yes ] && echo quit | nvidia-cuda-mps-control
    mkdir -p "$OUT"
    tar czf "$OUT/gpu.tar.gz" -C "$work" . && echo "== packed into $OUT/gpu.tar.gz"
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh prepare | run OUT [SLICE_SECONDS]"
    exit 2
    ;;
esac
