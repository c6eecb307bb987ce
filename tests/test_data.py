"""Tests of the dataset layer: generators, splits, standardization, files, downloads.

Downloads are exercised for real: a small HTTP server on 127.0.0.1 serves files written here in
the native formats (gzipped IDX, a CIFAR python tar.gz), and `data.SOURCES` is pointed at it
with the checksums of those files. Nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from bnstudy import data

OFFLINE = ("spirals", "xor", "mnist1d", "digits")
SMALL = {
    "spirals": {"n_samples": 400},
    "xor": {"n_samples": 400},
    "mnist1d": {"n_samples": 500},
    "digits": {},
}
INPUT_DIM = {"spirals": 2, "xor": 2, "mnist1d": 40, "digits": 64}


def rows(x):
    return {r.tobytes() for r in x}


# ---------------------------------------------------------------------------------------------
# Names and argument checks
# ---------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_ones():
    for call in (lambda: data.prepare("imagenet"), lambda: data.get("imagenet")):
        with pytest.raises(ValueError) as e:
            call()
        assert "imagenet" in str(e.value)
        assert all(name in str(e.value) for name in data.NAMES)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"val_size": 0}, ["val_size", "positive"]),
        ({"val_size": 10_000}, ["val_size=10000", "[2, "]),
        ({"n_samples": 5}, ["n_samples", ">= 20"]),
        ({"noise": -0.1}, ["noise", ">= 0"]),
        ({"seed": -1}, ["seed", "non-negative"]),
    ],
)
def test_bad_arguments_name_the_problem_and_the_valid_range(kwargs, words):
    with pytest.raises(ValueError) as e:
        data.prepare("spirals", **{"n_samples": 200, **kwargs})
    assert all(w in str(e.value) for w in words), str(e.value)


def test_generator_arguments_are_refused_for_real_datasets(tmp_path):
    with pytest.raises(ValueError, match="digits is not generated, so n_samples cannot be set"):
        data.prepare("digits", n_samples=100)
    with pytest.raises(ValueError, match="mnist is not generated, so noise cannot be set"):
        data.prepare("mnist", noise=0.1, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any download


# ---------------------------------------------------------------------------------------------
# Offline datasets: shapes, balance, determinism, disjoint splits, train-only standardization
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline():
    return {name: data.prepare(name, **SMALL[name]) for name in OFFLINE}


@pytest.mark.parametrize("name", OFFLINE)
def test_shapes_dtypes_and_metadata(offline, name):
    ds = offline[name]
    d = INPUT_DIM[name]
    sizes = ds.meta["sizes"]
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.dtype == np.float32 and x.shape == (sizes[split], d)
        assert y.dtype == np.int32 and y.shape == (sizes[split],)
        assert 0 <= y.min() and y.max() < ds.num_classes
    assert ds.num_classes == data.NUM_CLASSES[name] == ds.meta["num_classes"]
    assert ds.meta["input_dim"] == d and ds.meta["source"]
    n = SMALL[name].get("n_samples", 1797)
    assert sum(sizes.values()) == n
    assert sizes["test"] == round(0.2 * n)
    assert sizes["val"] == round(0.2 * (n - sizes["test"]))  # default: 20% of the training pool


@pytest.mark.parametrize("name", OFFLINE)
def test_classes_are_balanced_in_every_split(offline, name):
    ds = offline[name]
    for y in (ds.y_train, ds.y_val, ds.y_test):
        counts = np.bincount(y, minlength=ds.num_classes)
        expected = len(y) / ds.num_classes
        assert counts.min() > 0.75 * expected and counts.max() < 1.25 * expected, counts


@pytest.mark.parametrize("name", OFFLINE)
def test_same_seed_same_bytes_other_seed_other_split(offline, name):
    again = data.prepare(name, **SMALL[name])
    for k in data.ARRAYS:
        assert getattr(again, k).tobytes() == getattr(offline[name], k).tobytes()
    assert again.meta == offline[name].meta
    other = data.prepare(name, split_seed=1, **SMALL[name])
    assert not np.array_equal(other.x_val, offline[name].x_val)
    assert not np.array_equal(other.y_test, offline[name].y_test)  # each seed its own test split


@pytest.mark.parametrize("name", ("spirals", "xor", "mnist1d"))
def test_splits_are_disjoint(offline, name):
    ds = offline[name]  # continuous inputs: every example is a distinct row
    train, val, test = rows(ds.x_train), rows(ds.x_val), rows(ds.x_test)
    assert (
        len(train) == len(ds.x_train) and len(val) == len(ds.x_val) and len(test) == len(ds.x_test)
    )
    assert not (train & val) and not (train & test) and not (val & test)


def test_each_seed_splits_the_same_examples_its_own_way():
    p = data.pool("spirals", n_samples=400)
    a, b = data.split(p, 0), data.split(p, 1)
    for ds, seed in ((a, 0), (b, 1)):
        assert ds.meta["sizes"] == {"train": 256, "val": 64, "test": 80}
        assert ds.meta["split_seed"] == seed
        labels = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
        assert np.array_equal(np.bincount(labels), np.bincount(p.y))  # every example, once
    assert not np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.y_val, b.y_val)
    assert data.split(p, 0).x_test.tobytes() == a.x_test.tobytes()  # the same seed, the same split


@pytest.mark.parametrize("name", OFFLINE)
def test_standardized_with_training_statistics_only(offline, name):
    ds = offline[name]
    varying = ds.x_train.std(0) > 0  # digits has pixels that are always 0 in the train split
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0)[varying], 1, atol=1e-4)
    # Statistics from all splits would leave the training mean off zero; from train only, the
    # held-out splits' means are off zero by sampling error.
    assert np.abs(ds.x_val.mean(0)[varying]).max() > 1e-3
    assert np.abs(ds.x_test.mean(0)[varying]).max() > 1e-3


def best_half_plane_accuracy(x, y, n_directions=360):
    """The best accuracy any linear classifier (any direction, any threshold) reaches on (x, y)."""
    angles = np.linspace(0, np.pi, n_directions, endpoint=False)
    projections = x @ np.stack([np.cos(angles), np.sin(angles)])  # (n, directions)
    ys = y[np.argsort(projections, axis=0)]  # labels in order along each direction
    zeros_below = np.vstack([np.zeros(n_directions), np.cumsum(ys == 0, axis=0)])
    ones_below = np.vstack([np.zeros(n_directions), np.cumsum(ys == 1, axis=0)])
    acc = (zeros_below + ones_below[-1] - ones_below) / len(y)  # class 1 above the threshold
    return max(acc.max(), (1 - acc).max())


@pytest.mark.parametrize("name, linear_ceiling", [("spirals", 0.65), ("xor", 0.75)])
def test_no_linear_model_separates_the_2d_sets_a_nonlinear_one_does(name, linear_ceiling):
    ds = data.prepare(name)
    assert best_half_plane_accuracy(ds.x_train, ds.y_train) < linear_ceiling
    assert best_half_plane_accuracy(np.array([[0.0, 1], [0, 2], [0, 3]]), np.array([0, 1, 1])) == 1
    logistic = LogisticRegression().fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    knn = KNeighborsClassifier(5).fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    assert logistic < linear_ceiling and knn > 0.9, (logistic, knn)


def test_generated_sizes_and_noise_are_configurable():
    small = data.prepare("spirals", n_samples=200, noise=0.0, val_size=30)
    assert small.meta["sizes"] == {"train": 130, "val": 30, "test": 40}
    assert small.meta["generator_args"] == {"n_samples": 200, "noise": 0.0, "seed": 0, "turns": 2}
    noisy = data.prepare("spirals", n_samples=200, noise=0.5, val_size=30)
    assert not np.array_equal(small.x_train, noisy.x_train)


def test_mnist1d_uses_the_offline_generator_with_our_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the package's download path would leave mnist1d_data.pkl here
    state = np.random.get_state()
    ds = data.prepare("mnist1d", n_samples=1000, noise=0.1, seed=3, val_size=100)
    assert ds.meta["sizes"] == {"train": 700, "val": 100, "test": 200}
    args = ds.meta["generator_args"]
    assert (args["num_samples"], args["corr_noise_scale"], args["seed"]) == (1000, 0.1, 3)
    assert "url" not in args
    assert not any(tmp_path.iterdir())
    after = np.random.get_state()  # make_dataset reseeds the global RNG; we put it back
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


# ---------------------------------------------------------------------------------------------
# Files: save, load, get, the CLI
# ---------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_exact_and_atomic(tmp_path):
    p = data.pool("mnist1d", **SMALL["mnist1d"])
    path = tmp_path / "sub" / "mnist1d.npz"
    data.save(p, path)
    data.save(p, path)  # overwriting is fine
    assert [f.name for f in path.parent.iterdir()] == ["mnist1d.npz"]  # no temp file left behind
    back = data.load_pool(path)
    assert back.name == "mnist1d" and back.num_classes == 10
    assert (back.test_size, back.val_size, back.fixed_test) == (p.test_size, p.val_size, False)
    assert back.x.tobytes() == p.x.tobytes() and back.y.tobytes() == p.y.tobytes()
    for seed in (0, 3):  # a seed's split of the file is that seed's split of the pool
        a, b = data.load(path, seed), data.split(p, seed)
        for k in data.ARRAYS:
            assert getattr(a, k).tobytes() == getattr(b, k).tobytes()
    with np.load(path) as f:
        assert json.loads(str(f["meta"]))["generator_args"]["num_samples"] == 500


def test_load_rejects_tampered_missing_and_foreign_files(tmp_path):
    path = tmp_path / "spirals.npz"
    data.save(data.pool("spirals", n_samples=400), path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x"] = arrays["x"] + np.float32(1.0)
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="do not match the checksum"):
        data.load(tmp_path / "tampered.npz")
    np.savez(tmp_path / "foreign.npz", z=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        data.load(tmp_path / "foreign.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load(tmp_path / "nope.npz")


def test_save_enforces_the_contract(tmp_path):
    p = data.pool("spirals", n_samples=400)
    bad = dataclasses.replace(p, x=p.x.astype(np.float64))
    with pytest.raises(ValueError, match="x float32"):
        data.save(bad, tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        data.save(p, tmp_path / "spirals.npy")
    assert not any(tmp_path.iterdir())


def test_split_sizes_must_fit_the_pool():
    with pytest.raises(ValueError, match="test_size=399 does not fit spirals"):
        data.pool("spirals", n_samples=400, test_size=399)
    with pytest.raises(ValueError, match="official test split"):
        data.pool("mnist", test_size=100)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mnist1d", dict(n_samples=600, test_size=100, val_size=50)),
        ("spirals", dict(n_samples=300)),
        ("digits", {}),
    ],
)
def test_train_size_is_known_before_the_data_are_made(name, kwargs):
    assert data.train_size(name, **kwargs) == len(data.prepare(name, **kwargs).y_train)


def test_train_size_of_a_downloaded_set_leaves_out_its_official_test_split():
    # MNIST: 70,000 images, the official 10,000 test images, 5,000 for validation by default
    assert data.train_size("mnist") == 55000
    assert data.train_size("cifar10", val_size=1000) == 49000


def test_get_loads_a_path_and_prepares_a_name(offline, tmp_path):
    path = tmp_path / "xor.npz"
    data.save(data.pool("xor", n_samples=400), path)
    for ds in (data.get(path), data.get(str(path)), data.get("xor", n_samples=400)):
        for k in data.ARRAYS:
            assert getattr(ds, k).tobytes() == getattr(offline["xor"], k).tobytes()
        assert ds.meta["sizes"] == offline["xor"].meta["sizes"]
    with pytest.raises(ValueError, match="neither an existing .npz file nor a dataset name"):
        data.get(tmp_path / "missing.npz")


def _bnstudy():
    exe = shutil.which("bnstudy")
    return [exe] if exe else [sys.executable, "-m", "bnstudy.cli"]


def test_cli_prepare_data_writes_a_loadable_file_once(tmp_path):
    out = tmp_path / "data" / "spirals.npz"
    cmd = [
        *_bnstudy(),
        "prepare-data",
        "spirals",
        "--out",
        str(out),
        "--n-samples",
        "300",
        "--val-size",
        "40",
        "--seed",
        "2",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    ds = data.load(out)
    assert ds.meta["sizes"] == {"train": 200, "val": 40, "test": 60} and ds.meta["seed"] == 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "nothing to do" in second.stderr
    bad = subprocess.run(
        [*_bnstudy(), "prepare-data", "imagenet", "--out", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "valid names: spirals, xor" in bad.stderr
    assert not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------------------------------------
# Downloads against a loopback HTTP server
# ---------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncated: set[str] = set()  # served with the full Content-Length but half the body
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(
            body[: len(body) // 2] if self.path.lstrip("/") in self.truncated else body
        )

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.truncated, _Handler.requests = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield _Handler, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def refused_url():
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def idx_gz(a: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return gzip.compress(header + a.astype(np.uint8).tobytes(), mtime=0)


def fake_images(n, shape, offset, rng):
    """uint8 images whose first pixel is offset + index, so each can be traced after the split."""
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = offset + np.arange(n)
    return x


def fake_mnist(rng, n_train=40, n_test=20):
    x_pool, x_test = fake_images(n_train, (28, 28), 0, rng), fake_images(n_test, (28, 28), 100, rng)
    y_pool, y_test = np.arange(n_train) % 10, np.arange(n_test) % 10
    files = dict(zip(data._IDX_FILES, map(idx_gz, (x_pool, y_pool, x_test, y_test))))
    return files, (x_pool.reshape(n_train, -1), y_pool, x_test.reshape(n_test, -1), y_test)


def fake_cifar(rng, per_batch=10):
    batches = {
        f"data_batch_{i}": fake_images(per_batch, (3072,), (i - 1) * per_batch, rng)
        for i in range(1, 6)
    }
    batches["test_batch"] = fake_images(per_batch, (3072,), 100, rng)
    labels = list(np.arange(per_batch) % 10)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, x in {**batches, "batches.meta": None}.items():
            d = (
                {b"label_names": [b"airplane"]}
                if x is None
                else {
                    b"batch_label": name.encode(),
                    b"labels": [int(v) for v in labels],
                    b"data": x,
                    b"filenames": [b"%d.png" % i for i in range(len(x))],
                }
            )
            payload = pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    raw = (np.concatenate(train), np.tile(labels, 5), batches["test_batch"], np.array(labels))
    return {data._CIFAR_FILE: buf.getvalue()}, raw


def point_sources(monkeypatch, name, files, urls, sha=None):
    """Patch the expected data only: each file's URLs and SHA-256 (default: the true one)."""
    table = tuple(
        data.RemoteFile(f, (sha or {}).get(f, sha256(b)), tuple(u + f for u in urls))
        for f, b in files.items()
    )
    monkeypatch.setitem(data.SOURCES, name, table)


