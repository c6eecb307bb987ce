"""Run records on disk: atomic writes (temp file + rename), so a killed job leaves no half file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def atomic_path(path: str | os.PathLike):
    """Context-free helper: a temp path beside `path` (same filesystem, so os.replace is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `df` to `path` atomically."""
    tmp = atomic_path(path)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """Write arrays to an .npz file atomically."""
    tmp = atomic_path(path)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
