"""Shared fixtures: a copy of the repository, and one real run of the smoke pipeline.

`smoke_run` runs `snakemake --cores all --configfile workflow/config/smoke.yaml` once per test
session, through the real `snakemake` command, in a temporary copy of the repository, and
returns that copy's path (what it printed is in SMOKE_OUTPUT there): every stage's tests read its results/ from there, so CI runs the smoke
pipeline once. Treat it as read-only (copy it with `copy_repo` to change anything).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = "workflow/config/smoke.yaml"
SMOKE_OUTPUT = "smoke-run.out"  # what the smoke run printed (stdout and stderr), in its copy


def copy_repo(dest: Path) -> Path:
    """Copy the repository's files (tracked, plus untracked ones git does not ignore) to `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, dest / name
        if not (src.exists() or src.is_symlink()):  # deleted in the working tree
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


def snakemake_command(*args: str) -> list[str]:
    """The `snakemake` command (the installed script; `python -m snakemake` if it is not on PATH)."""
    exe = shutil.which("snakemake")
    return [exe, *args] if exe else [sys.executable, "-m", "snakemake", *args]


def snakemake_env(workdir: Path) -> dict[str, str]:
    """The environment of a run in `workdir`: that copy's sources come first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir / "src"), env.get("PYTHONPATH")]))
    return env


def run_snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real `snakemake` in `workdir`; stdout and stderr together in `.stdout`."""
    return subprocess.run(
        snakemake_command(*args),
        cwd=workdir,
        env=snakemake_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A repository copy in which the smoke config ran to the end (see the module docstring)."""
    work = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    proc = run_snakemake(work, "--cores", "all", "--configfile", SMOKE)
    assert proc.returncode == 0, f"smoke pipeline failed:\n{proc.stdout[-8000:]}"
    (work / SMOKE_OUTPUT).write_text(proc.stdout)
    return work
