"""Dataset registry: generate, load or download each dataset; one split per seed; train-only
standardization.

A dataset file holds a `Pool`: every example, raw, with the sizes of its splits. Each seed of
the study draws its own split from it (`split`): a stratified test split (unless the dataset has
an official one), a stratified validation split, and the inputs standardized with that train
split's statistics. So the seeds are replicates of the whole experiment, data split included,
and within one seed every network and the linear reference see the same split (paired
comparisons). Every split comes out the same way: a `Dataset` with train / validation / test
arrays (x float32 of shape (n, d); y int32 in [0, num_classes)) and a `meta` dict saying where
it came from. `pool(name)` builds a pool, `save` / `load_pool` write and read
`results/data/{name}.npz`, `load(path, seed)` and `get(name_or_path, seed)` give one split.

    spirals, xor   2-D, generated from the seed (no linear model separates them)
    mnist1d        generated offline with the mnist1d package's `make_dataset`
    digits         scikit-learn's bundled 8x8 digits
    mnist, fashion_mnist, cifar10
                   downloaded once into a cache folder, each file verified by SHA-256,
                   parsed from the native formats (IDX, CIFAR python pickle batches)
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import pickle
import random
import struct
import sys
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from bnstudy import vocab
from bnstudy.results import atomic_output

NAMES = tuple(vocab.DATASETS)  # GENERATED, digits and DOWNLOADED: tests/test_vocab.py checks

DEFAULT_CACHE_DIR = Path("results") / "cache"
DEFAULT_N_SAMPLES = {
    "spirals": 2000,
    "xor": 2000,
    "mnist1d": 5000,
}  # generated examples, train + test
DEFAULT_NOISE = {"spirals": 0.05, "xor": 0.05, "mnist1d": 0.25}  # mnist1d: its corr_noise_scale
GENERATED = tuple(DEFAULT_N_SAMPLES)  # generated from a seed
TEST_FRACTION = 0.2  # generated sets and digits: default share of examples in the test split
VAL_FRACTION = 0.2  # small sets: default validation share of the training pool
VAL_SIZE_LARGE = 5000  # mnist, fashion_mnist, cifar10: default validation examples
# Examples of the sets that are not generated, and the official test splits of the downloaded
# ones (train_size reads them; pool counts what it loads)
EXAMPLES = {"digits": 1797, "mnist": 70000, "fashion_mnist": 70000, "cifar10": 60000}
OFFICIAL_TEST = {"mnist": 10000, "fashion_mnist": 10000, "cifar10": 10000}
NUM_CLASSES = {
    "spirals": 2,
    "xor": 2,
    "mnist1d": 10,
    "digits": 10,
    "mnist": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
}
ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    meta: dict = field(default_factory=dict)

    @cached_property
    def input_rank(self) -> int:
        """The dimension of the centred training inputs, which caps that of any batch's
        representation (computed once: every family of a job reads it)."""
        return int(np.linalg.matrix_rank(self.x_train - self.x_train.mean(0)))


# ---------------------------------------------------------------------------------------------
# Downloaded datasets: where each file lives and its SHA-256. Tests point `SOURCES` at a
# loopback server; nothing else in the download path knows about tests.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    sha256: str
    urls: tuple[str, ...]  # tried in order; the first that answers is used


_MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TFDS's mirror
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)  # torchvision's mirror
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)  # Zalando's own
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CIFAR_FILE = "cifar-10-python.tar.gz"


def _remote(filename: str, sha256: str, mirrors: tuple[str, ...]) -> RemoteFile:
    return RemoteFile(filename, sha256, tuple(m + filename for m in mirrors))


# SHA-256 of the canonical files. MNIST: torchvision's prototype MNIST loader
# (pytorch/vision, torchvision/prototype/datasets/_builtin/mnist.py, _CHECKSUMS), identical in
# several independent projects that pin the storage.googleapis.com/cvdf-datasets copies.
# Fashion-MNIST: the same torchvision file (FashionMNIST._CHECKSUMS); the same values are
# listed beside Zalando's published MD5s by other projects. CIFAR-10 (python version):
# Keras' `cifar10.load_data` (get_file(..., file_hash=...)), confirmed by several projects
# that record it with the canonical size 170,498,071 bytes and MD5 c58f30108f718f92721af3b95e74349a.
SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": tuple(
        _remote(f, h, _MNIST_MIRRORS)
        for f, h in zip(
            _IDX_FILES,
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        )
    ),
    "fashion_mnist": tuple(
        _remote(f, h, _FASHION_MIRRORS)
        for f, h in zip(
            _IDX_FILES,
            (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        )
    ),
    "cifar10": (
        _remote(
            _CIFAR_FILE,
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ("https://www.cs.toronto.edu/~kriz/",),
        ),
    ),
}
DOWNLOADED = tuple(SOURCES)
_SOURCE_TEXT = {
    "mnist": "downloaded: MNIST (LeCun, Cortes & Burges), IDX files",
    "fashion_mnist": "downloaded: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), IDX files",
    "cifar10": "downloaded: CIFAR-10 (Krizhevsky 2009), python pickle batches",
}


class DownloadError(RuntimeError):
    """A file could not be fetched from any of its URLs (the message says how to place it by hand)."""


class ChecksumError(RuntimeError):
    """A downloaded file's SHA-256 differs from the one written in `SOURCES`."""


