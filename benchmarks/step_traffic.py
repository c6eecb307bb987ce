"""The memory traffic of full.yaml's offline training, from XLA's cost analysis of its steps.

For every family of the offline part (the datasets that need no download), this compiles the
trainer's step for all the family's models (`train._train_step`, vmapped, as the training
program runs it inside its scans) and reads XLA's cost analysis of the compiled program: the
bytes its operations read and write, and their FLOPs. Times the family's steps, summed over
the offline part, and against a GPU's memory bandwidth and float32 product rate, that gives
how long the training's steps take at those rates: a roofline of the training alone (no probes,
compilation, start-up or validation passes).

What it measures: XLA's fusion of the step on the machine it runs on (the CPU here), each
fusion's inputs and outputs counted once per step. A GPU's XLA fuses differently (more outputs
per kernel), and a GPU's cache can hold some of a step's arrays, so on a GPU it is an estimate,
not a bound. The fifth GPU run's family (docs/speed.md) ran its step in 0.84 ms on an H100,
against the 0.67 ms of this count at 3.35 TB/s.

    python benchmarks/step_traffic.py [--config workflow/config/full.yaml] [--bandwidth 3.35]
        [--ceiling 50.2] [--top 12] [--jobs DATASET/JOB ...] [--json FILE]

Beside XLA's count it prints a floor (`fused_floor`): the bytes the same steps would move if
each layer's forward pass, and its backward pass, were one kernel of our own (and Adam's
update one more), each keeping what it computes on the chip and writing only what the next one
reads. Against the bandwidth, that is what hand-fused kernels (Pallas, for example) could at
best bring the training's traffic down to.

`--json FILE` writes each job's families' bytes (the step's times its steps), which
`gpu_projection.py --traffic FILE` projects a slice by.

(about 11 minutes on the 2-core VM: some 260 programs to compile)
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from functools import partial
from pathlib import Path

import gpu_projection  # this folder's: the offline part's families and their products
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from bnstudy import data, grid, models, train


def fused_floor(spec: models.ModelSpec, state, m: int, batch: int) -> float:
    """The bytes one training step of `m` models would move at least if each layer's forward
    pass, and its backward pass, were one kernel that keeps its intermediates on the chip: the
    parameters and Adam's two moments read and written once, the gradients written and read
    once, the running statistics read and written once, each hidden layer's output saved and
    read back once, its cotangent written and read once, the batch read once (`state`: the
    abstract training state of the `m` models, float32)."""
    params, stats = (sum(a.size for a in jax.tree.leaves(t)) for t in (state.params, state.stats))
    activations = m * batch * spec.width * spec.depth
    return 4 * (8 * params + 2 * stats + 4 * activations + m * batch * (spec.in_features + 1))


def step_cost(spec: models.ModelSpec, m: int, batch: int) -> tuple[float, float, float]:
    """(FLOPs, bytes accessed, `fused_floor`'s bytes) of one training step of `m` models of
    `spec` at `batch`."""
    cfg = train.TrainConfig(seeds=(0,), lrs=(1e-3,), epochs=1, batch_size=batch)
    tx = train.make_optimizer(cfg, 1)
    graphdef, state = train._abstract_state(spec, m, tx, None)
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)

    def step(state, lrs, xb, yb):  # a step after the first: no gradient norms (lax.cond's)
        one = partial(train._train_step, graphdef, tx, False, jnp.int32(0))
        return jax.vmap(one)(state, lrs, xb, yb)

    shape = jax.ShapeDtypeStruct
    compiled = (
        jax.jit(step, compiler_options=train.CUBLAS)  # as the training program (GPU only)
        .lower(
            state,
            shape((m,), np.float32),
            shape((m, batch, spec.in_features), np.float32),
            shape((m, batch), np.int32),
        )
        .compile()
    )
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"], cost["bytes accessed"], fused_floor(spec, state, m, batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("workflow/config/full.yaml"))
    parser.add_argument("--bandwidth", type=float, default=3.35, help="TB/s (H100 SXM: 3.35)")
    parser.add_argument(
        "--ceiling", type=float, default=50.2, help="TFLOP/s of a large float32 product"
    )
    parser.add_argument("--top", type=int, default=12, help="jobs listed, the most traffic first")
    parser.add_argument(
        "--json", type=Path, help="write each job's families' bytes here (gpu_projection.py's)"
    )
    parser.add_argument(
        "--jobs",
        nargs="+",
        metavar="DATASET/JOB",
        help="only these jobs (e.g. mnist1d/post-d2-w128-b128: on a GPU, its XLA's count)",
    )
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    start = time.perf_counter()
    costs: dict[tuple, tuple[float, float, float]] = {}  # step_cost's, per step program
    jobs = collections.defaultdict(lambda: np.zeros(4))  # job -> traffic, products, families, floor
    per_family: dict[str, list[float]] = {}  # job -> each family's traffic (--json)
    for w in gpu_projection.offline_jobs(config):
        name = gpu_projection.job_name(w)
        if args.jobs and name not in args.jobs:
            continue
        steps, per_activation = gpu_projection.schedule(config, w)
        families = grid.job_families(config, w)
        for family, products in zip(families, gpu_projection.family_flops(config, w)):
            spec = models.family_spec(
                family,
                gpu_projection.FEATURES[w.dataset],
                data.NUM_CLASSES[w.dataset],
                w.placement,
                w.depth,
                w.width,
            )
            m = len(family["activations"]) * per_activation
            if (spec, m, w.batch_size) not in costs:
                costs[spec, m, w.batch_size] = step_cost(spec, m, w.batch_size)
            _, step_bytes, floor = costs[spec, m, w.batch_size]
            traffic = steps * step_bytes
            jobs[name] += (traffic, products, 1, steps * floor)
            per_family.setdefault(name, []).append(traffic)
        print(
            f"{name}: {len(families)} families, "
            f"{len(costs)} programs so far, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(per_family, indent=1))
    traffic, products, families, floor = np.sum(list(jobs.values()), axis=0)
    bandwidth, ceiling = args.bandwidth * 1e12, args.ceiling * 1e12
    print(
        f"\n{'job':28s} {'traffic':>9s} {'share':>6s} {'products':>12s} {'FLOP/B':>7s} {'min':>6s}"
    )
    for job, (t, p, _, _) in sorted(jobs.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(
            f"{job:28s} {t / 1e12:6.0f} TB {100 * t / traffic:5.1f}% {p / 1e12:6.0f} TFLOP "
            f"{p / t:7.1f} {t / bandwidth / 60:6.2f}"
        )
    print(
        f"{'these jobs' if args.jobs else 'offline part'}: {len(jobs)} jobs, {families:.0f} families, {len(costs)} step programs; "
        f"the steps read and write {traffic / 1e15:.2f} PB and compute {products / 1e15:.2f} "
        f"PFLOP of products ({products / traffic:.1f} FLOP a byte)"
    )
    print(
        f"at {args.bandwidth:g} TB/s: {traffic / bandwidth / 60:.1f} minutes of traffic; "
        f"at {args.ceiling:g} TFLOP/s: {products / ceiling / 60:.1f} minutes of products"
    )
    print(
        f"a step fused into a kernel for each layer's forward and one for its backward pass "
        f"(`fused_floor`) would move at least "
        f"{floor / 1e15:.2f} PB, {traffic / floor:.1f}x less: {floor / bandwidth / 60:.1f} minutes "
        f"at {args.bandwidth:g} TB/s"
    )


if __name__ == "__main__":
    main()
