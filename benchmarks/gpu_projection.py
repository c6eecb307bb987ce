"""The projected wall time of full.yaml's offline part on one GPU, from a timed slice of it.

`gpu_check.sh`'s step 4 runs the slice's training jobs for a given time and keeps their logs
(its `slice.tar.gz`, and `logs-at-SECONDS.tar.gz` at SLICE_SNAPSHOT seconds). This script reads,
per job, the families it started and how far each got (a family's log block begins with its
`ModelSpec(...)` line; its first round's `epoch E/N:` lines say how many of its N epochs are
done, and it is trained at `epoch N/N:`), and whether the job finished (its `PHASES` line). It
projects the offline part (the datasets that need no download, counted from full.yaml's grid)
two ways:

- **by families**: the offline part's families x the slice's seconds / the families trained.
  The measure of every GPU run in docs/speed.md. It charges every family the slice's mean time,
  so it is low when the slice's families are lighter than the offline part's, which they are:
  the slice's 8 jobs hold none of the width-256 and depth-16 and -32 MNIST-1D jobs that hold
  most of the arithmetic.
- **by work**: the offline part's training products (FLOPs: 3 x a forward pass's products per
  example, every model of a family's first round, every step) x the slice's seconds / the work
  the slice did (its trained families' and the epochs done of the ones under way). It charges
  every FLOP the slice's mean rate, so it is high where larger models run at a higher rate
  (wider products fill a GPU better).

The offline part's wall time on the slice's GPU lies between the two, as far as the slice's
mix of fixed costs (start-up, compilation, probes) holds for the rest. Both leave out the
probes of the jobs that have not finished and the edge-extension rounds' training (counted as
a family's fixed cost, like its probes). `--ceiling` (TFLOP/s: gpu_check.sh's float32 product)
adds the floor: the offline part's training products at that rate.

    python benchmarks/gpu_projection.py LOGS SECONDS [--config workflow/config/full.yaml]
        [--ceiling TFLOPS]

LOGS: a folder that holds results/logs/train, or a .tar.gz of results/logs.
"""

from __future__ import annotations

import argparse
import re
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml

from bnstudy import data, grid

# The input features of the offline part's datasets (the ModelSpec lines of a slice's logs are
# checked against them): the grid knows the classes (data.NUM_CLASSES), not the inputs.
FEATURES = {"spirals": 2, "xor": 2, "mnist1d": 40, "digits": 64}
JOB_NAME = re.compile(r"(?P<placement>\w+)-d(?P<depth>\d+)-w(?P<width>\d+)-b(?P<batch_size>\d+)")


