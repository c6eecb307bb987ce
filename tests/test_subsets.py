"""A config with a subset of the experiments runs to a PDF that reports exactly those, and a
second config run in the same checkout finds nothing of the first in its tables and macros."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SMOKE, copy_repo, run_snakemake
from test_paper import needs_tex, pdf_text

from bnstudy import grid, vocab
from bnstudy.formats import seconds

SUBSETS = (("E5",), ("E2", "E7"))  # run one after the other in the same checkout


def _subset_config(work: Path, experiments) -> str:
    config = yaml.safe_load((work / SMOKE).read_text())
    config["experiments"] = {e: config["experiments"][e] for e in experiments}
    path = work / f"subset-{'-'.join(experiments)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path.name


def _macros(work: Path) -> dict:
    return dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (work / grid.MACROS).read_text()))


@pytest.mark.slow
@needs_tex
def test_subsets_of_the_experiments_report_exactly_those(smoke_run, tmp_path):
    work = copy_repo(tmp_path / "repo")
    shutil.copytree(smoke_run / "results" / "jax-cache", work / "results" / "jax-cache")
    for experiments in SUBSETS:
        configfile = _subset_config(work, experiments)
        proc = run_snakemake(work, "--cores", "all", "--configfile", configfile)
        assert proc.returncode == 0, proc.stdout[-6000:]
        config = yaml.safe_load((work / configfile).read_text())
        cells = grid.cells(config)

        # the PDF has the sections of these experiments and no other
        text = " ".join(pdf_text(work / grid.PAPER).split())
        for e, title in vocab.EXPERIMENTS.items():
            heading = f"{e}: {title.split(',')[0]}"
            assert (heading in text) == (e in experiments), (e, experiments)
        assert "??" not in text
        assert "\n0 LaTeX warnings" in (work / "results/logs/paper/latexmk.log").read_text()

        # the study's tables hold this config's cells only
        metrics = pd.read_parquet(work / grid.STUDY_FILES["metrics"])
        assert set(metrics.experiment) == set(experiments)
        assert len(metrics.drop_duplicates(list(vocab.CELL_KEYS))) == len(cells)

        # compute used: exactly the benchmark files of this config's cells, though the earlier
        # config's files are still on disk
        m = _macros(work)
        benchmarks = grid.paths(cells, grid.TRAIN_BENCHMARK)  # one per family of cells
        assert m["NumBenchmarks"] == str(len(benchmarks))
        assert m["ExperimentList"] == " and ".join(experiments)
        compute = (work / "results/tables/compute.tex").read_text()
        rows = [line.split(" & ")[0] for line in compute.splitlines() if re.match(r"E\d ", line)]
        assert rows == list(experiments)
        wall = sum(pd.read_csv(work / f, sep="\t")["s"].iloc[0] for f in benchmarks)
        assert m["TrainTime"] == seconds(wall)
    # the first subset's cells are still on disk: what the second reported ignored them
    first = grid.cells(yaml.safe_load((work / _subset_config(work, SUBSETS[0])).read_text()))
    assert all((work / c.path(grid.TRAIN_BENCHMARK)).is_file() for c in first)
