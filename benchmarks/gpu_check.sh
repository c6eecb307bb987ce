#!/usr/bin/env bash
# The GPU path in one run, for a machine lent for minutes (docs/speed.md, "On a GPU"):
#   1. the precision of a float32 product at JAX's default and at the models' setting (HIGHEST),
#      and which kernels (Triton or cuBLAS) compute a model's product under each program's options;
#   2. the engine tests on the GPU (tests/test_engine.py);
#   3. the engine benchmark on the GPU: engine, per-step loop and PyTorch loop on the same GPU
#      (15 epochs);
#   4. a timed slice of full.yaml's offline part: the given `bnstudy train` commands (as
#      `snakemake -n -p --configfile workflow/config/full.yaml` prints them), 8 at a time as the
#      default profile runs them on one GPU (--resources gpu=8), for at most SLICE seconds, and
#      the offline part's projection from it (benchmarks/gpu_projection.py).
# GPU utilization is sampled all along (nvidia-smi dmon). Everything lands in OUT.
#
#   bash benchmarks/gpu_check.sh OUT COMMANDS [SLICE_SECONDS]
#   GPU_CHECK_STEPS="1 4" bash benchmarks/gpu_check.sh ...    (some of the steps only)
#   SLICE_JOBS=8 SLICE_XLA_FLAGS=... SLICE_SNAPSHOT=200 bash benchmarks/gpu_check.sh ...
#       (the slice's jobs at a time, default 8; XLA_FLAGS for its jobs, default none; the
#       seconds into the slice at which its logs are also kept as OUT/logs-at-SECONDS.tar.gz,
#       default 200, the slice of every run so far, so that a longer slice compares with them)
# With NVIDIA MPS started beforehand (nvidia-cuda-mps-control -d), the slice's jobs use it.
# benchmarks/gpu_job.sh breaks one job of COMMANDS down further (its compilations by program).
# Run from the repository root with the study's data under results/data and bnstudy importable
# (PYTHONPATH=src will do). COMMANDS and the data come from a dry run on any machine:
# `bash benchmarks/gpu_session.sh prepare` writes the slice's (its TARGETS: the 8 jobs of every
# GPU run so far, then two heavier) to .gpu/commands.txt and results/data.
set -u
OUT=${1:?output folder}
COMMANDS=${2:?file of bnstudy train commands, one per line}
SLICE=${3:-240}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT"
stamp() { echo "== $(date +%H:%M:%S) $*"; }

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
nvidia-smi dmon -s u -o T >"$OUT/dmon.txt" 2>&1 &
dmon=$!

STEPS=${GPU_CHECK_STEPS:-1 2 3 4}  # a subset, e.g. GPU_CHECK_STEPS="1 4"
step() { [[ " $STEPS " == *" $1 "* ]]; }

step 1 && stamp "1. versions and precision" && {
python3 - <<'EOF'
import jax, jax.numpy as jnp, numpy as np, flax, optax
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())
a, b = np.random.default_rng(0).standard_normal((2, 1024, 1024)).astype(np.float32)
ref = a.astype(np.float64) @ b.astype(np.float64)
from bnstudy import probes
for p, options in ((None, None), (jax.lax.Precision.HIGHEST, None), (jax.lax.Precision.HIGHEST, probes.ONCE)):
    f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=p), compiler_options=options)
    out = np.asarray(f(a, b), np.float64)
    print(f"float32 product, precision {p}, compiler options {options}: relative error "
          f"{np.linalg.norm(out - ref) / np.linalg.norm(ref):.1e}")
# which kernels compute a batched product like a model's: Triton by default, cuBLAS with
# train.CUBLAS (the training program) and probes.ONCE (the probes)
from bnstudy import train
x = jnp.asarray(a[:960].reshape(15, 64, 1024)[:, :, :64])
f = lambda x: jax.nn.relu(jnp.einsum("mij,mjk->mik", x, x, precision=jax.lax.Precision.HIGHEST))
for name, options in (("default", None), ("train.CUBLAS", train.CUBLAS), ("probes.ONCE", probes.ONCE)):
    text = jax.jit(f, compiler_options=options).lower(x).compile().as_text()
    print(f"batched product, {name}: 'triton' {text.count('triton')}x, 'cublas' {text.count('cublas')}x")
