"""Results on disk: atomic writes, the tables of one trained cell, and their aggregation.

- Every file the pipeline writes goes through `atomic_output` (a temp file `.NAME.*.tmp` beside
  the target, renamed into place), so a killed job leaves no half file, only a temp file that
  `remove_partial_files` deletes when the next run starts.
- `run_tables`: what the trainer and the probes measured on one cell -> its tidy tables.
- `collect`: the cell files of a config -> the study's tables (metrics, history, batchstats,
  layers), with the selected learning rate of every cell marked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from bnstudy import vocab

TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` (`.NAME.*.tmp`, same file system) to write to; when the
    block ends normally it is renamed onto `path` (atomic), otherwise it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
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
    """Write `df` to `path` as CSV atomically."""
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def remove_partial_files(root: str | os.PathLike) -> list[Path]:
    """Delete the temp files (`.NAME.*.tmp`) that killed writers left under `root`.

    Every writer uses `atomic_output`, so a SIGKILL can leave only such a temp file, never a
    half-written target. The workflow calls this when it starts, before any job runs.
    """
    removed = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                path = Path(dirpath) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# One trained cell -> its run tables (one row per seed x lr; long tables beside it)
# ---------------------------------------------------------------------------------------------

CELL_KEYS = list(vocab.CELL_KEYS)
RUN_KEYS = list(vocab.RUN_KEYS)
ROW_KEYS = ["experiment", *RUN_KEYS]
# Wall-clock columns differ between two runs of the same study; they stay out of metrics so that
# a resumed run reproduces it bit for bit (compute time: results/benchmarks/).
WALL_CLOCK = ["train_seconds"]


def _batch_rows(models: pd.DataFrame, record: dict) -> pd.DataFrame:
    """The rows of one batch-statistics record: one per model it was measured on."""
    record = dict(record)
    which = models.iloc[record.pop("models", np.arange(len(models)))].reset_index(drop=True)
    values = {k: np.broadcast_to(v, len(which)) for k, v in record.items()}
    return pd.concat([which, pd.DataFrame(values)], axis=1)


def run_frame(ident: dict, seeds, lrs, scalars: dict) -> pd.DataFrame:
    """The run table of `run_tables` (one row per model: the cell keys, seed, lr, `scalars`)."""
    models = pd.DataFrame({**ident, "seed": np.asarray(seeds), "lr": np.asarray(lrs, np.float64)})
    return pd.concat([models, pd.DataFrame(scalars)], axis=1)


def run_tables(
    ident: dict,
    seeds,
    lrs,
    scalars: dict,
    batch: list[dict],
    grads: list[dict],
    history: dict[str, np.ndarray],
) -> dict[str, pd.DataFrame]:
    """The tables of one trained cell, from what `bnstudy.probes.measure` and the trainer return.

    `ident`: the cell keys (plus groups); `seeds`, `lrs`: one entry per model; `scalars`: column
    -> (models,); `batch`: batch-statistics records (each of the models it lists under
    "models", all models if absent; values (models,) or scalars); `grads`: records of gradient
    norms at initialization, each {"grad_batch_size": b, "draws": batches averaged over, "norms":
    (models, layers), "input_rank": (models,) rank of the centred training inputs}; `history`:
    column -> (epochs, models). Returns run (one row per model), history (x epoch), batchstats
    (x test batch size x composition) and layers (x gradient batch size x layer).
    """
    run = run_frame(ident, seeds, lrs, scalars)
    models = run[[*ident, "seed", "lr"]]
    m = len(models)
    epochs = next(iter(history.values())).shape[0]
    hist = pd.concat(
        [
            models.loc[np.tile(np.arange(m), epochs)].reset_index(drop=True),
            pd.DataFrame(
                {
                    "epoch": np.repeat(np.arange(1, epochs + 1), m),
                    **{k: np.asarray(v).ravel() for k, v in history.items()},
                }
            ),
        ],
        axis=1,
    )
    batchstats = pd.concat(
        [_batch_rows(models, r) for r in batch]
        or [
            models.iloc[:0].assign(
                test_batch_size=0,
                full=False,
                composition="",
                accuracy=0.0,
                flip_rate=0.0,
                flip_rate_confident=0.0,
            )
        ],
        ignore_index=True,
    )
    layers = pd.concat(
        [
            pd.concat(
                [
                    models.loc[np.repeat(np.arange(m), g["norms"].shape[1])].reset_index(drop=True),
                    pd.DataFrame(
                        {
                            "grad_batch_size": g["grad_batch_size"],
                            "draws": g["draws"],
                            "input_rank": np.repeat(g["input_rank"], g["norms"].shape[1]),
                            "layer": np.tile(np.arange(g["norms"].shape[1]), m),
                            "grad_norm_init": np.asarray(g["norms"], np.float64).ravel(),
                        }
                    ),
                ],
                axis=1,
            )
            for g in grads
        ],
        ignore_index=True,
    )
    return {
        "run": run,
        "history": _sort(hist, RUN_KEYS + ["epoch"]),
        "batchstats": _sort(batchstats, RUN_KEYS + ["full", "test_batch_size", "composition"]),
        "layers": _sort(layers, RUN_KEYS + ["grad_batch_size", "layer"]),
    }


# ---------------------------------------------------------------------------------------------
# Aggregation: the run files of the cells -> the study's tables, one row per experiment x run
# (x epoch, x test batch, x layer).
# ---------------------------------------------------------------------------------------------


def select_lr(runs: pd.DataFrame) -> pd.Series:
    """Mark the selected learning rate of each cell (bool Series aligned with `runs`).

    Per cell, a learning rate is eligible if none of its seeds diverged (if every learning rate
    had a diverged seed, all are eligible). Among the eligible ones the selected learning rate
    has the highest validation accuracy averaged over seeds (NaN counts as 0); ties go to the
    smaller learning rate. Every seed's row of the selected learning rate is marked. The test
    split plays no part.
    """
    per_lr = (
        runs.assign(val_acc=runs["val_acc"].fillna(0.0))
        .groupby(CELL_KEYS + ["lr"], sort=True)
        .agg(val_acc=("val_acc", "mean"), diverged=("diverged", "any"))
        .reset_index()
    )
    any_stable = per_lr.groupby(CELL_KEYS)["diverged"].transform(lambda d: (~d).any())
    eligible = per_lr[~per_lr["diverged"] | ~any_stable]
    # highest mean val_acc, then smallest lr: sort and take the first of each cell
    best = eligible.sort_values(
        CELL_KEYS + ["val_acc", "lr"],
        ascending=[True] * len(CELL_KEYS) + [False, True],
        kind="stable",
    ).drop_duplicates(CELL_KEYS)[CELL_KEYS + ["lr"]]
    key = pd.MultiIndex.from_frame(runs[CELL_KEYS + ["lr"]])
    return pd.Series(key.isin(pd.MultiIndex.from_frame(best)), index=runs.index, name="selected")


def selected(run: pd.DataFrame) -> np.ndarray:
    """Per row of a `bnstudy train` run table (float32 rates, as the trainer stores them):
    whether it is of its cell's selected learning rate (`select_lr`, as `collect` marks it)."""
    return select_lr(_decimal_lr(run)).to_numpy()


