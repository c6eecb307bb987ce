#!/usr/bin/env bash
# The GPU path in one call, for a machine lent for minutes (docs/speed.md, "On a GPU").
#
# Here, beforehand (any machine with the package; writes .gpu/commands.txt, the `bnstudy train`
# commands of the slice's 10 full.yaml jobs, and their data under results/data; .gpu/pylib, the
# mnist1d package, which the engine tests' data need and a device's Python may lack;
# .gpu/traffic.json, the training steps' bytes (benchmarks/step_traffic.py); with
# GPU_BASE=COMMIT, .gpu/base/src, that commit's code for gpu_job.sh's `base` variant):
#   [GPU_BASE=COMMIT] bash benchmarks/gpu_session.sh prepare
# There, in one call, carrying .gpu and results/data (OUT: the folder whose files come back):
#   bash benchmarks/gpu_session.sh run OUT [SLICE_SECONDS] [DEADLINE_SECONDS]
#
# The run starts NVIDIA MPS where it can (docs/running.md, "GPUs and threads"), then its steps
# (GPU_SESSION_STEPS, default "check traffic job slice"):
#   check  gpu_check.sh's steps 1 and 2: the products' precision and kernels, the engine tests;
#   traffic step_traffic.py on the MNIST-1D post job (or GPU_JOB): the bytes a training step
#          reads and writes as the GPU's XLA fuses it, against the CPU's count (docs/speed.md);
#   job    gpu_job.sh's variants GPU_JOB_VARIANTS (default "default cmdbuf", plus "base" when
#          .gpu/base/src exists) of the MNIST-1D post job (or GPU_JOB) at 10 epochs, each alone
#          and cold;
#   slice  gpu_check.sh's step 4: the 10 jobs SLICE_JOBS (default 8) at a time for SLICE_SECONDS
#          (default 200), cut short so that the run ends by DEADLINE_SECONDS after its start
#          (default 600); under the cmdbuf variant's XLA_FLAGS when that variant trained at
#          least 10% faster than default (GPU_SLICE_FLAGS: "auto", the default; "none"; or the
#          flags themselves);
#   profile gpu_job.sh's `profile` variant of the same job (where its probes' time goes).
# Each step writes into OUT as it goes (a run cut off still returns what it wrote); the end
# packs the step folders into OUT/gpu.tar.gz, since a device run returns only a few files.
set -u
cd "$(dirname "$0")/.."
# the slice: the 8 jobs of every GPU run since the first (docs/speed.md), then two of the
# offline part's heaviest, which start as the first 8 finish: those 8 hold 10% of its training
# products and none of the width-256 or depth-32 MNIST-1D jobs, which hold 58%
# (benchmarks/gpu_projection.py projects by families and by work)
TARGETS="mnist1d/pre-d2-w128-b128 mnist1d/post-d2-w128-b128 mnist1d/pre-d2-w128-b16
digits/pre-d16-w128-b128 spirals/pre-d2-w128-b128 xor/pre-d2-w128-b64 digits/pre-d2-w128-b128
mnist1d/pre-d8-w128-b128 mnist1d/pre-d4-w256-b128 mnist1d/pre-d32-w128-b128"
# the job of the `job` and `profile` steps (GPU_JOB: the --out of another of the slice's jobs)
PROFILED=${GPU_JOB:-results/runs/mnist1d/post-d2-w128-b128.parquet}

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
    rm -rf .gpu/pylib .gpu/base
    python3 -m pip install -q --no-deps --target .gpu/pylib \
        "mnist1d==$(python3 -c 'import importlib.metadata as m; print(m.version("mnist1d"))')" ||
        exit 1
    if [ -n "${GPU_BASE:-}" ]; then
        mkdir -p .gpu/base && git archive "$GPU_BASE" src | tar x -C .gpu/base || exit 1
    fi
    # the offline part's training traffic for gpu_projection.py --traffic (about 11 minutes on
    # the 2-core VM; kept while the committed src, full.yaml and script are those it was made from)
    made_from=$(git rev-parse HEAD:src HEAD:workflow/config/full.yaml HEAD:benchmarks/step_traffic.py |
        tr '\n' ' ')
    if [ "$(cat .gpu/traffic.from 2>/dev/null)" != "$made_from" ]; then
        python3 benchmarks/step_traffic.py --json .gpu/traffic.json >.gpu/traffic.txt &&
            echo "$made_from" >.gpu/traffic.from || exit 1
    fi
    tail -1 .gpu/traffic.txt
    echo "$(wc -l <.gpu/commands.txt) commands in .gpu/commands.txt; data: $(ls results/data)"
    echo "base: $(ls -d .gpu/base/src 2>/dev/null || echo none)"
    ;;
