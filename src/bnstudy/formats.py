"""Number formats of the paper: percentages, intervals, p-values, differences, times.

One function per format, each returning LaTeX (text or math-mode content as its docstring says),
so a number reads the same in every table and sentence.
"""

from __future__ import annotations

import math
import re

import numpy as np

VERDICT_PHRASES = {  # the share verdicts of bnstudy.stats, as the prose says them
    "linear": "no better than linear",
    "nonlinear": "nonlinear",
    "inconclusive": "inconclusive",
    "cannot discriminate": "not testable (gap too small)",
}
MISSING = "--"  # a number the configuration did not produce


def pct(x: float, digits: int = 1) -> str:
    return "--" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def pct_down(x: float, digits: int = 2) -> str:
    """pct rounded down: a lower bound (a share below 1 never prints as 100.00)."""
    if x is None or not np.isfinite(x):
        return "--"
    return f"{np.floor(100 * x * 10**digits) / 10**digits:.{digits}f}"


def acc_ci(mean: float, lo: float, hi: float) -> str:
    """'52.3 [50.1, 54.5]' (percent); the interval is left out when it cannot be computed."""
    if not np.isfinite(lo):
        return pct(mean)
    return f"{pct(mean)} [{pct(lo)}, {pct(hi)}]"


def acc_cell(mean: float, lo: float, hi: float) -> str:
    """A two-line table cell: the mean, and the interval below it in small type."""
    if not np.isfinite(lo):
        return pct(mean)
    return f"\\makecell[t]{{{pct(mean)}\\\\{{\\scriptsize [{pct(lo)}, {pct(hi)}]}}}}"


def pvalue(p: float) -> str:
    """A p-value for a table cell (LaTeX): three decimals, '$<$0.001' below that."""
    if p is None or not np.isfinite(p):
        return "--"
    return "$<$0.001" if p < 1e-3 else f"{p:.3f}"


def p_equals(p: float, symbol: str = "p") -> str:
    """A p-value for prose (LaTeX math): '$p = 0.012$' or '$p < 0.001$'."""
    if p is None or not np.isfinite(p):
        return f"${symbol}$ not computable"
    return f"${symbol} < 0.001$" if p < 1e-3 else f"${symbol} = {p:.3f}$"


def points(x: float, sign: str = "") -> str:
    """An accuracy difference in points, one decimal, never '-0.0'."""
    text = f"{100 * x:{sign}.1f}"
    return text.replace("-0.0", "0.0") if text.lstrip("+-") == "0.0" else text


def share_percent(x: float) -> str:
    """A finite share of the gap in whole percent, plain text: '3', '-4'; never '-0' (a share
    just below zero rounds to 0). The paper's `share_ci` and the run's closing lines use it."""
    text = f"{100 * x:.0f}"
    return "0" if text == "-0" else text


def share_ci(share: float, lo: float, hi: float, unit: str = "") -> str:
    """A share of the gap in percent with its (possibly unbounded) interval, LaTeX text:
    '$3$ [$-4$, $10$]' (with unit "\\%": '$3$\\% [$-4$, $10$]'); never '-0'; the interval is
    left out when it cannot be computed."""
    if share is None or not np.isfinite(share):
        return "--"

    def num(x):
        if np.isinf(x):
            return "$-\\infty$" if x < 0 else "$\\infty$"
        return f"${share_percent(x)}$"

    head = num(share) + unit
    return head if np.isnan(lo) or np.isnan(hi) else f"{head} [{num(lo)}, {num(hi)}]"


def diff_ci(diff: float, lo: float, hi: float) -> str:
    """A difference in points with its interval (LaTeX math): '$+1.2$ [$-0.3$, $2.7$]'."""
    if not np.isfinite(diff):
        return "--"
    if not np.isfinite(lo):
        return f"${points(diff, '+')}$"
    return f"${points(diff, '+')}$ [${points(lo)}$, ${points(hi)}$]"


def sci(x: float, digits: int = 1) -> str:
    """A float in LaTeX scientific notation, math-mode content: 3.2\\times10^{-7}."""
    if x is None or not np.isfinite(x):
        return "\\text{--}"
    if x == 0:
        return "0"
    exp = math.floor(math.log10(abs(x)))
    mant = x / 10**exp
    if round(mant, digits) >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:.{digits}f}\\times10^{{{exp}}}"


def seconds(s: float) -> str:
    """Wall time in words: '42 s', '3.5 min', '2.1 h'."""
    if s is None or not np.isfinite(s):
        return "--"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def tex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", str(text))