def edge_extension(run: pd.DataFrame, tried, steps: int = 2) -> tuple[list[float], list[str]]:
    """What a family whose runs are `run` (the `bnstudy train` table; every rate in `tried`)
    trains next: for each cell whose selected rate (`select_lr`) is the largest tried, the next
    `steps` rates of the grid's geometric progression above it (ratio: the two largest rates; 3
    if only one was tried); likewise below the smallest. Returns (the rates, sorted, without
    those already tried; the activations of the cells that selected an edge), ([], []) when none
    did."""
    grid = sorted({float(x) for x in tried})
    up = grid[-1] / grid[-2] if len(grid) > 1 else 3.0
    down = grid[1] / grid[0] if len(grid) > 1 else 3.0
    chosen = _decimal_lr(run)[selected(run)].drop_duplicates(CELL_KEYS)
    top = chosen[np.isclose(chosen["lr"], grid[-1])]
    bottom = chosen[np.isclose(chosen["lr"], grid[0])]
    more = set()
    if len(top):
        more |= {float(f"{grid[-1] * up**k:.3g}") for k in range(1, steps + 1)}
    if len(bottom):
        more |= {float(f"{grid[0] / down**k:.3g}") for k in range(1, steps + 1)}
    more = sorted(lr for lr in more if not any(np.isclose(lr, t) for t in grid))
    activations = list(dict.fromkeys([*top["activation"], *bottom["activation"]]))
    return (more, activations) if more else ([], [])


def _decimal_lr(df: pd.DataFrame) -> pd.DataFrame:
    """Learning rates as the float64 of their shortest decimal: the trainer stores float32, whose
    0.003 is 0.0030000000260770321 in float64; the config's 0.003 is what the tables show."""
    lrs = {v: float(str(np.float32(v))) for v in df["lr"].unique()}
    return df.assign(lr=df["lr"].map(lrs).astype("float64"))