run)
    OUT=${2:?output folder}
    SLICE=${3:-200}
    DEADLINE=${4:-600}
    STEPS=${GPU_SESSION_STEPS:-check traffic job slice}
    has() { [[ " $STEPS " == *" $1 "* ]]; }
    [ -s .gpu/commands.txt ] || { echo "no .gpu/commands.txt: run 'prepare' first"; exit 2; }
    t0=$(date +%s)
    export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
    # mnist1d where the device's Python lacks it; its plotting and download imports, which the
    # data generation does not use, get empty stand-ins where those are missing too
    if ! python3 -c "import mnist1d" 2>/dev/null && [ -d .gpu/pylib ]; then
        PYTHONPATH=$PYTHONPATH:$PWD/.gpu/pylib
        stubs=$(mktemp -d)
        python3 -c "import matplotlib.pyplot" 2>/dev/null ||
            { mkdir -p "$stubs/matplotlib" && touch "$stubs/matplotlib/__init__.py" "$stubs/matplotlib/pyplot.py"; }
        python3 -c "import requests" 2>/dev/null || touch "$stubs/requests.py"
        PYTHONPATH=$PYTHONPATH:$stubs
        echo "== mnist1d from .gpu/pylib: $(python3 -c 'import mnist1d.data; print("ok")' 2>&1 | tail -1)"
    fi
    mkdir -p "$OUT"
    work=$OUT/session
    mkdir -p "$work"
    mps=no
    if command -v nvidia-cuda-mps-control >/dev/null; then
        pipes=$(mktemp -d)  # sockets: not under OUT
        export CUDA_MPS_PIPE_DIRECTORY=$pipes/pipe CUDA_MPS_LOG_DIRECTORY=$pipes/log
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
    has check && GPU_CHECK_STEPS="1 2" bash benchmarks/gpu_check.sh "$work/check" \
        .gpu/commands.txt 2>&1 | tee "$OUT/check.txt"
    traffic_job=$(echo "$PROFILED" | sed -E 's#results/runs/(.*)\.parquet#\1#')
    has traffic && timeout 120 python3 benchmarks/step_traffic.py --jobs "$traffic_job" 2>&1 |
        tee "$OUT/traffic.txt"
    variants=${GPU_JOB_VARIANTS:-default cmdbuf$([ -d .gpu/base/src ] && echo " base")}
    has job && BASE_SRC=$PWD/.gpu/base/src VARIANT_TIMEOUT=120 bash benchmarks/gpu_job.sh \
        "$work/job" .gpu/commands.txt "$PROFILED" 10 "$variants" 2>&1 | tee "$OUT/job.txt"
    if has slice; then
        flags=${GPU_SLICE_FLAGS:-auto}
        if [ "$flags" = auto ]; then  # cmdbuf's flags if it trained >= 10% faster than default
            flags=$(python3 - "$OUT/job.txt" <<'PY'
import json, re, sys
train, flags = {}, {}
variant = None
for line in open(sys.argv[1]):  # gpu_job.sh's "== VARIANT: rc 0, ... XLA_FLAGS '...'", PHASES
    if m := re.match(r"== (\S+): rc 0, .* XLA_FLAGS '(.*)'", line):
        variant, flags[m[1]] = m[1], m[2]
    elif line.startswith("PHASES") and variant:
        train[variant] = json.loads(line[7:])["train"]
        variant = None
fast = "cmdbuf" in train and "default" in train and train["cmdbuf"] <= 0.9 * train["default"]
print(flags["cmdbuf"] if fast else "none")
PY
            )
        fi
        [ "$flags" = none ] && flags=
        left=$((DEADLINE - ($(date +%s) - t0) - 25))  # 25 s for the slice's start and packing
        [ "$left" -lt "$SLICE" ] && SLICE=$left
        echo "== slice: $SLICE s, XLA_FLAGS '$flags'" | tee "$OUT/slice.txt"
        [ "$SLICE" -gt 30 ] && GPU_CHECK_STEPS=4 SLICE_JOBS=${SLICE_JOBS:-8} SLICE_XLA_FLAGS=$flags \
            bash benchmarks/gpu_check.sh "$work/slice" .gpu/commands.txt "$SLICE" 2>&1 |
            tee -a "$OUT/slice.txt"
    fi
    has profile && VARIANT_TIMEOUT=150 bash benchmarks/gpu_job.sh "$work/profile" \
        .gpu/commands.txt "$PROFILED" 10 profile 2>&1 | tee "$OUT/profile.txt"
    [ $mps = yes ] && echo quit | nvidia-cuda-mps-control
    tar czf "$OUT/gpu.tar.gz" -C "$work" . && rm -rf "$work" && echo "== packed into $OUT/gpu.tar.gz"
    ;;
*)
    echo "usage: [GPU_BASE=COMMIT] bash benchmarks/gpu_session.sh prepare | run OUT [SLICE_SECONDS] [DEADLINE_SECONDS]"
    exit 2
    ;;
esac
