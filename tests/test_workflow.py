"""The workflow through the real `snakemake` command: lint, DAG, bad configs, the smoke pipeline
end to end, the no-op rerun, and kill-and-resume."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SMOKE, SMOKE_OUTPUT, copy_repo, run_snakemake, snakemake_command, snakemake_env
from snakemake.utils import validate

from bnstudy import grid, results, stats, vocab

STUDY_TABLES = [grid.STUDY_FILES[k] for k in ("metrics", "history", "batchstats", "layers")]


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """A repository copy in which nothing ever runs (dry runs, lint, rejected configs)."""
    return copy_repo(tmp_path_factory.mktemp("fresh") / "repo")


def smoke_config() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / SMOKE).read_text())


def test_lint_is_clean(fresh_copy):
    proc = run_snakemake(fresh_copy, "--lint", timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout
    assert "Lints for" not in proc.stdout


@pytest.mark.parametrize("configfile", [None, SMOKE])
def test_dry_run_trains_each_cell_once(fresh_copy, configfile):
    args = ["-n", "--quiet", "rules"] + (["--configfile", configfile] if configfile else [])
    proc = run_snakemake(fresh_copy, *args, timeout=120)
    assert proc.returncode == 0, proc.stdout
    name = "default" if configfile is None else "smoke"
    config = yaml.safe_load((fresh_copy / "workflow" / "config" / f"{name}.yaml").read_text())
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in proc.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["train"] + counts["train_2d"] == len(grid.jobs(config))
    assert counts["train_2d"] == sum(j[0] in vocab.TWO_D for j in grid.jobs(config))
    assert counts["prepare_data"] == len(grid.datasets(config))
    assert counts["collect"] == 1
    assert not (fresh_copy / "results").exists()


def test_training_jobs_start_costliest_first(fresh_copy):
    """Each training and reference job's priority is its expected seconds (grid.job_cost,
    grid.reference_cost); the data come first; then the statistics, the figures, the tables."""
    proc = run_snakemake(fresh_copy, "-n", "--configfile", SMOKE, timeout=120)
    assert proc.returncode == 0, proc.stdout
    config = smoke_config()
    validate(config, str(fresh_copy / "workflow" / "schemas" / "config.schema.yaml"))
    jobs = {}
    for block in re.split(r"^\[.*\]$", proc.stdout, flags=re.M):  # a job's block follows its date
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule is None:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        priority = re.search(r"^\s+priority: (\S+)$", block, re.M)
        jobs.setdefault(rule.group(1), []).append(
            (
                dict(kv.split("=") for kv in wildcards.group(1).split(", ")) if wildcards else {},
                float(priority.group(1)) if priority else 0.0,
            )
        )
    trained = jobs["train"] + jobs.get("train_2d", [])
    assert len(trained) == len(grid.jobs(config))
    for wildcards, priority in trained:
        assert priority == grid.job_cost(config, SimpleNamespace(**wildcards)) > 0
    assert all(p > max(q for _, q in trained) for _, p in jobs["prepare_data"])
    for wildcards, priority in jobs["reference"]:  # in the same unit: expected seconds
        assert priority == grid.reference_cost(config, wildcards["dataset"]) > 0
    assert [p for _, p in jobs["stats"]] == [2]  # the figures, tables and macros read it
    assert {p for _, p in jobs["figure"]} == {1} and {p for _, p in jobs["table"]} == {0}


BAD_CONFIGS = {
    # name: (edit of the smoke config, texts the message must contain)
    "unknown activation": (
        lambda c: c["experiments"]["E1"][0].update(activations=["identity", "swish"]),
        ["'swish' is not one of", "'leaky_relu'", "['activations']"],
    ),
    "depth 0": (
        lambda c: c["experiments"]["E4"][0].update(depths=[0, 2]),
        ["0 is less than the minimum of 1", "['depths']"],
    ),
    "empty grid": (
        lambda c: c["experiments"]["E5"][0].update(norms=[]),
        ["[] should be non-empty", "['norms']"],
    ),
    "no experiments": (
        lambda c: c.update(experiments={}),
        ["{} should be non-empty", "experiments"],
    ),
    "bad groupnorm width": (
        lambda c: c["experiments"]["E2"][0].update(norms=["groupnorm"], widths=[18]),
        ["experiments.E2[0].widths", "training.groups = 4", "multiples of 4"],
    ),
    "unknown key": (
        lambda c: c["training"].update(epoch=3),
        ["'epoch' was unexpected", "training"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_job(fresh_copy, tmp_path, case):
    edit, expected = BAD_CONFIGS[case]
    config = smoke_config()
    edit(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    start = time.monotonic()
    proc = run_snakemake(fresh_copy, "--cores", "all", "--configfile", str(bad), timeout=120)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stdout, f"{text!r} not in:\n{proc.stdout}"
    assert "rule " not in proc.stdout and not (fresh_copy / "results").exists()
    assert time.monotonic() - start < 60


def test_a_failed_run_names_the_job_and_its_log(fresh_copy, tmp_path):
    config = smoke_config()
    config["data"]["mnist1d"]["val_size"] = (
        100_000  # more than the training pool: prepare-data fails
    )
    config["experiments"] = {"E5": config["experiments"]["E5"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    work = copy_repo(tmp_path / "repo")
    proc = run_snakemake(work, "--cores", "all", "--configfile", str(bad), timeout=300)
    assert proc.returncode != 0
    tail = proc.stdout[proc.stdout.index("The run failed.") :]
    assert "Failed job: rule prepare_data" in tail
    assert "Its log: results/logs/data/mnist1d.log" in tail
    assert "val_size=100000 does not fit mnist1d" in tail  # the log's last lines, printed


# --- the real pipeline (slow) ---------------------------------------------------------------


@pytest.mark.slow
def test_a_finished_run_says_its_answer_and_where_the_paper_is(smoke_run):
    from bnstudy import summary

    out = (smoke_run / SMOKE_OUTPUT).read_text()
    assert "Shell command:" not in out  # progress stays readable: no 400-character commands
    tail = out[out.rindex("Can BatchNorm alone serve as the nonlinearity?") :]
    macros = dict(
        re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (smoke_run / grid.MACROS).read_text())
    )
    assert summary.plain(macros["AnswerSentence"]) in tail
    assert "The paper:       results/paper.pdf" in tail and "snakemake --report" in tail
    shares = stats.of_experiment(pd.read_csv(smoke_run / grid.STUDY_FILES["shares"]), "E1")
    bn = shares[(shares.activation == "identity") & (shares.norm == "batchnorm")]
    assert len(bn) == 2  # the smoke config's two E1 datasets
    for r in bn.itertuples():
        assert f"{100 * r.mean_acc:5.1f}%   linear reference {100 * r.mean_reference:5.1f}%" in tail
        assert r.verdict in tail


@pytest.mark.slow
def test_every_comparison_has_exactly_one_verdict_and_the_reference_is_convex(smoke_run):
    """One claim, one family, one verdict: no (setting, network) is tested twice anywhere in
    results/stats/; the linear reference is the converged logistic regression of every seed."""
    stats_dir = smoke_run / "results" / "stats"
    verdicts = [
        pd.read_csv(f) for f in sorted(stats_dir.glob("*.csv")) if "verdict" in pd.read_csv(f)
    ]
    assert len(verdicts) == 1  # only shares.csv carries verdicts
    keys = [*vocab.CELL_KEYS]  # one row per cell: its setting, activation, norm and groups
    assert not verdicts[0].duplicated(keys).any()
    gaps = pd.read_csv(stats_dir / "gaps.csv")
    assert not gaps.duplicated(list(vocab.SETTING_KEYS)).any()
    ref = pd.read_parquet(smoke_run / grid.STUDY_FILES["reference"])
    config = smoke_config()
    assert set(ref.seed) == set(config["training"]["seeds"])
    assert set(ref.dataset) == set(grid.datasets(config)) and ref["converged"].all()


@pytest.mark.slow
def test_smoke_pipeline_writes_the_study_tables(smoke_run):
    config = smoke_config()
    cells = grid.cells(config)
    tables = {
        k: pd.read_parquet(smoke_run / grid.STUDY_FILES[k])
        for k in ("metrics", "batchstats", "layers")
    }
    metrics = tables["metrics"]
    required = results.ROW_KEYS + [
        "selected",
        "train_acc",
        "val_acc",
        "test_acc",
        "diverged",
        "affine_gap",
        "fold_max_dev",
    ]
    assert set(required) <= set(metrics.columns) and "train_seconds" not in metrics.columns
    assert all(metrics[c].map(np.isscalar).all() for c in metrics.columns)  # per-run scalars only
    # every (experiment, cell): every seed at the config's rates, and at the rates beyond the
    # grid's edge its family trained because a cell selected that edge
    seeds, lrs = config["training"]["seeds"], config["training"]["lrs"]
    runs = metrics.groupby(["experiment"] + results.CELL_KEYS)
    assert runs.ngroups == sum(len(m) for m in cells.values())
    assert (runs.size() == len(seeds) * runs["lr"].nunique()).all()
    assert runs["lr"].agg(lambda x: set(lrs) <= set(x)).all()
    assert not metrics.duplicated(results.ROW_KEYS).any()
    per_cell = metrics[metrics.selected].groupby(["experiment"] + results.CELL_KEYS)
    assert per_cell.ngroups == sum(len(m) for m in cells.values())
    assert (per_cell["lr"].nunique() == 1).all() and (per_cell.size() == 3).all()
    # the batch-statistics probe: every test batch size and composition of the config, for
    # exactly the runs at their cell's selected rate whose norm uses batch statistics and whose
    # cell E3 or E8 reads (in every experiment that cell belongs to); no other run is probed
    bs = tables["batchstats"]
    cell_keys = list(vocab.CELL_KEYS)
    read = metrics[metrics.experiment.isin(vocab.BATCH_PROBE_EXPERIMENTS)][cell_keys]
    batch_stat = metrics.norm.isin(vocab.BATCH_STAT_NORMS)
    bn = metrics[batch_stat & metrics.selected].merge(read.drop_duplicates())
    assert metrics.loc[~metrics.selected, "cond_test_acc"].isna().all()
    assert (
        metrics.loc[metrics.selected & batch_stat & (metrics.experiment == "E8")]["cond_test_acc"]
        .between(0, 1)
        .all()
    )
    assert len(bn) < len(metrics[batch_stat & metrics.selected])  # some are skipped
    sizes = config["training"]["test_batch_sizes"]
    per_run = bs.groupby(results.ROW_KEYS).size()
    assert len(per_run) == len(bn)
    # the config's sizes, and for E8 also the run's own training batch size
    assert per_run.isin([n * len(vocab.COMPOSITIONS) for n in (len(sizes), len(sizes) + 1)]).all()
    assert set(bs[~bs.full].test_batch_size) >= {b for b in sizes if b != vocab.FULL}
    assert bs[(bs.composition == "random") & ~bs.full].flip_rate.notna().all()
    # gradient norms at init: every run at its training batch size (the first step's), and E4's
    # also at the config's init_batch_sizes, each a root mean square over batches
    layers = tables["layers"]
    own = layers[layers.grad_batch_size == layers.batch_size]
    assert len(own) == (metrics.depth + 1).sum()
    e4 = layers[layers.experiment == "E4"]
    init_sizes = config["training"]["init_batch_sizes"]
    assert set(e4.grad_batch_size) == set(init_sizes) | set(e4.batch_size)
    sizes_per_run = e4.groupby(results.ROW_KEYS).grad_batch_size.nunique()
    assert (sizes_per_run == len(set(init_sizes) | set(e4.batch_size))).all()
    assert (e4[e4.grad_batch_size == 4].draws == 2048 // 4).all()
    assert set(layers[layers.experiment != "E4"].grad_batch_size) <= set(metrics.batch_size)
    rank = layers.groupby("dataset").input_rank.unique()  # the centred inputs' rank
    assert list(rank["mnist1d"]) == [40] and list(rank["spirals"]) == [2]

    csv = pd.read_csv(smoke_run / grid.METRICS_CSV)
    pd.testing.assert_frame_equal(csv, metrics, check_dtype=False)
    assert set(config["training"]["lrs"]) <= set(metrics.lr)  # the config's numbers, exactly
    history = pd.read_parquet(smoke_run / "results" / "history.parquet")
    assert len(history) == len(metrics) * config["training"]["epochs"]
    # every cell has its run, a benchmark and a log; 2-D cells their boundary grids
    for cell in cells:
        for pattern in (
            grid.RUN,
            grid.HISTORY,
            grid.BATCHSTATS,
            grid.LAYERS,
            grid.TRAIN_BENCHMARK,
            grid.TRAIN_LOG,
        ):
            assert (smoke_run / cell.path(pattern)).is_file()
        assert (smoke_run / cell.path(grid.BOUNDARY)).is_file() == (cell.dataset in vocab.TWO_D)
    assert any((smoke_run / "results" / "jax-cache").iterdir())
    assert not list((smoke_run / "results").rglob(".*.tmp"))


@pytest.mark.slow
def test_second_run_does_nothing_within_seconds(smoke_run):
    files = [p for p in (smoke_run / "results").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    start = time.monotonic()
    proc = run_snakemake(smoke_run, "--cores", "all", "--configfile", SMOKE, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout
    assert "Nothing to be done" in proc.stdout
    assert elapsed < 15, f"a no-op rerun took {elapsed:.1f}s"
    assert {p: p.stat().st_mtime_ns for p in files} == before


def _start(work: Path, target: str) -> subprocess.Popen:
    # the target first: --configfile takes every argument after it
    return subprocess.Popen(
        snakemake_command(target, "--cores", "all", "--configfile", SMOKE),
        cwd=work,
        env=snakemake_env(work),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(proc: subprocess.Popen, done) -> None:
    """SIGKILL the run's whole process group (Snakemake and its jobs) once `done()` is true."""
    deadline = time.monotonic() + 600
    while not done():
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # the group's other members die with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("processes of the killed run survived")


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_tables(smoke_run, tmp_path):
    work = copy_repo(tmp_path / "repo")
    # Compiled programs from the uninterrupted run: faster, and it checks that cached programs
    # reproduce freshly compiled ones bit for bit.
    shutil.copytree(smoke_run / "results" / "jax-cache", work / "results" / "jax-cache")
    jobs = grid.paths(grid.cells(smoke_config()), grid.RUN)  # one per training job
    runs = lambda: sum((work / f).exists() for f in jobs)  # noqa: E731

    # killed twice: early in training, then with training almost done
    for threshold in (1, len(jobs) - 1):
        _kill_when(_start(work, "results/metrics.parquet"), lambda t=threshold: runs() >= t)
        assert runs() < len(jobs)
        for f in (work / "results" / "runs").rglob("*.parquet"):  # no half-written results
            pd.read_parquet(f)

    # what a writer killed between creating its temp file and renaming it would leave
    stale = work / "results" / "runs" / "mnist1d" / ".pre-d2-w16-b64.parquet.x1y2z3.tmp"
    stale.write_bytes(b"PAR1 half a file")
    proc = run_snakemake(work, "results/metrics.parquet", "--cores", "all", "--configfile", SMOKE)
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert not stale.exists()
    for table in STUDY_TABLES:
        assert (work / table).read_bytes() == (smoke_run / table).read_bytes(), table
    assert not list((work / "results").rglob(".*.tmp"))
