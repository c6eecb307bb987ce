"""Where a whole study's time goes: run it cold in a fresh copy and break its time into phases.

Copies a checkout (its tracked and unignored files) to a temporary folder, runs
`snakemake --cores N --configfile CONFIG` there with an empty compilation cache, and reads back:

- the study's wall time, and every job's wall time from the rules' Snakemake benchmark files;
- the training jobs' phases from the PHASES line `bnstudy train` logs: start-up (interpreter,
  imports), load (data, device), init (models and optimizer, their compilation included),
  compile (the training program), train (the compiled training loop: the useful work),
  probes (evaluation and every probe, their compilation included), write;
- scheduling: the cores' idle time, cores x wall - the summed job wall time, and from
  Snakemake's log when the last training job ended and how long the study ran after it.

It prints the breakdown and the two ratios the speed issue asks about: the fixed cost's share
of the summed job wall time (everything but `train`; also of the training jobs' alone, the
measure of the issue's baseline), and the study's wall time against its pure training time
spread over the cores. `--repo` runs another checkout (say, an older commit
in a `git worktree`), whose training logs may have no PHASES line: then only the job and study
times are reported. Timings are from the machine it runs on; run nothing else beside it.

    python benchmarks/bench_study.py [--config benchmarks/configs/default-v1.yaml] [--cores 2]
        [--repo PATH] [--json OUT] [--log OUT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bnstudy import cli  # the machine's name, as the results' device column gives it

REPO = Path(__file__).resolve().parents[1]
PHASES = ("startup", "load", "init", "compile", "train", "probes", "write")


def copy_checkout(src: Path, dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        s, d = src / name, dest / name
        if not (s.exists() or s.is_symlink()):
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            os.symlink(os.readlink(s), d)
        else:
            shutil.copy2(s, d)
    return dest


def run_study(work: Path, config: Path, cores: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(work / "src"))
    shutil.copy(config, work / "bench-config.yaml")
    cmd = [
        shutil.which("snakemake") or "snakemake",
        "--cores",
        str(cores),
        "--configfile",
        "bench-config.yaml",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the study failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return wall, proc.stderr


def job_times(work: Path) -> pd.DataFrame:
    """One row per benchmark file: the rule's folder (train, data, analyze, ...) and its wall time."""
    rows = []
    for f in sorted((work / "results" / "benchmarks").rglob("*.tsv")):
        rel = f.relative_to(work / "results" / "benchmarks")
        kind = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        rows.append(
            {"file": str(rel), "kind": kind, "s": float(pd.read_csv(f, sep="\t")["s"].iloc[0])}
        )
    return pd.DataFrame(rows)


def job_spans(log: str) -> pd.DataFrame:
    """Each job's rule, start and end (seconds after the first job's start, to the second) from
    Snakemake's log: a job's block starts with a date line and `rule NAME:` (or `localrule`) and
    names its `jobid: N`; a date line and `Finished jobid: N` end it."""
    spans, when, rule = {}, None, None
    for line in log.splitlines():
        if m := re.fullmatch(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line.strip()):
            when = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"\s+jobid: (\d+)", line)) and rule:
            spans[m.group(1)], rule = {"rule": rule, "start": when, "end": None}, None
        elif (m := re.match(r"Finished jobid: (\d+)", line)) and m.group(1) in spans:
            spans[m.group(1)]["end"] = when
    df = pd.DataFrame(spans.values())
    first = df["start"].min()
    return df.assign(
        start=(df["start"] - first).dt.total_seconds(), end=(df["end"] - first).dt.total_seconds()
    )


def train_phases(work: Path) -> pd.DataFrame:
    rows = []
    for log in sorted((work / "results" / "logs" / "train").rglob("*.log")):
        m = re.search(r"^PHASES (\{.*\})$", log.read_text(), re.M)
        if m:
            rows.append({"log": str(log.relative_to(work)), **json.loads(m.group(1))})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "benchmarks/configs/default-v1.yaml"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--repo", default=str(REPO), help="the checkout to run (default: this one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--log", help="also write Snakemake's log to this file")
    parser.add_argument("--keep", help="also copy the study's results/ to this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        work = copy_checkout(Path(args.repo).resolve(), Path(tmp) / "repo")
        wall, log = run_study(work, Path(args.config).resolve(), args.cores)
        jobs = job_times(work)
        phases = train_phases(work)
        if args.keep:
            shutil.copytree(work / "results", args.keep, ignore=shutil.ignore_patterns("jax-cache"))

    by_kind = jobs.groupby("kind")["s"].agg(["count", "sum"])
    train_jobs = (
        by_kind.loc["train"] if "train" in by_kind.index else pd.Series({"count": 0, "sum": 0})
    )
    job_sum = float(jobs["s"].sum())
    out = {
        "machine": f"{platform.node()}: {cli.cpu_name()}",
        "config": str(args.config),
        "repo": str(args.repo),
        "cores": args.cores,
        "study_wall_s": round(wall, 1),
        "jobs_wall_s": round(job_sum, 1),
        "jobs": {
            k: {"count": int(r["count"]), "wall_s": round(float(r["sum"]), 1)}
            for k, r in by_kind.iterrows()
        },
        "scheduling_idle_core_s": round(args.cores * wall - job_sum, 1),
    }
    print(f"{out['machine']}\nconfig {args.config}, checkout {args.repo}, --cores {args.cores}\n")
    print(f"study wall time            {wall:8.1f} s")
    print(f"summed job wall time       {job_sum:8.1f} s")
    for kind, r in by_kind.iterrows():
        print(f"  {kind:<22}  {r['sum']:8.1f} s  ({int(r['count'])} jobs)")
    print(f"idle cores (scheduling)    {out['scheduling_idle_core_s']:8.1f} core-s")
    spans = job_spans(log)
    trained = spans[spans["rule"].str.startswith("train")]
    if len(trained):
        out["last_training_job_end_s"] = float(trained["end"].max())
        print(
            f"last training job ended  {out['last_training_job_end_s']:8.0f} s after the first job"
            f" started; jobs summed / cores: {job_sum / args.cores:.0f} s"
        )
    if len(phases):
        summed = {p: float(phases[p].sum()) for p in PHASES if p in phases}
        out["train_phases_s"] = {p: round(v, 1) for p, v in summed.items()}
        pure = summed.get("train", float("nan"))
        out["fixed_cost_share"] = round(1 - pure / job_sum, 3)
        out["fixed_cost_share_training_jobs"] = round(1 - pure / float(train_jobs["sum"]), 3)
        out["wall_over_pure_training"] = round(wall / (pure / args.cores), 2)
        out["train_jobs"] = phases.round(3).to_dict(orient="records")  # each job's phases
        print(f"\ntraining jobs ({len(phases)}), phases summed:")
        for p, v in summed.items():
            print(f"  {p:<22}  {v:8.1f} s")
        print(
            f"  (other time in the jobs: {float(train_jobs['sum']) - sum(summed.values()):.1f} s:"
            " the job's process start before Python and Snakemake's own wrapper)"
        )
        print(
            f"\nfixed cost: {100 * out['fixed_cost_share']:.0f}% of the summed job wall time"
            " (everything but the compiled training loop);"
            f" {100 * out['fixed_cost_share_training_jobs']:.0f}% of the training jobs' own"
        )
        print(f"study wall / (pure training / cores): {out['wall_over_pure_training']:.1f}")
    if args.log:
        Path(args.log).write_text(log)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