class CorruptFileError(RuntimeError):
    """A verified file cannot be parsed (truncated archive, wrong header); `path` names it."""

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pool:
    """Every example of a dataset, raw (not standardized), as the data file stores it; `split`
    draws one seed's train / validation / test split from it.

    With `fixed_test` the last `test_size` rows are the dataset's official test split (the same
    for every seed); otherwise each seed draws its own stratified test split of `test_size`."""

    name: str
    x: np.ndarray  # float32 (n, d)
    y: np.ndarray  # int32 (n,)
    num_classes: int
    test_size: int
    val_size: int
    fixed_test: bool
    meta: dict = field(default_factory=dict)


def pool(
    name: str,
    *,
    seed: int = 0,
    val_size: int | None = None,
    test_size: int | None = None,
    n_samples: int | None = None,
    noise: float | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Pool:
    """Generate, load or download dataset `name` (generated sets: from `seed`) with its split sizes."""
    _check_args(name, seed, val_size, test_size, n_samples, noise)
    seed = int(seed)  # numpy integers become plain ones, so the metadata is plain JSON
    fixed_test = name in DOWNLOADED
    if name in GENERATED:
        n_samples = DEFAULT_N_SAMPLES[name] if n_samples is None else int(n_samples)
        noise = DEFAULT_NOISE[name] if noise is None else float(noise)
        x, y, meta = _GENERATORS[name](n_samples, noise, seed)
    elif name == "digits":
        x, y, meta = _digits()
    else:
        cache_dir = Path(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)
        x_pool, y_pool, x_test, y_test, meta = _download_and_parse(name, cache_dir)
        x, y, test_size = (
            np.concatenate([x_pool, x_test]),
            np.concatenate([y_pool, y_test]),
            len(y_test),
        )
    n = len(y)
    test_size, val_size = _split_sizes(n, fixed_test, test_size, val_size)
    n_classes = NUM_CLASSES[name]
    for what, size, room in (
        ("test_size", test_size, n),
        ("val_size", int(val_size), n - test_size),
    ):
        if not n_classes <= size <= room - n_classes:
            raise ValueError(
                f"{what}={size} does not fit {name}: {room} examples of {n_classes} classes "
                f"are left to split, so {what} must be in [{n_classes}, {room - n_classes}]"
            )
    meta = {
        **meta,
        "split": (
            f"official test split ({test_size}); per seed a stratified validation split of {val_size}"
            if fixed_test
            else f"per seed a stratified test split of {test_size}, then a stratified validation "
            f"split of {val_size}"
        ),
        "standardization": "per seed: per-feature mean/std of that seed's train split (std 0 -> 1)",
    }
    return Pool(
        name,
        np.asarray(x, np.float32),
        np.asarray(y, np.int32),
        n_classes,
        test_size,
        int(val_size),
        fixed_test,
        {"name": name, "seed": seed, **meta},
    )


def _split_sizes(n: int, fixed_test: bool, test_size, val_size) -> tuple[int, int]:
    """(test_size, val_size) of a pool of `n` examples, their defaults filled in."""
    test_size = round(TEST_FRACTION * n) if test_size is None else int(test_size)
    if val_size is None:
        val_size = VAL_SIZE_LARGE if fixed_test else round(VAL_FRACTION * (n - test_size))
    return test_size, int(val_size)


def train_size(
    name: str,
    *,
    n_samples: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    noise: float | None = None,
) -> int:
    """The number of training examples `pool(name, ...)` gives each seed, known before any data
    is made (the workflow orders its training jobs by their expected cost with it); `seed` and
    `noise` do not change it (the arguments are those of `pool`, as the config's data section)."""
    if name in GENERATED:
        n = DEFAULT_N_SAMPLES[name] if n_samples is None else int(n_samples)
    else:
        n = EXAMPLES[name]
    fixed_test = name in DOWNLOADED
    test, val = _split_sizes(
        n, fixed_test, OFFICIAL_TEST[name] if fixed_test else test_size, val_size
    )
    return n - test - val


def split(p: Pool, seed: int) -> Dataset:
    """Seed `seed`'s split of `p`: stratified test (unless fixed) and validation splits drawn with
    `seed`, inputs standardized with that train split's statistics."""
    from sklearn.model_selection import train_test_split

    seed = int(seed)
    n = len(p.y)
    if p.fixed_test:
        rest, test = np.arange(n - p.test_size), np.arange(n - p.test_size, n)
    else:
        rest, test = train_test_split(
            np.arange(n), test_size=p.test_size, random_state=seed, stratify=p.y
        )
    train, val = train_test_split(rest, test_size=p.val_size, random_state=seed, stratify=p.y[rest])
    x_train, x_val, x_test = _standardize(p.x[train], p.x[val], p.x[test])
    arrays = {
        "x_train": x_train,
        "y_train": p.y[train],
        "x_val": x_val,
        "y_val": p.y[val],
        "x_test": x_test,
        "y_test": p.y[test],
    }
    _check_arrays(arrays, p.num_classes, p.name)
    meta = {
        **p.meta,
        "num_classes": p.num_classes,
        "input_dim": int(p.x.shape[1]),
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "split_seed": seed,
    }
    return Dataset(p.name, **arrays, num_classes=p.num_classes, meta=meta)


def prepare(name: str, *, split_seed: int = 0, **pool_kwargs) -> Dataset:
    """Seed `split_seed`'s split of dataset `name` (`pool_kwargs`: the options of `pool`)."""
    return split(pool(name, **pool_kwargs), split_seed)


def save(p: Pool, path: str | os.PathLike) -> None:
    """Write `p` to `path` (.npz) atomically: a temp file beside it, then os.replace."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"dataset path must end in .npz, got {str(path)!r}")
    _check_pool(p.x, p.y, p.num_classes, f"dataset {p.name!r}")
    fields = {k: getattr(p, k) for k in ("num_classes", "test_size", "val_size", "fixed_test")}
    meta = {**p.meta, "name": p.name, **fields, "arrays_sha256": _arrays_sha256(p.x, p.y)}
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), x=p.x, y=p.y)


def load_pool(path: str | os.PathLike) -> Pool:
    """Read a file written by `save`, checking its arrays against the contract and its checksum."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {str(path)!r}")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x", "y", "meta") if k not in f.files]
        if missing:
            raise ValueError(
                f"{path}: not a bnstudy dataset file, missing {missing} (expected x, y, meta)"
            )
        x, y = f["x"], f["y"]
        meta = json.loads(str(f["meta"]))
    _check_pool(x, y, int(meta["num_classes"]), str(path))
    got = _arrays_sha256(x, y)
    if got != meta.get("arrays_sha256"):
        raise ValueError(
            f"{path}: arrays do not match the checksum in its metadata "
            f"(expected {meta.get('arrays_sha256')}, got {got}); prepare it again"
        )
    fields = {k: meta[k] for k in ("num_classes", "test_size", "val_size", "fixed_test")}
    return Pool(meta["name"], x, y, **fields, meta=meta)


