"""The projected wall time of full.yaml's offline part on one GPU, from a timed slice of it.

`gpu_check.sh`'s step 4 runs the slice's training jobs for a given time and keeps their logs
(its `slice.tar.gz`, and `logs-at-SECONDS.tar.gz` at SLICE_SNAPSHOT seconds). This script counts,
per job, the families it started and the families it trained (a family's log block begins with
its `ModelSpec(...)` line and is trained once an `epoch E/E:` line follows), and whether the job
finished (its `PHASES` line). The projection is the offline part's families (those of the
datasets that need no download, counted from full.yaml's grid) times the slice's seconds over
the families trained, the measure of every GPU run in docs/speed.md. It counts trained
families, so it moves by whole families and leaves out the probes of the jobs that have not
finished.

    python benchmarks/gpu_projection.py LOGS SECONDS [--config workflow/config/full.yaml]

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


def offline_families(config: dict) -> tuple[int, int]:
    """(jobs, families) of the config's training jobs on the datasets that need no download."""
    jobs = families = 0
    for key in grid.jobs(config):
        wildcards = SimpleNamespace(**dict(zip(grid.JOB_KEYS, key)))
        if wildcards.dataset not in data.DOWNLOADED:
            jobs += 1
            families += len(grid.job_families(config, wildcards))
    return jobs, families


def count(log: Path) -> tuple[int, int, bool]:
    """(families started, families trained, finished) of one training job's log."""
    started = trained = 0
    in_training = False
    finished = False
    for line in log.read_text().splitlines():
        if "ModelSpec(" in line:
            started += 1
            in_training = True
        elif in_training and re.match(r"epoch (\d+)/\1:", line):
            trained += 1
            in_training = False
        elif line.startswith("PHASES "):
            finished = True
    return started, trained, finished


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, help="a folder with results/logs/train, or a .tar.gz")
    parser.add_argument("seconds", type=float, help="the slice's seconds")
    parser.add_argument("--config", type=Path, default=Path("workflow/config/full.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.logs
        if root.is_file():
            with tarfile.open(root) as tar:
                tar.extractall(tmp, filter="data")
            root = Path(tmp)
        logs = sorted(root.glob("results/logs/train/*/*.log"))
        if not logs:
            raise SystemExit(f"no results/logs/train/*/*.log under {args.logs}")
        total = 0
        for log in logs:
            started, trained, finished = count(log)
            total += trained
            job = f"{log.parent.name}/{log.stem}"
            print(
                f"{job:32s} {started:3d} started {trained:3d} trained{'  finished' if finished else ''}"
            )
    jobs, families = offline_families(yaml.safe_load(args.config.read_text()))
    print(f"{total} families trained in {args.seconds:g} s by {len(logs)} jobs")
    if total:
        minutes = families * args.seconds / total / 60
        print(
            f"projection: {families} families ({jobs} jobs) x {args.seconds:g} s / {total} "
            f"= {minutes:.0f} minutes for the offline part"
        )


if __name__ == "__main__":
    main()
