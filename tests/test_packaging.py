"""The install promises (docs/install.md, docs/development.md): every imported package is declared
and locked, the locks are whole and agree, the conda environments follow them, the README's
Quickstart blocks are what .ci/run extracts, `python -m bnstudy` works, and the docs' links hold.
All checks read files or run one small command: seconds, no network."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"cpu": REPO / "requirements/cpu.txt", "cuda": REPO / "requirements/cuda.txt"}
LOCK_EXTRAS = {"cpu": ("test", "lint"), "cuda": ("test", "lint", "cuda")}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def declared(extras=("test", "lint", "cuda")) -> list[Requirement]:
    p = project()
    reqs = [Requirement(r) for r in p["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in p["optional-dependencies"][extra]]
    return reqs


def lock_entries(path: Path) -> list[tuple[str, str, str | None]]:
    """(canonical name, version, marker or None) of every `name==version` line of a lock."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line
        )
        if m:
            out.append((canonicalize_name(m[1]), m[2], m[3]))
    return out


def pins_here(path: Path) -> dict[str, str]:
    """name -> version of the lock's entries that apply to this interpreter and platform."""
    pins = {}
    for name, version, marker in lock_entries(path):
        if marker is None or Marker(marker).evaluate():
            assert name not in pins, f"{path.name}: two pins of {name} apply here"
            pins[name] = version
    return pins


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> files importing it, over src/, tests/, benchmarks/, Snakefile, rules."""
    found: dict[str, set[str]] = {}
    files = [*REPO.glob("src/**/*.py"), *REPO.glob("tests/**/*.py"), *REPO.glob("benchmarks/*.py")]
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                found.setdefault(n.split(".")[0], set()).add(str(f.relative_to(REPO)))
    for f in [REPO / "Snakefile", *REPO.glob("workflow/rules/*.smk")]:  # Snakemake, not Python
        for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", f.read_text(), re.M):
            found.setdefault(m[1], set()).add(str(f.relative_to(REPO)))
    return found


def local_modules() -> set[str]:
    names = {"bnstudy"}
    for folder in ("tests", "tests/cluster", "benchmarks"):
        names |= {p.stem for p in (REPO / folder).glob("*.py")}
    return names


def test_every_imported_package_is_declared():
    dists = importlib.metadata.packages_distributions()
    # bench: the PyTorch loop of benchmarks/bench_engine.py (an extra that is not locked)
    declared_names = {
        canonicalize_name(r.name) for r in declared(("test", "lint", "cuda", "bench"))
    }
    missing = {}
    for module, files in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in local_modules() or module == "__future__":
            continue
        owners = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not owners & declared_names:
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_every_declared_dependency(lock):
    pins = pins_here(LOCKS[lock])
    if lock == "cuda" and not sys.platform.startswith("linux"):
        pytest.skip("the CUDA lock is for Linux")
    for req in declared(LOCK_EXTRAS[lock]):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}.txt does not pin {req.name}: run sh requirements/refresh.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock}.txt pins {name}=={pins[name]}, outside pyproject's {req}: "
            "run sh requirements/refresh.sh"
        )


def test_locks_agree_and_are_whole():
    cpu, cuda = (pins_here(LOCKS[k]) for k in ("cpu", "cuda"))
    differ = {n: (cpu[n], cuda[n]) for n in cpu.keys() & cuda.keys() if cpu[n] != cuda[n]}
    assert not differ, f"cpu.txt and cuda.txt pin different versions: {differ}"
    assert "jax-cuda13-plugin" in {n for n, _, _ in lock_entries(LOCKS["cuda"])}
    for path in LOCKS.values():
        text = path.read_text()
        names = {n for n, _, _ in lock_entries(path)}
        assert "torch" not in names, f"{path.name} pulls in torch"
        assert names, path
        # every pin carries at least one sha256 (pip then checks every file it downloads)
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for block in blocks:
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, f"{path.name}: no hash for {block.split()[0]}"


@pytest.mark.parametrize("env, lock", [("bnstudy", "cpu"), ("bnstudy-cuda", "cuda")])
def test_conda_env_installs_its_lock(env, lock):
    import yaml

    path = REPO / f"workflow/envs/{env}.yaml"
    spec = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert pip == [f"-r ../../requirements/{lock}.txt"]
    digest = hashlib.sha256(LOCKS[lock].read_bytes()).hexdigest()
    assert f"# lock: requirements/{lock}.txt sha256:{digest}" in path.read_text(), (
        f"{path.name} does not carry the current sha256 of {lock}.txt: run sh requirements/refresh.sh"
    )
    deploy = REPO / f"workflow/envs/{env}.post-deploy.sh"
    assert "pip install --no-deps -e ." in deploy.read_text()


def quickstart(name: str) -> list[str]:
    """The README block that .ci/run extracts, as .ci/run extracts it."""
    proc = subprocess.run(
        ["bash", str(REPO / ".ci/run"), "--quickstart", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split("#")[0].strip() for line in proc.stdout.splitlines()]


def test_readme_quickstart_blocks_are_what_ci_runs():
    system = " ".join(quickstart("system")).replace("\\", " ").split()
    for package in (
        "python3-venv",
        "latexmk",
        "texlive-latex-base",
        "texlive-latex-recommended",
        "texlive-latex-extra",
        "lmodern",
        "poppler-utils",
        "git",
    ):
        assert package in system, package
    install = quickstart("install")
    assert install[0] == "python3 -m venv .venv"
    assert ". .venv/bin/activate" in install
    assert install[-2:] == ["pip install -r requirements/cpu.txt", "pip install --no-deps -e ."]
    assert quickstart("test") == ["python -m pytest"]


def test_python_m_bnstudy():
    proc = subprocess.run(
        [sys.executable, "-m", "bnstudy", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: bnstudy" in proc.stdout and "train" in proc.stdout


def test_docs_links_resolve():
    pages = [REPO / "README.md", *sorted(REPO.glob("docs/*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to {target}"


def test_report_captions_name_the_tests_the_code_runs():
    for rst in (REPO / "paper/report").glob("*.rst"):
        assert "welch" not in rst.read_text().lower(), f"{rst.name}: the code uses paired tests"