def load(path: str | os.PathLike, seed: int = 0) -> Dataset:
    """Seed `seed`'s split of the dataset file at `path`."""
    return split(load_pool(path), seed)


def get_pool(name_or_path: str | os.PathLike, **pool_kwargs) -> Pool:
    """The pool of `name_or_path`: an existing .npz file, or the dataset of that name."""
    p = Path(name_or_path)
    if p.suffix == ".npz" and p.is_file():
        return load_pool(p)
    if str(name_or_path) not in NAMES:
        raise ValueError(
            f"{str(name_or_path)!r} is neither an existing .npz file nor a dataset "
            f"name; valid names: {', '.join(NAMES)}"
        )
    return pool(str(name_or_path), **pool_kwargs)


def get(name_or_path: str | os.PathLike, seed: int = 0, **pool_kwargs) -> Dataset:
    """Seed `seed`'s split of `name_or_path` (see `get_pool`)."""
    return split(get_pool(name_or_path, **pool_kwargs), seed)


# ---------------------------------------------------------------------------------------------
# Checks, split, standardization, atomic writes
# ---------------------------------------------------------------------------------------------


def _check_args(name, seed, val_size, test_size, n_samples, noise) -> None:
    """Reject bad arguments before any generation or download."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be a non-negative integer below 2**32, got {seed!r}")
    for what, size in (("val_size", val_size), ("test_size", test_size)):
        if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
            raise ValueError(
                f"{what} must be a positive integer (or None for the default), got {size!r}"
            )
    if name in DOWNLOADED and test_size is not None:
        raise ValueError(f"{name} has an official test split, so test_size cannot be set")
    if name not in GENERATED:
        given = [k for k, v in (("n_samples", n_samples), ("noise", noise)) if v is not None]
        if given:
            raise ValueError(
                f"{name} is not generated, so {' and '.join(given)} cannot be set; "
                f"they apply to {', '.join(GENERATED)}"
            )
        return
    if n_samples is not None:
        minimum = 100 if name == "mnist1d" else 20
        if not isinstance(n_samples, (int, np.integer)) or n_samples < minimum:
            raise ValueError(
                f"n_samples for {name} must be an integer >= {minimum}, got {n_samples!r}"
            )
    if noise is not None and not (
        isinstance(noise, (int, float, np.number)) and np.isfinite(noise) and noise >= 0
    ):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")


def _check_arrays(arrays: dict[str, np.ndarray], num_classes: int, where: str) -> None:
    """The contract: x float32 (n, d) with one d for all splits, y int32 (n,) in [0, num_classes)."""
    dims = set()
    for split in ("train", "val", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.float32 or x.ndim != 2 or y.dtype != np.int32 or y.shape != (len(x),):
            raise ValueError(
                f"{where}: x_{split} {x.dtype}{x.shape} / y_{split} {y.dtype}{y.shape} "
                "break the contract: x float32 (n, d), y int32 (n,)"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{where}: y_{split} has labels {y.min()}..{y.max()}, outside [0, {num_classes})"
            )
        dims.add(x.shape[1])
    if len(dims) != 1:
        raise ValueError(f"{where}: the splits have different input dimensions {sorted(dims)}")


def _check_pool(x, y, num_classes: int, where: str) -> None:
    """The contract of a pool: x float32 (n, d), y int32 (n,) in [0, num_classes)."""
    if x.dtype != np.float32 or x.ndim != 2 or y.dtype != np.int32 or y.shape != (len(x),):
        raise ValueError(
            f"{where}: x {x.dtype}{x.shape} / y {y.dtype}{y.shape} break the contract: "
            "x float32 (n, d), y int32 (n,)"
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{where}: y has labels {y.min()}..{y.max()}, outside [0, {num_classes})")


def _standardize(x_train, x_val, x_test):
    """Per-feature z-scoring with training-split statistics; constant features get std 1.

    float32 throughout (StandardScaler accumulates its statistics in float64), so CIFAR-10 fits.
    """
    from sklearn.preprocessing import StandardScaler

    x_train, x_val, x_test = (np.asarray(x, dtype=np.float32) for x in (x_train, x_val, x_test))
    scaler = StandardScaler().fit(x_train)
    return tuple(scaler.transform(x) for x in (x_train, x_val, x_test))


def _arrays_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """One SHA-256 over a pool's arrays (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for k, a in (("x", x), ("y", y)):
        a = np.ascontiguousarray(a)
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Generated and bundled datasets. Each returns (x, y, meta): every example; `split` splits them.
# ---------------------------------------------------------------------------------------------