def cache_files(cache_dir):
    return sorted(p.name for p in cache_dir.rglob("*") if p.is_file())


def assert_parsed_exactly(ds, raw):
    """Trace each example back through its first pixel; check labels and train-only z-scoring."""
    x_pool, y_pool, x_test, y_test = (np.asarray(a) for a in raw)
    order = np.argsort(np.concatenate([ds.x_train[:, 0], ds.x_val[:, 0]]))
    index = np.empty(len(order), dtype=int)
    index[order] = np.arange(len(order))  # z-scoring is increasing, so ranks give the raw index
    train_idx, val_idx = index[: len(ds.x_train)], index[len(ds.x_train) :]
    raw_train = x_pool[train_idx].astype(np.float64)
    mean, std = raw_train.mean(0), raw_train.std(0)
    std[std == 0] = 1
    for x, raw_x in ((ds.x_train, raw_train), (ds.x_val, x_pool[val_idx]), (ds.x_test, x_test)):
        np.testing.assert_allclose(x, (raw_x - mean) / std, atol=1e-4)
    assert np.array_equal(ds.y_train, y_pool[train_idx])
    assert np.array_equal(ds.y_val, y_pool[val_idx])
    assert np.array_equal(ds.y_test, y_test)


@pytest.mark.parametrize("name", ("mnist", "fashion_mnist", "cifar10"))
def test_good_download_parses_to_the_right_arrays_and_is_cached(
    name, server, refused_url, monkeypatch, tmp_path
):
    handler, url = server
    files, raw = (
        fake_cifar(np.random.default_rng(0))
        if name == "cifar10"
        else fake_mnist(np.random.default_rng(0))
    )
    handler.files.update(files)
    point_sources(monkeypatch, name, files, [refused_url, url])  # the first mirror is down
    ds = data.prepare(name, cache_dir=tmp_path, val_size=10)
    assert ds.x_train.shape[1] == (3072 if name == "cifar10" else 784)
    assert ds.meta["sizes"]["val"] == 10 and ds.meta["sha256"] == {
        f: sha256(b) for f, b in files.items()
    }
    assert_parsed_exactly(ds, raw)
    assert cache_files(tmp_path) == sorted(files)
    n_requests = len(handler.requests)
    again = data.prepare(name, cache_dir=tmp_path, val_size=10)
    assert len(handler.requests) == n_requests  # verified cache, nothing downloaded again
    assert all(getattr(again, k).tobytes() == getattr(ds, k).tobytes() for k in data.ARRAYS)


