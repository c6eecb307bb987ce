#!/usr/bin/env bash
# Where one training job's time goes on a GPU (docs/speed.md, "Second run"): the job alone, cold,
# under each of VARIANTS, with JAX's per-program compile log, each in a fresh compilation cache.
#
#   bash benchmarks/gpu_job.sh OUT COMMANDS OUT_PATH [EPOCHS] [VARIANTS]
#
# COMMANDS: `bnstudy train` commands as gpu_check.sh takes them; OUT_PATH picks one by its
# --out (e.g. results/runs/mnist1d/post-d2-w128-b128.parquet). EPOCHS overrides the config's
# (default 10: the fixed costs do not depend on it). VARIANTS (default "default noautotune warm"):
#   default      the job as it is (its products by cuBLAS: train.CUBLAS; the variant notriton of
#                commit 2a53987 measured that change, docs/speed.md "Third run")
#   noautotune   XLA_FLAGS=--xla_gpu_autotune_level=0: no autotuning in any program
#   warm         the job again in default's cache: what a cache hit leaves
#   profile      the job as default, in a fresh cache, under cProfile: where the probes' time
#                goes (the functions under probes.measure; OUT/profile.prof keeps it all)
#   cmdbuf       XLA_FLAGS=--xla_gpu_enable_command_buffer=$CMDBUF: XLA's command buffers (CUDA
#                graphs) also around while loops and conditionals, so a training block's steps
#                run as one graph instead of a launch per kernel
#   base         the job as default with the code of BASE_SRC (a src folder, e.g. the commit
#                before a change: `git archive`), in a fresh cache
# Prints each variant's PHASES line and its compilations by program; OUT gets the logs and
# run tables. Run from the repository root with the data under results/data and bnstudy
# importable (PYTHONPATH=src). VARIANT_TIMEOUT (seconds, default 900) stops a variant that runs
# longer.
set -u
OUT=${1:?output folder}
COMMANDS=${2:?file of bnstudy train commands}
TARGET=${3:?the --out of the job to run}
EPOCHS=${4:-10}
VARIANTS=${5:-default noautotune warm}
export PYTHONUNBUFFERED=1
# the command buffer types of the cmdbuf variant: XLA's defaults plus CONDITIONAL and WHILE
CMDBUF=${CMDBUF:-FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE}
# the study's job environment (grid.job_environment); each variant then names its own cache
eval "$(python3 -c '
import shlex
from bnstudy import grid
for k, v in grid.job_environment({"resources": {"jax_cache": ""}}).items():
    print(f"export {k}={shlex.quote(v)}")
')"
cmd=$(grep -F -- "--out $TARGET " "$COMMANDS") || { echo "no command with --out $TARGET"; exit 2; }
cmd=${cmd% > results/logs*}  # the log goes to OUT instead
mkdir -p "$OUT" "$(dirname "$TARGET")"
caches=$(mktemp -d)
for v in $VARIANTS; do
    case $v in
        default) cache=$caches/default flags= ;;
        noautotune) cache=$caches/noautotune flags=--xla_gpu_autotune_level=0 ;;
        warm) cache=$caches/default flags= ;;
        profile) cache=$caches/profile flags= ;;
        cmdbuf) cache=$caches/cmdbuf flags=--xla_gpu_enable_command_buffer=$CMDBUF ;;
        base) cache=$caches/base flags= ;;
        *) echo "unknown variant $v (valid: default noautotune warm profile cmdbuf base)"; exit 2 ;;
    esac
    src=$PYTHONPATH
    [ "$v" = base ] && src=${BASE_SRC:?BASE_SRC: the src folder of the base variant}${PYTHONPATH:+:$PYTHONPATH}
    run="-m"
    [ "$v" = profile ] && run="-m cProfile -o $OUT/profile.prof -m"
    start=$(date +%s.%N)
    PYTHONPATH=$src JAX_COMPILATION_CACHE_DIR=$cache XLA_FLAGS=$flags JAX_LOG_COMPILES=1 \
        timeout "${VARIANT_TIMEOUT:-900}" bash -c "python3 $run $cmd --epochs $EPOCHS --out $OUT/$v.parquet" >"$OUT/$v.log" 2>&1
    echo "== $v: rc $?, $(python3 -c "import time; print(round(time.time() - $start, 1))") s, XLA_FLAGS '$flags'"
    grep PHASES "$OUT/$v.log"
    python3 - "$OUT/$v.log" <<'PY'
import re, sys
d = {}
for name, t in re.findall(r"Finished XLA compilation of (\S+) in ([0-9.e-]+) sec", open(sys.argv[1]).read()):
    n, s = d.get(name, (0, 0))
    d[name] = (n + 1, s + float(t))
print(f"compilations: {sum(n for n, _ in d.values())}, {sum(s for _, s in d.values()):.1f} s")
for k, (n, s) in sorted(d.items(), key=lambda x: -x[1][1])[:6]:
    print(f"  {k:32s} {n:3d} {s:6.1f} s")
PY
    [ "$v" = profile ] && [ -f "$OUT/profile.prof" ] && python3 - "$OUT/profile.prof" <<'PY'
import pstats, sys
stats = pstats.Stats(sys.argv[1])
stats.sort_stats("cumulative").print_stats(r"bnstudy/(probes|train)\.py", 25)
stats.sort_stats("tottime").print_stats(15)
PY
done
rm -rf "$caches"
