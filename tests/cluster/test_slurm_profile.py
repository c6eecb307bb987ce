"""workflow/profiles/slurm on a real SLURM cluster (tests/cluster/localslurm.py), not a mock.

The cluster test runs the smoke study the way the README ("Run on a cluster") tells users to run the full one,
with account and partition from the environment and a short first status check, kills one
training job on the cluster once, and checks through `sacct` where every job ran and what it
was given. Where the SLURM binaries are missing it is skipped (tests/cluster/install-slurm.sh).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_repo, snakemake_command, snakemake_env  # tests/conftest.py

sys.path.insert(0, str(Path(__file__).parent))
from localslurm import LocalSlurm, unavailable_reason  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROFILE = "workflow/profiles/slurm"
SMOKE = "workflow/config/smoke.yaml"
TRAIN_RULES = {"train", "train_2d"}
LOCAL_RULES = {"all", "prepare_data", "collect"}  # run on the submit host, never on the cluster
SNAKEMAKE_TIMEOUT = 1200  # seconds; the run takes a few minutes


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster (tests/cluster/localslurm.py), stopped by PID at the end.

    Skipped, with the reason, where the SLURM binaries are missing (`bash
    tests/cluster/install-slurm.sh` installs them) or the test is not root. Its account and its
    partition are not defaults, so the study only runs if the profile passes both to sbatch. Two
    fake GPUs: two training jobs at a time on the runner's two cores.
    """
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(
        tmp_path_factory.mktemp("slurm"),
        gpus=2,
        account="bnstudy",
        partition="bnstudy-gpu",
        default_partition=False,
    )

    def on_sigterm(signum, frame):  # pytest would otherwise die of SIGTERM without cleaning up
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the profile itself
def _parsed_profile(monkeypatch, **env):
    from snakemake.cli import parse_args

    for k in ("SBATCH_ACCOUNT", "SBATCH_PARTITION", "BNSTUDY_GRES"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(REPO)
    _, args = parse_args(["--workflow-profile", PROFILE, "--configfile", SMOKE])
    return args


def _raw(resources: dict) -> dict:
    """Snakemake's parsed resources -> their values as written (a str or a number)."""
    return {name: getattr(res, "raw", None) for name, res in resources.items()}


def test_profile_takes_account_partition_and_gres_from_the_environment(monkeypatch):
    args = _parsed_profile(
        monkeypatch, SBATCH_ACCOUNT="acct1", SBATCH_PARTITION="part1", BNSTUDY_GRES="gpu:a100:1"
    )
    assert args.executor == "slurm"
    defaults = _raw(args.default_resources)
    assert defaults["slurm_account"] == "acct1" and defaults["slurm_partition"] == "part1"
    sets = {rule: _raw(res) for rule, res in args.set_resources.items()}
    for rule in TRAIN_RULES:
        assert sets[rule]["gres"] == "gpu:a100:1" and sets[rule]["gpu"] == 0
    for rule in ("stats", "figure", "table", "macros", "paper"):
        assert "gres" not in sets[rule] and "gpu" not in sets[rule]
        assert args.groups[rule] == "analysis"
    assert not set(TRAIN_RULES) & set(args.groups)  # a training job is already many families


def test_profile_hardcodes_no_account_or_partition(monkeypatch):
    args = _parsed_profile(monkeypatch)
    assert not {"slurm_account", "slurm_partition"} & set(args.default_resources)
    assert all(_raw(args.set_resources[r])["gres"] == "gpu:1" for r in TRAIN_RULES)
    assert args.retries >= 1 and args.keep_going and args.rerun_incomplete
    assert args.slurm_status_command == "squeue"  # sacct's "CANCELLED by 0" is never seen as failed


# --------------------------------------------------------------------------- the cluster run
def _slurm_logs(workdir: Path) -> dict[str, list[tuple[str, str]]]:
    """SLURM job id -> [(rule, first output)] of the jobs its log says it ran (the plugin writes
    one log per cluster job, .snakemake/slurm_logs/<rule or group>/.../<jobid>.log)."""
    jobs: dict[str, list[tuple[str, str]]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        ran, rule = [], None
        for line in log.read_text(errors="replace").splitlines():
            m = re.match(r"^(?:local)?rule (\w+):", line)
            if m:
                rule = m.group(1)
                continue
            m = re.match(r"^\s+output: (.+)$", line)
            if m and rule:
                ran.append((rule, m.group(1).split(", ")[0]))
                rule = None
        jobs[log.stem] = sorted(set(ran))
    return jobs


class KillOnce(threading.Thread):
    """Cancels (scancel) the first training job seen with a job step running for `after` s:
    a training process killed mid-way on the cluster."""

    def __init__(self, cluster, after: float = 3.0):
        super().__init__(daemon=True)
        self.cluster, self.after = cluster, after
        self.killed: str | None = None
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set() and self.killed is None:
            training = {
                j["JobID"]
                for j in self.cluster.squeue()
                if j["State"] == "RUNNING" and j["Comment"].startswith("rule_train")
            }
            steps = self.cluster.run("squeue", "-h", "-s", "-o", "%i %M", check=False).stdout
            for line in steps.splitlines():
                step, used = line.split()
                job, _, num = step.partition(".")
                if job in training and num.isdigit() and _seconds(used) >= self.after:
                    self.cluster.run("scancel", job, check=False)
                    self.killed = job
                    break
            time.sleep(0.5)


def _seconds(used: str) -> int:
    """squeue's %M (M:SS, H:MM:SS or D-H:MM:SS) in seconds."""
    days, _, hms = used.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


@pytest.mark.slow
@pytest.mark.cluster
def test_smoke_study_on_slurm(slurm_cluster, smoke_run, tmp_path):
    work = copy_repo(tmp_path / "repo")
    env = slurm_cluster.env
    env["PYTHONPATH"] = snakemake_env(work)["PYTHONPATH"]
    account, partition = slurm_cluster.account, slurm_cluster.partition
    env.update(SBATCH_ACCOUNT=account, SBATCH_PARTITION=partition)
    env.pop("BNSTUDY_GRES", None)
    cmd = snakemake_command(
        "--workflow-profile",
        PROFILE,
        "--configfile",
        SMOKE,
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
    )  # the logs tell which cluster job ran which rule

    killer = KillOnce(slurm_cluster)
    log = tmp_path / "snakemake.log"
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        killer.start()
        try:
            proc.wait(SNAKEMAKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # Snakemake cancels its cluster jobs
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            killer.done.set()
            killer.join(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - start
    text = log.read_text(errors="replace")
    print(f"cluster smoke study: {wall:.0f} s, exit {proc.returncode}")
    assert proc.returncode == 0, (
        f"snakemake failed ({wall:.0f} s):\n{text[-8000:]}\n{slurm_cluster.tail_logs()}"
    )

    # The study completed, and its numbers are those of the local run.
    assert (work / "results" / "paper.pdf").stat().st_size > 0
    # `device` names the hardware a cell ran on: the CPU here, although SLURM gave every
    # training job a (fake) GPU, since JAX finds no CUDA device and falls back to the CPU.
    cluster_metrics = pd.read_parquet(work / "results" / "metrics.parquet")
    local_metrics = pd.read_parquet(smoke_run / "results" / "metrics.parquet")
    assert not cluster_metrics["device"].str.contains("gpu|cuda", case=False).any()
    pd.testing.assert_frame_equal(
        cluster_metrics.drop(columns="device"), local_metrics.drop(columns="device")
    )

    # Where each job ran, through sacct.
    acct = {r["JobID"]: r for r in slurm_cluster.sacct()}
    ran = _slurm_logs(work)
    assert ran and set(ran) <= set(acct), f"logs of unknown jobs: {set(ran) - set(acct)}"
    for jobid, jobs in ran.items():
        rec = acct[jobid]
        assert rec["Account"] == account and rec["Partition"] == partition, rec
        rules = {rule for rule, _ in jobs}
        assert not rules & LOCAL_RULES, f"local rules ran on the cluster: {jobid} {rules}"
        gpu = "gres/gpu=1" in rec["AllocTRES"].split(",")
        if rules & TRAIN_RULES:
            assert rules <= TRAIN_RULES, f"training grouped with other rules: {jobid} {rules}"
            assert gpu, f"training job {jobid} without a GPU: {rec}"
        else:
            assert not gpu and "gres/gpu" not in rec["AllocTRES"], (
                f"analysis/paper job {jobid} holds a GPU: {rec}"
            )

    # Every training cell ran as a SLURM job that COMPLETED with gres/gpu, and each of its job
    # steps (the training processes) held the GPU too.
    from bnstudy import grid

    config = yaml.safe_load((work / SMOKE).read_text())
    cells = {cell.path(grid.RUN) for cell in grid.cells(config)}
    completed = {
        out: jobid
        for jobid, jobs in ran.items()
        if acct[jobid]["State"] == "COMPLETED"
        for _, out in jobs
    }
    missing = cells - set(completed)
    assert not missing, f"training cells without a COMPLETED SLURM job: {sorted(missing)}"
    for jobid in {completed[c] for c in cells}:
        steps = slurm_cluster.run(
            "sacct", "-n", "-P", "-j", jobid, "-o", "JobID,State,AllocTRES"
        ).stdout
        numbered = [s.split("|") for s in steps.splitlines() if re.match(rf"^{jobid}\.\d+\|", s)]
        assert numbered and all(
            st == "COMPLETED" and "gres/gpu=1" in tres for _, st, tres in numbered
        ), f"job steps of training job {jobid}:\n{steps}"
    analysis = {rule for jobid, jobs in ran.items() for rule, _ in jobs if rule not in TRAIN_RULES}
    assert {"stats", "figure", "table", "macros", "paper"} <= analysis, analysis
    assert "results/paper.pdf" in completed

    # The killed training job: CANCELLED on the cluster, and every cell it held was retried
    # and completed by a later job.
    assert killer.killed, "no training job was running long enough to be killed"
    assert acct[killer.killed]["State"].startswith("CANCELLED"), acct[killer.killed]
    for _, out in ran[killer.killed]:
        assert int(completed[out]) > int(killer.killed), (out, completed[out])