def test_wrong_checksum_names_the_file_and_both_hashes_and_deletes_it(
    server, monkeypatch, tmp_path
):
    handler, url = server
    files, _ = fake_mnist(np.random.default_rng(0))
    handler.files.update(files)
    first = data._IDX_FILES[0]
    point_sources(monkeypatch, "mnist", files, [url], sha={first: "ab" * 32})
    with pytest.raises(data.ChecksumError) as e:
        data.prepare("mnist", cache_dir=tmp_path, val_size=10)
    message = str(e.value)
    assert first in message and "ab" * 32 in message and sha256(files[first]) in message
    assert cache_files(tmp_path) == []


def test_bad_cached_file_is_replaced_by_a_fresh_download(server, monkeypatch, tmp_path):
    handler, url = server
    files, raw = fake_cifar(np.random.default_rng(1))
    handler.files.update(files)
    point_sources(monkeypatch, "cifar10", files, [url])
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / data._CIFAR_FILE).write_bytes(b"not the archive")
    assert_parsed_exactly(data.prepare("cifar10", cache_dir=tmp_path, val_size=10), raw)
    assert (tmp_path / "cifar10" / data._CIFAR_FILE).read_bytes() == files[data._CIFAR_FILE]


def test_truncated_transfer_is_detected_and_leaves_nothing(server, monkeypatch, tmp_path):
    handler, url = server
    files, _ = fake_mnist(np.random.default_rng(0))
    handler.files.update(files)
    handler.truncated.add(data._IDX_FILES[0])
    point_sources(monkeypatch, "mnist", files, [url])
    with pytest.raises(data.DownloadError) as e:
        data.prepare("mnist", cache_dir=tmp_path, val_size=10)
    assert "truncated download" in str(e.value) and url + data._IDX_FILES[0] in str(e.value)
    assert cache_files(tmp_path) == []