def family_flops(config: dict, wildcards) -> list[float]:
    """The training products (FLOPs) of each family of a job, in the order the job trains
    them (grid.job_families): models x steps x batch x 3 x a forward pass's products per example
    (forward, and the two products of the backward pass)."""
    dataset = wildcards.dataset
    settings = grid.training(config, dataset)
    n_train = data.train_size(dataset, **config.get("data", {}).get(dataset, {}))
    batch = int(wildcards.batch_size)
    sizes = (
        [FEATURES[dataset]]
        + [int(wildcards.width)] * int(wildcards.depth)
        + [data.NUM_CLASSES[dataset]]
    )
    per_example = sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    steps = settings["epochs"] * (n_train // batch)
    models_per_activation = len(settings["seeds"]) * len(settings["lrs"])
    return [
        len(f["activations"]) * models_per_activation * steps * batch * 3 * per_example
        for f in grid.job_families(config, wildcards)
    ]


def offline_work(config: dict) -> tuple[int, int, float]:
    """(jobs, families, training FLOPs) of the config's jobs on the datasets that need no
    download."""
    jobs = families = flops = 0
    for key in grid.jobs(config):
        wildcards = SimpleNamespace(**dict(zip(grid.JOB_KEYS, key)))
        if wildcards.dataset not in data.DOWNLOADED:
            work = family_flops(config, wildcards)
            jobs, families, flops = jobs + 1, families + len(work), flops + sum(work)
    return jobs, families, flops


def progress(log: Path) -> tuple[list[tuple[int, int, int]], bool]:
    """([(activations, epochs done, epochs) of each family the job started, in order], whether
    the job finished). The epochs are those of a family's first round (its later rounds, the
    edge extensions, come after a `selected an edge` line)."""
    families, finished, first_round = [], False, False
    for line in log.read_text().splitlines():
        if "ModelSpec(" in line:
            activations = int(re.search(r"(\d+) activations x", line).group(1))
            in_features = int(re.search(r"in_features=(\d+)", line).group(1))
            dataset = log.parent.name
            if in_features != FEATURES[dataset]:
                raise SystemExit(f"{log}: in_features={in_features}, FEATURES has {dataset}'s")
            families.append([activations, 0, 0])
            first_round = True
        elif "selected an edge" in line:
            first_round = False
        elif first_round and (m := re.match(r"epoch (\d+)/(\d+):", line)):
            families[-1][1:] = int(m.group(1)), int(m.group(2))
        elif line.startswith("PHASES "):
            finished = True
    return [tuple(f) for f in families], finished


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, help="a folder with results/logs/train, or a .tar.gz")
    parser.add_argument("seconds", type=float, help="the slice's seconds")
    parser.add_argument("--config", type=Path, default=Path("workflow/config/full.yaml"))
    parser.add_argument(
        "--ceiling", type=float, help="TFLOP/s of a large float32 product on the slice's GPU"
    )
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    jobs, families, flops = offline_work(config)
    trained = done = trained_flops = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.logs
        if root.is_file():
            with tarfile.open(root) as tar:
                tar.extractall(tmp, filter="data")
            root = Path(tmp)
        logs = sorted(root.glob("results/logs/train/*/*.log"))
        if not logs:
            raise SystemExit(f"no results/logs/train/*/*.log under {args.logs}")
        for log in logs:
            started, finished = progress(log)
            key = JOB_NAME.fullmatch(log.stem).groupdict()
            wildcards = SimpleNamespace(dataset=log.parent.name, **key)
            work = family_flops(config, wildcards)
            if [a for a, _, _ in started] != [
                len(f["activations"]) for f in grid.job_families(config, wildcards)
            ][: len(started)]:
                raise SystemExit(f"{log}: its families are not those of {args.config}'s grid")
            whole = sum(1 for _, e, n in started if n and e == n)
            job_done = sum(w * e / n for w, (_, e, n) in zip(work, started) if n)
            trained += whole
            trained_flops += sum(w for w, (_, e, n) in zip(work, started) if n and e == n)
            done += job_done
            print(
                f"{log.parent.name + '/' + log.stem:32s} {len(started):3d} started "
                f"{whole:3d} trained of {len(work):2d}, {job_done / 1e12:7.1f} of "
                f"{sum(work) / 1e12:7.1f} TFLOP{'  finished' if finished else ''}"
            )
    print(
        f"{trained:.0f} families and {done / 1e12:.1f} TFLOP of training products in "
        f"{args.seconds:g} s by {len(logs)} jobs ({done / args.seconds / 1e12:.2f} TFLOP/s)"
    )
    print(
        f"offline part: {jobs} jobs, {families} families, {flops / 1e12:,.0f} TFLOP "
        f"({flops / families / 1e12:.1f} a family; the slice's trained families "
        f"{trained_flops / trained / 1e12 if trained else float('nan'):.1f})"
    )
    if trained:
        minutes = families * args.seconds / trained / 60
        print(
            f"projection by families: {families} x {args.seconds:g} s / {trained:.0f} "
            f"= {minutes:.0f} minutes for the offline part"
        )
    if done:
        print(
            f"projection by work: {flops / 1e12:,.0f} TFLOP x {args.seconds:g} s / "
            f"{done / 1e12:.1f} TFLOP = {flops * args.seconds / done / 60:.0f} minutes"
        )
    if args.ceiling:
        print(
            f"floor: {flops / 1e12:,.0f} TFLOP at {args.ceiling:g} TFLOP/s = "
            f"{flops / args.ceiling / 1e12 / 60:.1f} minutes of products alone"
        )


if __name__ == "__main__":
    main()