def _spirals(n_samples: int, noise: float, seed: int):
    """Two interleaved spirals, two turns each, uniform in angle, Gaussian noise of sd `noise`.

    Class 1 is class 0 rotated by pi. No linear classifier separates them: the best half-plane
    reaches ~0.59 accuracy (from the arms' ends), logistic regression lands near 0.5.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 2
    t = rng.uniform(0.0, 1.0, n_samples)
    theta = 2 * np.pi * 2 * t + np.pi * y
    x = np.stack([t * np.cos(theta), t * np.sin(theta)], axis=1)
    x = x + noise * rng.normal(size=x.shape)
    args = {"n_samples": n_samples, "noise": noise, "seed": seed, "turns": 2}
    return x, y, {"source": "generated: two spirals (bnstudy.data)", "generator_args": args}


def _xor(n_samples: int, noise: float, seed: int):
    """2x2 checkerboard (XOR): x uniform in [-1, 1]^2, label = sign(x0) != sign(x1), then Gaussian
    jitter of sd `noise` on the inputs. No linear classifier separates it: the best half-plane
    (cutting off one corner) reaches ~0.67, logistic regression's symmetric solution ~0.5."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    x = x + noise * rng.normal(size=x.shape)
    args = {"n_samples": n_samples, "noise": noise, "seed": seed}
    return (
        x,
        y,
        {"source": "generated: 2x2 checkerboard / XOR (bnstudy.data)", "generator_args": args},
    )