@pytest.mark.parametrize("name", ("mnist", "cifar10"))
def test_truncated_archive_with_matching_checksum_is_detected_and_deleted(
    name, server, monkeypatch, tmp_path
):
    handler, url = server
    files, _ = (
        fake_cifar(np.random.default_rng(0))
        if name == "cifar10"
        else fake_mnist(np.random.default_rng(0))
    )
    first = next(iter(files))
    files[first] = files[first][
        : len(files[first]) * 2 // 3
    ]  # and its checksum is of this cut file
    handler.files.update(files)
    point_sources(monkeypatch, name, files, [url])
    with pytest.raises(data.CorruptFileError, match="truncated") as e:
        data.prepare(name, cache_dir=tmp_path, val_size=10)
    assert first in str(e.value)
    assert first not in cache_files(tmp_path)


def test_refused_connection_names_the_url_and_how_to_place_the_file(
    refused_url, monkeypatch, tmp_path
):
    files, _ = fake_cifar(np.random.default_rng(0))
    point_sources(monkeypatch, "cifar10", files, [refused_url])
    with pytest.raises(data.DownloadError) as e:
        data.prepare("cifar10", cache_dir=tmp_path, val_size=10)
    message = str(e.value)
    assert refused_url + data._CIFAR_FILE in message and "refused" in message.lower()
    assert str((tmp_path / "cifar10" / data._CIFAR_FILE).resolve()) in message
    assert sha256(files[data._CIFAR_FILE]) in message
    assert cache_files(tmp_path) == []


def test_the_real_source_table_is_well_formed():
    assert set(data.SOURCES) == set(data.DOWNLOADED)
    for name, table in data.SOURCES.items():
        assert table, name
        for rf in table:
            assert len(rf.sha256) == 64 and int(rf.sha256, 16) >= 0
            assert rf.urls and all(
                u.startswith(("https://", "http://")) and u.endswith(rf.filename) for u in rf.urls
            )
    assert len({rf.sha256 for table in data.SOURCES.values() for rf in table}) == 9
