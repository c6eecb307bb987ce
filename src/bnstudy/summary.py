"""What a finished `snakemake` run prints last: the answer, or where a failure is explained.

`success` reads the run's statistics and macros (what exists of them: a run asked for only part
of the DAG prints only that part) and says the answer sentence, the headline numbers (identity +
BatchNorm against the linear reference on each dataset) and where the PDF and the HTML report
are. `failure` reads Snakemake's own log of the run and names every failed job with its log
file and that file's last lines. The Snakefile's onsuccess/onerror handlers call them.
"""

from __future__ import annotations

import re
from pathlib import Path

from bnstudy import formats, grid, vocab

RULE = "=" * 78


def plain(tex: str) -> str:
    """The LaTeX of a macro as plain text: '$\\pm2$ points' -> '±2 points'."""
    text = tex.replace("\\pm", "±").replace("\\%", "%").replace("$", "").replace("--", "-")
    text = re.sub(r"\\[a-zA-Z]+\{[^}]*\}", "", text)  # \cref{...} and the like
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _macros(path: Path) -> dict:
    return (
        dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", path.read_text()))
        if path.is_file()
        else {}
    )


def headline(shares) -> list[str]:
    """One line per E1 setting: identity + BatchNorm against the linear reference and ReLU +
    BatchNorm, with the share of the gap it recovers and its verdict."""
    from bnstudy.names import label
    from bnstudy.stats import of_experiment

    shares = of_experiment(shares, "E1")
    rows = shares[(shares["activation"] == vocab.BN_ONLY[0]) & (shares["norm"] == vocab.BN_ONLY[1])]
    return [
        f"  {label(r.dataset):<10} identity + BatchNorm {100 * r.mean_acc:5.1f}%   linear reference "
        f"{100 * r.mean_reference:5.1f}%   ReLU + BatchNorm {100 * r.mean_nonlinear:5.1f}%   "
        f"share of the gap {_percent(r.share)} [{_percent(r.share_lo)}, {_percent(r.share_hi)}]: "
        f"{r.verdict}"
        for r in rows.itertuples()
    ]


def _percent(x: float) -> str:
    return f"{formats.share_percent(x)}%" if abs(x) != float("inf") and x == x else str(x)


def success(root: str | Path = ".") -> str:
    """The closing message of a successful run (paths relative to the working directory `root`)."""
    import pandas as pd

    root = Path(root)
    lines = [RULE]
    m = _macros(root / grid.MACROS)
    if "AnswerSentence" in m:
        lines += [
            "Can BatchNorm alone serve as the nonlinearity?  " + plain(m["AnswerSentence"]),
            plain(m.get("Recommendation", "")),
        ]
    shares = root / grid.STUDY_FILES["shares"]
    if shares.is_file():
        rows = headline(pd.read_csv(shares))
        if rows:
            lines += [
                "",
                "Test accuracy, mean over seeds; share of the nonlinearity gap (ReLU + BatchNorm"
                " minus the linear reference) recovered, with its Fieller 95% interval:",
                *rows,
            ]
    paper = root / grid.PAPER
    if paper.is_file():
        lines += ["", f"The paper:       {grid.PAPER}"]
    if (root / grid.STUDY_FILES["metrics"]).is_file():
        lines += [
            f"Every run:       {grid.STUDY_FILES['metrics']} (and {grid.METRICS_CSV})",
            "The HTML report: snakemake --report results/report.html"
            "  (add the --configfile of this run, if any)",
        ]
    return "\n".join(lines + [RULE])


def failure(snakemake_logs, tail: int = 15) -> str:
    """The closing message of a failed run: each failed job, its log file and the log's last lines.
    `snakemake_logs`: Snakemake's log file(s) of the run (the `log` of an onerror handler)."""
    logs = [
        Path(p)
        for p in ([snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else snakemake_logs)
    ]
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.is_file())
    lines = [RULE, "The run failed."]
    for block in re.split(r"\n(?=Error in rule )", text)[1:]:
        rule = re.match(r"Error in rule (\S+?):", block)
        job_log = re.search(r"^\s+log: (\S+)", block, re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        lines.append("")
        lines.append(
            f"Failed job: rule {rule.group(1) if rule else '?'}"
            + (f" ({wildcards.group(1)})" if wildcards else "")
        )
        if job_log:
            path = Path(job_log.group(1))
            lines.append(f"Its log: {path}")
            if path.is_file():
                last = path.read_text(errors="replace").rstrip().splitlines()[-tail:]
                lines += ["  | " + line for line in last]
    if len(lines) == 2:
        lines.append(f"Snakemake's log of this run: {', '.join(map(str, logs))}")
    return "\n".join(lines + [RULE])
