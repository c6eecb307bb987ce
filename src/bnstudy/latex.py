"""The LaTeX build: paper sources + generated files -> one PDF, with the software it ran on.

`compile_paper` copies `paper/` and the generated figures, tables and macros into a build folder,
writes `tex/environment.tex` (git commit, Python, package and TeX versions, platform: captured
here, at build time, so the appendix names the software that built this PDF), runs latexmk and
copies the PDF into place atomically. Without latexmk it fails at once with the install command.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
from pathlib import Path

from bnstudy.formats import tex_escape
from bnstudy.results import atomic_output, write_text

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "pandas",
    "scipy",
    "seaborn",
    "matplotlib",
    "scikit-learn",
    "snakemake",
    "bnstudy",
)
# The Debian/Ubuntu packages the paper needs (checked against latexmk's recorder file, main.fls).
TEX_PACKAGES = (
    "latexmk",
    "texlive-latex-base",
    "texlive-latex-recommended",
    "texlive-latex-extra",
    "lmodern",
)
INSTALL_HINT = (
    "latexmk was not found, so the paper cannot be compiled. Install TeX from the Debian/"
    "Ubuntu packages with:\n  sudo apt-get install -y --no-install-recommends "
    + " ".join(TEX_PACKAGES)
    + " poppler-utils\n(see the README's Install), then rerun snakemake."
)
_WARNING = re.compile(
    r"^(LaTeX Warning|Package \w+ Warning|Class \w+ Warning|LaTeX Font Warning"
    r"|Overfull \\[hv]box|Underfull \\[hv]box|Missing character)"
)


def latex_warnings(build: str | Path) -> list[str]:
    """The warnings of the last LaTeX pass (main.log) and of BibTeX (main.blg)."""
    build = Path(build)
    out = []
    log = build / "main.log"
    if log.exists():
        out += [
            line for line in log.read_text(errors="replace").splitlines() if _WARNING.match(line)
        ]
    blg = build / "main.blg"
    if blg.exists():
        out += [
            line
            for line in blg.read_text(errors="replace").splitlines()
            if line.startswith("Warning--")
        ]
    return out


def compile_paper(
    src: str | Path,
    build: str | Path,
    out: str | Path,
    generated: dict,
    log: str | Path | None = None,
) -> list[str]:
    """Copy the paper's sources and the generated files (build-relative path -> file) into `build`,
    run `latexmk -pdf` there, and copy the PDF to `out` atomically. Returns the LaTeX warnings;
    latexmk's output and the warnings are also written to `log` if given."""
    if shutil.which("latexmk") is None:
        raise SystemExit(INSTALL_HINT)
    src, build = Path(src), Path(build)
    for stale in ("sections", "figures", "tables", "tex"):  # nothing left over from an earlier run
        shutil.rmtree(build / stale, ignore_errors=True)
    shutil.copytree(src, build, dirs_exist_ok=True)
    for rel, path in generated.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, build / rel)
    write_text(render_environment(environment()), build / "tex" / "environment.tex")
    cmd = [
        "latexmk",
        "-pdf",
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-file-line-error",
        "main.tex",
    ]
    output = ""
    for _ in range(3):
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
        output += proc.stdout + proc.stderr
        warnings = latex_warnings(build)
        # latexmk occasionally stops after one pass, before bibtex, calling everything
        # up to date (seen with latexmk 4.79 on a fresh build folder): run it again, forced
        settled = (build / "main.bbl").is_file() and not any("Rerun" in w for w in warnings)
        if proc.returncode != 0 or settled:
            break
        cmd = ["latexmk", "-g", *cmd[1:]] if "-g" not in cmd else cmd
    proc.stdout = output
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(
            proc.stdout
            + f"\n{len(warnings)} LaTeX warnings\n"
            + "".join(w + "\n" for w in warnings)
        )
    if proc.returncode != 0:
        errors = [
            line
            for line in proc.stdout.splitlines()
            if ":" in line and "error" in line.lower() or line.startswith("!")
        ]
        raise SystemExit(
            f"latexmk failed (exit {proc.returncode}); see {build / 'main.log'}\n"
            + "\n".join(errors[-20:] or proc.stdout.splitlines()[-30:])
        )
    with atomic_output(out) as tmp:
        shutil.copyfile(build / "main.pdf", tmp)
    return warnings


def git_commit(repo: str | Path = ".") -> str:
    """HEAD's short hash, '+dirty' when tracked files have changes; 'unknown' without a commit."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(repo: str | Path = ".") -> dict:
    """The software and platform of this build, macro name -> LaTeX text."""
    versions = []
    for p in PACKAGES:
        try:
            versions.append(f"{p} {importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        tex = subprocess.run(
            ["pdflatex", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        tex = "not found"
    return {
        "GitCommit": tex_escape(git_commit(repo)),
        "PythonVersion": platform.python_version(),
        "PackageVersions": tex_escape(", ".join(versions)),
        "TexVersion": tex_escape(tex),
        "Platform": tex_escape(f"{platform.system()} {platform.machine()}"),
    }


def render_environment(env: dict) -> str:
    return "% Written by `bnstudy paper` when it compiled this PDF.\n" + "".join(
        f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in env.items()
    )
