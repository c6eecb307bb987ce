"""Run records on disk: atomic writes (temp file + rename), so a killed job leaves no half file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` (`.NAME.*.tmp`, same file system) to write to; when the
    block ends normally it is renamed onto `path` (atomic), otherwise it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `df` to `path` atomically."""
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """Write arrays to an .npz file atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `df` to `path` as CSV atomically; list columns become JSON lists."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            df[col] = df[col].map(lambda v: json.dumps([float(x) for x in v]))
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)


def remove_partial_files(root: str | os.PathLike) -> list[Path]:
    """Delete the temp files (`.NAME.*.tmp`) that killed writers left under `root`.

    Writers here and in bnstudy.data create their temp file beside the target and rename it into
    place, so a SIGKILL can leave only such a temp file, never a half-written target. The
    workflow calls this when it starts, before any job runs.
    """
    removed = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                path = Path(dirpath) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# Aggregation: run files of the cells -> metrics (one row per experiment x cell x seed x lr)
# and history (one row per experiment x cell x seed x lr x epoch).
# ---------------------------------------------------------------------------------------------

CELL_KEYS = ["dataset", "activation", "norm", "placement", "depth", "width"]
ROW_KEYS = ["experiment", *CELL_KEYS, "seed", "lr"]
# Wall-clock columns differ between two runs of the same study; they stay out of metrics so that
# a resumed run reproduces it bit for bit (compute time: results/benchmarks/).
WALL_CLOCK = ["train_seconds"]


def select_lr(runs: pd.DataFrame) -> pd.Series:
    """Mark the selected learning rate of each cell (bool Series aligned with `runs`).

    Per cell, a learning rate is eligible if none of its seeds diverged (if every learning rate
    had a diverged seed, all are eligible). Among the eligible ones the selected learning rate
    has the highest validation accuracy averaged over seeds (NaN counts as 0); ties go to the
    smaller learning rate. Every seed's row of the selected learning rate is marked. The test
    split plays no part.
    """
    per_lr = (runs.assign(val_acc=runs["val_acc"].fillna(0.0))
              .groupby(CELL_KEYS + ["lr"], sort=True)
              .agg(val_acc=("val_acc", "mean"), diverged=("diverged", "any"))
              .reset_index())
    any_stable = per_lr.groupby(CELL_KEYS)["diverged"].transform(lambda d: (~d).any())
    eligible = per_lr[~per_lr["diverged"] | ~any_stable]
    # highest mean val_acc, then smallest lr: sort and take the first of each cell
    best = (eligible.sort_values(CELL_KEYS + ["val_acc", "lr"],
                                 ascending=[True] * len(CELL_KEYS) + [False, True], kind="stable")
            .drop_duplicates(CELL_KEYS)[CELL_KEYS + ["lr"]])
    key = pd.MultiIndex.from_frame(runs[CELL_KEYS + ["lr"]])
    return pd.Series(key.isin(pd.MultiIndex.from_frame(best)), index=runs.index, name="selected")


def _check_cell(df: pd.DataFrame, cell, path) -> None:
    for k in CELL_KEYS:
        values = set(df[k].tolist())
        if values != {getattr(cell, k)}:
            raise ValueError(f"{path}: column {k} holds {sorted(values)}, expected {getattr(cell, k)!r}")


def _decimal_lr(df: pd.DataFrame) -> pd.DataFrame:
    """Learning rates as the float64 of their shortest decimal: the trainer stores float32, whose
    0.003 is 0.0030000000260770321 in float64; the config's 0.003 is what the tables show."""
    lrs = {v: float(str(np.float32(v))) for v in df["lr"].unique()}
    return df.assign(lr=df["lr"].map(lrs).astype("float64"))


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sort rows by `keys`, names in the study's canonical order (not alphabetical)."""
    from bnstudy import grid

    order = {"experiment": grid.EXPERIMENTS, "dataset": grid.DATASETS,
             "activation": grid.ACTIVATIONS, "norm": grid.NORMS, "placement": grid.PLACEMENTS}

    def key(col: pd.Series) -> pd.Series:
        return col.map(order[col.name].index) if col.name in order else col

    return df.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def collect(experiments: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the run and history files of every cell of `experiments` (the config's section).

    Returns (metrics, history). A cell used by several experiments appears once per experiment,
    with the same numbers. Rows are sorted by experiment, cell, seed, lr (epoch).
    """
    from bnstudy import grid

    cells = grid.cells({"experiments": experiments})
    runs, hists = [], []
    for cell in cells:
        run = pd.read_parquet(cell.path(grid.RUN))
        hist = pd.read_parquet(cell.path(grid.HISTORY))
        _check_cell(run, cell, cell.path(grid.RUN))
        _check_cell(hist, cell, cell.path(grid.HISTORY))
        runs.append(run)
        hists.append(hist)
    runs = _decimal_lr(pd.concat(runs, ignore_index=True))  # absent columns (other test batch sizes) -> NaN
    runs = runs.drop(columns=[c for c in WALL_CLOCK if c in runs.columns])
    runs.insert(0, "selected", select_lr(runs))
    hist = _decimal_lr(pd.concat(hists, ignore_index=True))
    hist = hist.merge(runs[CELL_KEYS + ["seed", "lr", "selected"]], on=CELL_KEYS + ["seed", "lr"],
                      how="left", validate="many_to_one")

    membership = pd.DataFrame([{**{k: getattr(cell, k) for k in CELL_KEYS}, "experiment": e}
                               for cell, members in cells.items() for e in members])
    metrics = membership.merge(runs, on=CELL_KEYS, how="left")
    history = membership.merge(hist, on=CELL_KEYS, how="left")
    if metrics.duplicated(ROW_KEYS).any():
        raise ValueError("a run file holds the same (seed, lr) twice")

    first = ROW_KEYS + ["selected"]
    metrics = _sort(metrics[first + [c for c in metrics.columns if c not in first]], ROW_KEYS)
    history = _sort(history[first + [c for c in history.columns if c not in first]],
                    ROW_KEYS + ["epoch"])
    return metrics, history
