"""Display names and the study's canonical order, for tables, figures and prose.

The names themselves live in `bnstudy.vocab` (each entry's `label`); this module turns keys into
what a reader sees ("identity + BatchNorm", "linear (identity)") and sorts keys the way the
vocabulary lists them, not alphabetically.
"""

from __future__ import annotations

import pandas as pd

from bnstudy import vocab
from bnstudy.results import ORDER

label = vocab.label


def composition(activation: str, norm: str) -> str:
    """'identity + BatchNorm', or the bare activation when there is no normalization."""
    a = label(activation)
    return a if norm == "none" else f"{a} + {label(norm)}"


def network(activation: str, norm: str) -> str:
    """Like `composition`, but the network without any nonlinearity is named for what it is."""
    return (
        "deep linear (identity)"
        if (activation, norm) == vocab.LINEAR
        else composition(activation, norm)
    )


def ordered(values, order) -> list:
    """The distinct `values` in the order of `order` (a dict or sequence); unknown ones last."""
    order = list(order)
    return sorted(
        dict.fromkeys(values), key=lambda v: (order.index(v) if v in order else len(order), str(v))
    )


def canonical(frame: pd.DataFrame, by) -> pd.DataFrame:
    """`frame` sorted by `by`, with datasets, activations, norms, experiments in the study's order."""

    def key(col: pd.Series) -> pd.Series:
        if col.name not in ORDER:
            return col
        order = list(ORDER[col.name])
        return col.map(lambda v: order.index(v) if v in order else len(order))

    return frame.sort_values(list(by), key=key, kind="stable")


def join_words(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