def _mnist1d(n_samples: int, noise: float, seed: int):
    """MNIST-1D from the package's procedural generator (never its download path).

    `noise` sets the generator's corr_noise_scale. The generator is asked for all examples
    (train_split=1.0); `split` draws the test split, stratified like the other sets.
    `make_dataset` reseeds the global `random` and `np.random` state, which is restored after.
    """
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(
        num_samples=int(n_samples), corr_noise_scale=float(noise), seed=int(seed), train_split=1.0
    )
    args.pop("url")  # the download location; never used
    saved = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    meta = {
        "source": "generated: mnist1d.data.make_dataset (Greydanus 2020), offline",
        "generator_args": args,
    }
    return d["x"], d["y"], meta


def _digits():
    """scikit-learn's bundled 8x8 digits (1,797 images)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y, {"source": "scikit-learn load_digits (UCI optical digits, bundled), offline"}


_GENERATORS = {"spirals": _spirals, "xor": _xor, "mnist1d": _mnist1d}


# ---------------------------------------------------------------------------------------------
# Downloaded datasets: fetch each file once into the cache (temp file, verify, os.replace), parse.
# ---------------------------------------------------------------------------------------------


def _download_and_parse(name: str, cache_dir: Path):
    folder = cache_dir / name
    files = SOURCES[name]
    paths = {rf.filename: _fetch(rf, folder) for rf in files}
    try:
        x_pool, y_pool, x_test, y_test = _PARSERS[name](paths)
    except CorruptFileError as e:  # verified but unusable: remove it so the next run starts clean
        e.path.unlink(missing_ok=True)
        raise
    meta = {
        "source": _SOURCE_TEXT[name],
        "urls": {rf.filename: list(rf.urls) for rf in files},
        "sha256": {rf.filename: rf.sha256 for rf in files},
    }
    return x_pool, y_pool, x_test, y_test, meta


def _fetch(rf: RemoteFile, folder: Path) -> Path:
    """Return the verified cached copy of `rf`, downloading it first if it is missing or bad."""
    path = folder / rf.filename
    if path.is_file():
        got = _sha256(path)
        if got == rf.sha256:
            return path
        print(
            f"{path}: sha256 {got} is not the expected {rf.sha256}; deleting it and downloading "
            "again",
            file=sys.stderr,
        )
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in rf.urls:
        print(f"downloading {url} -> {path}", file=sys.stderr)
        try:
            with atomic_output(path) as tmp:  # renamed into place only once verified
                _download(url, tmp)
                got = _sha256(tmp)
                if got != rf.sha256:
                    raise ChecksumError(
                        f"checksum mismatch for {rf.filename} downloaded from {url}: "
                        f"expected sha256 {rf.sha256}, got {got}; the download was deleted"
                    )
        except (OSError, http.client.HTTPException) as e:  # URLError, refused, timeout, truncated
            failures.append(f"  {url}: {e}")
            continue
        return path
    raise DownloadError(
        f"could not download {rf.filename}:\n" + "\n".join(failures) + "\n"
        f"Without network, fetch it elsewhere from one of the URLs above and place it at "
        f"{path.resolve()} (sha256 {rf.sha256}); it is verified and used on the next run."
    )


class _TruncatedDownload(OSError):
    pass


def _download(url: str, dest: Path) -> None:
    """Stream `url` into `dest`; fail if fewer bytes arrive than announced."""
    request = urllib.request.Request(url, headers={"User-Agent": "bnstudy"})
    with open(dest, "wb") as f, urllib.request.urlopen(request, timeout=60) as response:
        announced = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(1 << 20):
            f.write(chunk)
            received += len(chunk)
    if announced is not None and received != int(announced):
        raise _TruncatedDownload(f"truncated download: received {received} of {announced} bytes")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped), checked against the sizes in its own header."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (EOFError, OSError, zlib.error) as e:
        raise CorruptFileError(
            path, f"{path}: truncated or corrupt gzip archive ({e}); it was deleted"
        ) from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise CorruptFileError(
            path,
            f"{path}: not an IDX file of unsigned bytes "
            f"(header {raw[:4].hex()}, expected 000008xx); it was deleted",
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    if len(dims) != ndim or len(raw) != header + int(np.prod(dims)):
        raise CorruptFileError(
            path,
            f"{path}: truncated IDX data: header says shape {dims}, "
            f"file has {len(raw) - header} data bytes; it was deleted",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _parse_idx_set(paths: dict[str, Path]):
    """MNIST / Fashion-MNIST: official 60,000 / 10,000 split, images flattened to 784 values."""
    out = []
    for prefix in ("train", "t10k"):
        images = _read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
        labels = _read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"])
        if images.ndim != 3 or labels.shape != (len(images),):
            raise CorruptFileError(
                paths[f"{prefix}-labels-idx1-ubyte.gz"],
                f"{prefix}: {images.shape} images do not match {labels.shape} labels",
            )
        out += [images.reshape(len(images), -1), labels.astype(np.int64)]
    return tuple(out)


def _parse_cifar(paths: dict[str, Path]):
    """CIFAR-10 python version: five training batches and one test batch, each 10,000 x 3072 bytes.

    The archive's SHA-256 has been verified before anything in it is unpickled.
    """
    path = paths[_CIFAR_FILE]
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
                with tar.extractfile(f"cifar-10-batches-py/{member}") as f:
                    d = pickle.load(f, encoding="bytes")
                batches[member] = (
                    np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3072),
                    np.asarray(d[b"labels"], dtype=np.int64),
                )
    except (
        tarfile.TarError,
        EOFError,
        OSError,
        zlib.error,
        KeyError,
        pickle.UnpicklingError,
        ValueError,
    ) as e:
        raise CorruptFileError(
            path,
            f"{path}: truncated or corrupt CIFAR-10 archive "
            f"({type(e).__name__}: {e}); it was deleted",
        ) from e
    for member, (x, y) in batches.items():
        if y.shape != (len(x),):
            raise CorruptFileError(
                path, f"{path}: {member} has {len(x)} images but {len(y)} labels"
            )
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return (
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        *batches["test_batch"],
    )


_PARSERS = {"mnist": _parse_idx_set, "fashion_mnist": _parse_idx_set, "cifar10": _parse_cifar}