ORDER = {
    "experiment": tuple(vocab.EXPERIMENTS),
    "dataset": tuple(vocab.DATASETS),
    "activation": tuple(vocab.ACTIVATIONS),
    "norm": tuple(vocab.NORMS),
    "placement": tuple(vocab.PLACEMENTS),
}


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sort rows by `keys`, names in the study's canonical order (not alphabetical)."""

    def key(col: pd.Series) -> pd.Series:
        return col.map(ORDER[col.name].index) if col.name in ORDER else col

    return df.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def _read_cells(paths: list[str], cells: dict, complete: bool = True) -> pd.DataFrame:
    """Concatenate the files of the cells (one file may hold a family of cells). Every cell in
    them must be one of `cells` (cell -> experiments) and in one file only; with `complete`,
    together they must hold every cell (else a file may hold none: a probe that did not apply)."""
    frames, seen = [], {}
    for path in paths:
        df = pd.read_parquet(path)
        for cell in map(tuple, df[CELL_KEYS].drop_duplicates().itertuples(index=False)):
            if cell not in cells:
                raise ValueError(f"{path}: cell {cell} is not in the configured experiments")
            if cell in seen:
                raise ValueError(f"{path}: cell {cell} is also in {seen[cell]}")
            seen[cell] = path
        frames.append(df)
    missing = set(cells) - set(seen)
    if complete and missing:
        raise ValueError(f"no file given for the cells {sorted(missing)}")
    filled = [f for f in frames if len(f)]
    if not filled:  # no cell has rows of this kind: the empty table, with the files' columns
        return frames[0].iloc[:0] if frames else pd.DataFrame(columns=RUN_KEYS)
    return pd.concat(filled, ignore_index=True)  # absent columns -> NaN


def collect(
    experiments: dict, files: dict[str, list[str]], training: dict | None = None
) -> dict[str, pd.DataFrame]:
    """The study's tables from the cell files of the configured experiments.

    `experiments`: the config's section (which experiments use which cells); `training`: its
    training section (the batch size and groups of cells whose blocks do not set them); `files`: kind
    ("run", "history", "batchstats", "layers") -> the files of that kind (one per training job).
    Returns "metrics" (one row per experiment x run, the selected learning rate marked) and
    "history", "batchstats", "layers" (the same rows x epoch / test batch / layer). A cell used
    by several experiments appears once per experiment, with the same numbers.
    """
    from bnstudy import grid

    cells = {
        tuple(getattr(c, k) for k in CELL_KEYS): m
        for c, m in grid.cells({"experiments": experiments, "training": training or {}}).items()
    }
    runs = _decimal_lr(_read_cells(files["run"], cells))
    runs = runs.drop(columns=[c for c in WALL_CLOCK if c in runs.columns])
    if runs.duplicated(RUN_KEYS).any():
        raise ValueError("a run file holds the same (seed, lr) twice")
    runs.insert(0, "selected", select_lr(runs))
    membership = pd.DataFrame(
        [(*cell, e) for cell, members in cells.items() for e in members],
        columns=[*CELL_KEYS, "experiment"],
    )
    first = ROW_KEYS + ["selected"]
    out = {
        "metrics": _sort(
            membership.merge(runs, on=CELL_KEYS, how="left").pipe(
                lambda d: d[first + [c for c in d.columns if c not in first]]
            ),
            ROW_KEYS,
        )
    }
    extra = {
        "history": ["epoch"],
        "batchstats": ["full", "test_batch_size", "composition"],
        "layers": ["grad_batch_size", "layer"],
    }
    for kind, keys in extra.items():
        table = _decimal_lr(_read_cells(files[kind], cells, complete=kind == "history"))
        table = table.merge(
            runs[RUN_KEYS + ["selected"]], on=RUN_KEYS, how="left", validate="many_to_one"
        )
        table = membership.merge(table, on=CELL_KEYS, how="inner")
        out[kind] = _sort(
            table[first + [c for c in table.columns if c not in first]], ROW_KEYS + keys
        )
    return out


# ---------------------------------------------------------------------------------------------
# Reading the study's tables back, by their input names (vocab.INPUTS)
# ---------------------------------------------------------------------------------------------


def read_benchmarks(files) -> pd.DataFrame:
    """Snakemake benchmark TSVs, one row per file, with the file's path as given in `file`."""
    frames = [pd.read_csv(f, sep="\t").assign(file=str(f)) for f in files]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["file", "s", "max_rss"])
    )


def read_reference(paths: list[str]) -> pd.DataFrame:
    """The linear-reference files of the datasets (one row per dataset x seed) as one table."""
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=["dataset", "seed", "test_acc"])
    out = pd.concat(frames, ignore_index=True)
    if out.duplicated(["dataset", "seed"]).any():
        raise ValueError("the reference files hold a (dataset, seed) twice")
    return _sort(out, ["dataset", "seed"])


def read_inputs(paths: dict) -> dict:
    """Input name (vocab.INPUTS) -> its table, for the given paths (name -> path or list of paths).

    Parquet and CSV tables are read as DataFrames, benchmark files as one DataFrame, boundary
    files stay a list of paths (the figure opens the ones it draws)."""
    readers = {"benchmarks": read_benchmarks, "boundaries": list}
    out = {}
    for name, path in paths.items():
        if name not in vocab.INPUTS:
            raise ValueError(f"unknown input {name!r}; valid: {', '.join(vocab.INPUTS)}")
        if name in readers:
            out[name] = readers[name](path)
        elif str(path).endswith(".csv"):
            out[name] = pd.read_csv(path)
        else:
            out[name] = pd.read_parquet(path)
    return out
