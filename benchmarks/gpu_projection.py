"""The projected wall time of full.yaml's offline part on one GPU, from a timed slice of it.

`gpu_check.sh`'s step 4 runs the slice's training jobs for a given time and keeps their logs
(its `slice.tar.gz`, and `logs-at-SECONDS.tar.gz` at SLICE_SNAPSHOT seconds). This script reads,
per job, the families it started and how far each got (a family's log block begins with its
`ModelSpec(...)` line; its first round's `epoch E/N:` lines say how many of its N epochs are
done, and it is trained at `epoch N/N:`), and whether the job finished (its `PHASES` line). It
projects the offline part (the datasets that need no download, counted from full.yaml's grid)
by the slice's rate of three measures:

- **by families**: the offline part's families x the slice's seconds / the families trained.
  The measure of every GPU run in docs/speed.md. It charges every family the slice's mean time,
  so it is low when the slice's families are lighter than the offline part's, which the first
  8 jobs' are: they hold none of the MNIST-1D jobs of width 256 or depth 32, which hold most
  of the work.
- **by work**: the offline part's training products (FLOPs: 3 x a forward pass's products per
  example, every model of a family's first round, every step) x the slice's seconds / the work
  the slice did (its trained families' and the epochs done of the ones under way). It charges
  every FLOP the slice's mean rate, so it is high where larger models run at a higher rate.
- **by traffic** (with `--traffic FILE`, `step_traffic.py --json FILE`'s): the same with the
  bytes the training steps read and write (XLA's cost analysis on the machine that made the
  file). The training is bound by memory (docs/speed.md), so this is the measure whose rate
  should vary least between jobs.

Each holds as far as the slice's mix of fixed costs (start-up, compilation, probes) holds for
the rest. All leave out the probes of the jobs that have not finished, and count the
edge-extension rounds' training as a family's fixed cost, like its probes. `--ceiling`
(TFLOP/s: gpu_check.sh's float32 product) adds the floor: the training products at that rate.

    python benchmarks/gpu_projection.py LOGS SECONDS [--config workflow/config/full.yaml]
        [--ceiling TFLOPS] [--traffic FILE]

LOGS: a folder that holds results/logs/train, or a .tar.gz of results/logs.
"""

from __future__ import annotations

import argparse
import json
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


def offline_jobs(config: dict):
    """The wildcards of each training job of the config on a dataset that needs no download."""
    for key in grid.jobs(config):
        wildcards = SimpleNamespace(**dict(zip(grid.JOB_KEYS, key)))
        if wildcards.dataset not in data.DOWNLOADED:
            yield wildcards


def schedule(config: dict, wildcards) -> tuple[int, int]:
    """(training steps, models per activation: seeds x rates) of a job's families."""
    dataset = wildcards.dataset
    settings = grid.training(config, dataset)
    n_train = data.train_size(dataset, **config.get("data", {}).get(dataset, {}))
    steps = settings["epochs"] * (n_train // int(wildcards.batch_size))
    return steps, len(settings["seeds"]) * len(settings["lrs"])


def family_flops(config: dict, wildcards) -> list[float]:
    """The training products (FLOPs) of each family of a job, in the order the job trains
    them (grid.job_families): models x steps x batch x 3 x a forward pass's products per example
    (forward, and the two products of the backward pass)."""
    dataset = wildcards.dataset
    batch = int(wildcards.batch_size)
    sizes = (
        [FEATURES[dataset]]
        + [int(wildcards.width)] * int(wildcards.depth)
        + [data.NUM_CLASSES[dataset]]
    )
    per_example = sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    steps, models_per_activation = schedule(config, wildcards)
    return [
        len(f["activations"]) * models_per_activation * steps * batch * 3 * per_example
        for f in grid.job_families(config, wildcards)
    ]


def job_name(wildcards) -> str:
    """DATASET/JOB, the name of a training job's log and files (grid.JOB)."""
    return f"{wildcards.dataset}/{grid.JOB.format(**vars(wildcards))}"


def offline_flops(config: dict) -> dict[str, list[float]]:
    """Each training job of the config on a dataset that needs no download (`job_name`) -> its
    families' training products (`family_flops`)."""
    return {job_name(w): family_flops(config, w) for w in offline_jobs(config)}


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
    parser.add_argument(
        "--traffic", type=Path, help="step_traffic.py --json's file: also project by the bytes"
    )
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    # measure -> (each offline job's families' weights, unit, its size)
    measures = {"work": (offline_flops(config), "TFLOP", 1e12)}
    if args.traffic:
        traffic = json.loads(args.traffic.read_text())
        work = measures["work"][0]
        if {j: len(v) for j, v in traffic.items()} != {j: len(v) for j, v in work.items()}:
            raise SystemExit(
                f"{args.traffic} does not hold {args.config}'s offline jobs and families: "
                f"make it again (python benchmarks/step_traffic.py --json {args.traffic})"
            )
        measures["traffic"] = (traffic, "TB", 1e12)
    families = sum(len(v) for v in measures["work"][0].values())
    trained = 0
    done = dict.fromkeys(measures, 0.0)  # the slice's, families under way by their epochs
    done_trained = dict.fromkeys(measures, 0.0)  # the slice's trained families'
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
            wildcards = SimpleNamespace(
                dataset=log.parent.name, **JOB_NAME.fullmatch(log.stem).groupdict()
            )
            name = job_name(wildcards)
            own = [len(f["activations"]) for f in grid.job_families(config, wildcards)]
            if name not in measures["work"][0] or [a for a, _, _ in started] != own[: len(started)]:
                raise SystemExit(
                    f"{log}: not a job of {args.config}'s offline part, or not its families"
                )
            fractions = [e / n if n else 0.0 for _, e, n in started]
            trained += fractions.count(1.0)
            row = f"{name:32s} {len(started):3d} started {fractions.count(1.0):3d} trained of {len(own):2d}"
            for m, (weights, unit, size) in measures.items():
                job_done = sum(w * f for w, f in zip(weights[name], fractions))
                done[m] += job_done
                done_trained[m] += sum(w for w, f in zip(weights[name], fractions) if f == 1.0)
                row += f", {job_done / size:6.1f} of {sum(weights[name]) / size:6.1f} {unit}"
            print(row + ("  finished" if finished else ""))
    print(f"{trained} families trained in {args.seconds:g} s by {len(logs)} jobs")
    if trained:
        print(
            f"projection by families: {families} x {args.seconds:g} s / {trained} "
            f"= {families * args.seconds / trained / 60:.0f} minutes for the offline part"
        )
    for m, (weights, unit, size) in measures.items():
        total = sum(map(sum, weights.values()))
        print(
            f"{m}: the offline part's {total / size:,.0f} {unit}, {total / families / size:.1f} a "
            f"family (the slice's trained families: "
            f"{done_trained[m] / trained / size if trained else float('nan'):.1f}); the slice "
            f"did {done[m] / size:.1f} ({done[m] / args.seconds / size:.2f} {unit} a second)"
        )
        if done[m]:
            print(
                f"projection by {m}: {total / size:,.0f} x {args.seconds:g} s / "
                f"{done[m] / size:.1f} = {total * args.seconds / done[m] / 60:.0f} minutes"
            )
    if args.ceiling:
        flops = sum(map(sum, measures["work"][0].values()))
        print(
            f"floor: {flops / 1e12:,.0f} TFLOP at {args.ceiling:g} TFLOP/s = "
            f"{flops / args.ceiling / 1e12 / 60:.1f} minutes of products alone"
        )


if __name__ == "__main__":
    main()
