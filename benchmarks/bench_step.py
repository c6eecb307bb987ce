"""Where the engine's compiled training loop spends its time, on the cell of bench_engine.py.

The engine splits its models over the CPU devices (one per core) and trains each device's
share with batched products. This script times the already-compiled run (`train.train`'s
`train` phase, the median of `--repeats` runs after one that compiles) as the number of models
per device grows, and, at the benchmark cell's 8 models per device, with the cell's BatchNorm
or its Adam taken out. From these it prints:

- the time per model and step, and the fit time = a + b x models per device over 2 to 8
  models: what a further model costs (b) and what a step costs whatever the models (a);
- the FLOP/s per device against one core's share of a 2048x2048 product's (the ceiling of
  bench_engine.py, measured before and after the runs, the higher taken; divided by the
  devices);
- the share of a step that BatchNorm and Adam take, against no normalization and plain SGD
  (momentum 0.9) on the same shapes.

    python benchmarks/bench_step.py [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics

import bench_engine  # this folder's: the cell, its FLOPs and the matmul ceiling
import jax
import numpy as np

from bnstudy import cli, train

PER_DEVICE = (1, 2, 4, 8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="compiled runs; medians reported")
    args = parser.parse_args()
    devices = os.cpu_count()
    jax.config.update("jax_num_cpu_devices", devices)  # as bench_engine.py and `bnstudy train`
    ds = bench_engine.make_data()
    n_val = len(ds.y_val)

    def timed(spec, per_device: int, optimizer: str = "adam") -> tuple[float, float]:
        """(seconds of the compiled run, its matmul FLOPs) for `per_device` models per device."""
        models = per_device * devices  # seeds x rates: two rates where the count is even
        lrs = (1e-3, 3e-3) if models % 2 == 0 else (1e-3,)
        cfg = train.TrainConfig(
            seeds=tuple(range(models // len(lrs))),
            lrs=lrs,
            epochs=args.epochs,
            batch_size=bench_engine.BATCH,
            optimizer=optimizer,
        )
        runs = []
        for _ in range(args.repeats + 1):  # the first compiles
            r = train.train(
                spec, cfg, ds.x_train, ds.y_train, ds.x_val, ds.y_val, log=open(os.devnull, "w")
            )
            runs.append(r.seconds["train"])
        return statistics.median(runs[1:]), bench_engine.train_flops(
            spec, cfg, len(ds.y_train), n_val
        )

    steps = args.epochs * (len(ds.y_train) // bench_engine.BATCH)
    # The ceiling before and after the runs, the higher of the two (as bench_engine.py).
    ceilings = [bench_engine.matmul_flops(2048)]
    runs = {k: timed(bench_engine.cell_spec(ds), k) for k in PER_DEVICE}
    no_norm = timed(bench_engine.cell_spec(ds, "none"), PER_DEVICE[-1])[0]
    sgd = timed(bench_engine.cell_spec(ds), PER_DEVICE[-1], "sgd")[0]
    ceilings.append(bench_engine.matmul_flops(2048))
    ceiling = max(ceilings)
    print(
        f"host: {cli.cpu_name()} as {devices} devices; "
        f"jax {jax.__version__}; cell of bench_engine.py at {args.epochs} epochs ({steps} steps); "
        f"2048^2 product {ceiling / 1e9:.1f} GFLOP/s, {ceiling / devices / 1e9:.1f} per device "
        f"(measured {ceilings[0] / 1e9:.1f} before the runs, {ceilings[1] / 1e9:.1f} after)"
    )
    for k, (seconds, flops) in runs.items():
        print(
            f"  {k} model(s) per device: {seconds:.3f} s, {1e3 * seconds / steps / k:.3f} ms per "
            f"model and step, {flops / devices / seconds / 1e9:.1f} GFLOP/s per device "
            f"({100 * flops / seconds / ceiling:.0f}% of the ceiling)"
        )
    ks = [k for k in PER_DEVICE if k >= 2]
    b, a = np.polyfit(ks, [1e3 * runs[k][0] / steps for k in ks], 1)
    print(f"  fit over 2-8 models per device: {a:.3f} ms + {b:.3f} ms x models per step")
    base = runs[PER_DEVICE[-1]][0]
    for label, seconds in (("no normalization", no_norm), ("SGD instead of Adam", sgd)):
        print(
            f"  {PER_DEVICE[-1]} per device, {label}: {seconds:.3f} s "
            f"({100 * (base - seconds) / base:.0f}% less than the cell's {base:.3f} s)"
        )


if __name__ == "__main__":
    main()