EOF
}

step 2 && stamp "2. engine tests" && {
workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4")  # pytest-xdist where installed
timeout 130 python3 -m pytest tests/test_engine.py -q -p no:cacheprovider $workers 2>&1 | tee "$OUT/tests.txt" | tail -15
}

step 3 && stamp "3. engine benchmark" && {
# 15 epochs, not the benchmark's 60: on an H100 the per-step loop takes about 4 s an epoch and
# the PyTorch loop 1.6 s (both launch-bound); the engine's own time is mostly its compilation.
timeout 150 python3 benchmarks/bench_engine.py --repeats 1 --epochs 15 2>&1 | tee "$OUT/bench_engine.txt"
}

step 4 || { kill "$dmon"; exit 0; }
JOBS=${SLICE_JOBS:-8}
stamp "4. slice of full.yaml ($(wc -l <"$COMMANDS") jobs, $JOBS at a time, at most $SLICE s)"
eval "$(python3 -c '
import yaml, shlex
from bnstudy import grid
config = yaml.safe_load(open("workflow/config/full.yaml"))
config.setdefault("resources", {}).setdefault("jax_cache", "results/jax-cache")
for k, v in grid.job_environment(config).items():
    print(f"export {k}={shlex.quote(v)}")
')"
export XLA_FLAGS=${SLICE_XLA_FLAGS:-}
env | grep -E '^(JAX|XLA)_' | sort
mkdir -p results/logs/train/{mnist1d,digits,spirals,xor} results/runs/{mnist1d,digits,spirals,xor}
start=$(date +%s.%N)
SNAP=${SLICE_SNAPSHOT:-200}
snapshot=
if [ "$SNAP" -lt "$SLICE" ]; then
    { sleep "$SNAP" && tar czf "$OUT/logs-at-$SNAP.tar.gz" results/logs; } &
    snapshot=$!
fi
# shellcheck disable=SC2016
timeout "$SLICE" xargs -d '\n' -P "$JOBS" -I{} bash -c '
    t0=$(date +%s.%N); eval "python3 -m $1"; rc=$?
    echo "$(echo "$1" | grep -o -- "--out [^ ]*" | cut -d" " -f2) $t0 $(date +%s.%N) $rc" >>"$2/jobs.txt"
' _ {} "$OUT" <"$COMMANDS"
rc=$?
elapsed=$(python3 -c "import time; print(round(time.time() - $start, 1))")
echo "slice: rc $rc after $elapsed s"
cat "$OUT/jobs.txt" 2>/dev/null
kill "$dmon" 2>/dev/null
grep -h PHASES results/logs/train/*/*.log
# the projection of the offline part (benchmarks/gpu_projection.py), at the snapshot and the end
[ -n "$snapshot" ] && kill "$snapshot" 2>/dev/null  # a slice that ended before its snapshot
# the floor: the products at a large float32 product's rate on this GPU (TFLOP/s)
ceiling=$(timeout 60 python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import bench_engine
print(round(bench_engine.matmul_flops(8192) / 1e12, 1))' 2>/dev/null | tail -1)
options=${ceiling:+--ceiling $ceiling}
[ -s .gpu/traffic.json ] && options="$options --traffic .gpu/traffic.json"  # gpu_session.sh prepare's
# shellcheck disable=SC2086
[ -s "$OUT/logs-at-$SNAP.tar.gz" ] && python3 benchmarks/gpu_projection.py "$OUT/logs-at-$SNAP.tar.gz" "$SNAP" $options | tail -7
# shellcheck disable=SC2086
python3 benchmarks/gpu_projection.py . "$elapsed" $options | tee "$OUT/projection.txt"
tar czf "$OUT/slice.tar.gz" results/logs results/runs results/benchmarks 2>/dev/null
stamp done
