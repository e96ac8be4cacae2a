"""Module 4's data by name: Tiny Shakespeare through cache -> download -> announced fallback (the
download served by a local HTTP server, never the network), the synthetic sequence tasks and the
string-pair tasks as DataModules, and the training helpers the notebooks use with them (the
TextSamples callback, the time-budgeted schedule, equal-parameter sizing, equality with torch)."""

from __future__ import annotations

import http.server
import importlib
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlib import data
from scratchlib.data import DataUnavailableError
from scratchlib.data import text as text_module
from scratchlib.data.sequence_tasks import PairData

fetch_module = importlib.import_module("scratchlib.data.fetch")  # (``data.fetch`` is the function)

PLAY = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 40  # about 6,000 characters


def _cache(root: Path, body: str = PLAY) -> Path:
    path = root / "tinyshakespeare" / "input.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


# --- Tiny Shakespeare: cache, splits, batches ----------------------------------------------------


def test_tinyshakespeare_from_the_cache(data_dir: Path, capsys) -> None:
    _cache(data_dir)
    ds = data.load("tinyshakespeare", block_size=16, batch_size=4)
    assert ds.source == "real" and "NOTICE" not in capsys.readouterr().out
    assert ds.vocab_size == len(set(PLAY)) and ds.tokenizer.kind == "char"
    # contiguous ranges in order: test = last 5 %, val = 10 % of the rest, train the start
    n = len(PLAY)
    n_test = round(0.05 * n)
    n_val = round(0.1 * (n - n_test))
    assert ds.ranges == {
        "train": (0, n - n_test - n_val),
        "val": (n - n_test - n_val, n - n_test),
        "test": (n - n_test, n),
    }
    assert ds.text("train") + ds.text("val") + ds.text("test") == PLAY
    x, y = next(iter(ds.train_loader()))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    assert ds.decode(ds.encode("Speak, speak.")) == "Speak, speak."
    facts = ds.facts()
    assert facts["data_source"] == "real" and facts["tokenizer"] == "char"
    assert facts["n_chars"] == n and facts["vocab_size"] == ds.vocab_size


def test_tinyshakespeare_refuses_a_damaged_cache(data_dir: Path) -> None:
    path = _cache(data_dir, "too short")
    with pytest.raises(DataUnavailableError, match="only 9 characters.*delete it"):
        data.load("tinyshakespeare")
    path.write_bytes(b"\xff\xfe" + b"x" * 5000)
    with pytest.raises(DataUnavailableError, match="not readable UTF-8"):
        data.load("tinyshakespeare")


def test_tinyshakespeare_unknown_option_names_the_valid_ones(data_dir: Path) -> None:
    _cache(data_dir)
    with pytest.raises(TypeError, match=r"unknown options \['blocksize'\].*block_size"):
        data.load("tinyshakespeare", blocksize=8)


def test_offline_falls_back_to_pythons_own_docs_and_says_so(capsys) -> None:
    ds = data.load("tinyshakespeare", block_size=32)
    out = capsys.readouterr().out
    assert "NOTICE tinyshakespeare" in out and "pydoc" in out and "SCRATCHLIB_OFFLINE" in out
    assert ds.source == "fallback:python-docs" and ds.facts()["data_source"] == ds.source
    text = ds.text("train", 2000)
    assert 'The "assert" statement' in text  # the first help topic, in name order
    assert ds.n_chars > 100_000


def test_python_docs_text_parses_and_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake = tmp_path / "topics.py"
    fake.write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "topics = {'b': 'second topic', 'a': 'first topic'}\n",
        encoding="utf-8",
    )
    assert text_module.python_docs_text(fake) == "first topic\n\nsecond topic"
    assert not marker.exists(), "reading the topics must not run the file's code"
    fake.write_text("topics = dict(a=open('x').read())\n", encoding="utf-8")
    with pytest.raises(DataUnavailableError, match="not a plain dictionary"):
        text_module.python_docs_text(fake)
    fake.write_text("other = {}\n", encoding="utf-8")
    with pytest.raises(DataUnavailableError, match="no `topics"):
        text_module.python_docs_text(fake)


# --- the download path, against a local HTTP server ----------------------------------------------


@pytest.fixture
def server():
    """A local HTTP server: ``routes[path] = (status, body)``; yields (base_url, routes, hits)."""
    routes: dict[str, tuple[int, bytes]] = {}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            status, body = routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")


def test_download_fills_the_cache_once(server, online, data_dir, monkeypatch, capsys) -> None:
    base, routes, hits = server
    routes["/input.txt"] = (200, PLAY.encode())
    monkeypatch.setattr(text_module, "TINY_SHAKESPEARE_URL", f"{base}/input.txt")
    ds = data.load("tinyshakespeare")
    assert ds.source == "real" and hits == ["/input.txt"]
    assert (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8") == PLAY
    assert "NOTICE" not in capsys.readouterr().out
    again = data.load("tinyshakespeare")  # now from the cache: no second request
    assert again.source == "real" and hits == ["/input.txt"]
    assert list((data_dir / "tinyshakespeare").iterdir()) == [
        data_dir / "tinyshakespeare" / "input.txt"
    ]


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [(404, b"gone", "HTTP Error 404"), (200, b"\xff\xfe\x00 not text", "codec can't decode")],
)
def test_a_failed_download_falls_back_and_leaves_no_file(
    server, online, data_dir, monkeypatch, capsys, status, body, why
) -> None:
    base, routes, _ = server
    routes["/input.txt"] = (status, body)
    monkeypatch.setattr(text_module, "TINY_SHAKESPEARE_URL", f"{base}/input.txt")
    ds = data.load("tinyshakespeare")
    out = capsys.readouterr().out
    assert ds.source == "fallback:python-docs"
    assert "download failed" in out and why in out
    assert not (data_dir / "tinyshakespeare" / "input.txt").exists()


def test_smoke_and_download_false_never_touch_the_network(server, online, monkeypatch, capsys):
    base, routes, hits = server
    routes["/input.txt"] = (200, PLAY.encode())
    monkeypatch.setattr(text_module, "TINY_SHAKESPEARE_URL", f"{base}/input.txt")
    probes: list[str] = []
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: probes.append(url))
    for kwargs, why in (({"smoke": True}, "smoke mode"), ({"download": False}, "download=False")):
        assert data.load("tinyshakespeare", **kwargs).source == "fallback:python-docs"
        assert why in capsys.readouterr().out
    assert hits == [] and probes == []


# --- synthetic tasks as DataModules ---------------------------------------------------------------


def test_adding_problem_module() -> None:
    ds = data.load("adding-problem", length=30, n=400, n_test=100, seed=3)
    assert ds.source == "synthetic" and ds.info["baseline"] == pytest.approx(1 / 6)
    assert ds.x_train.shape == (360, 30, 2) and ds.x_val.shape == (40, 30, 2)
    assert ds.x_test.shape == (100, 30, 2) and ds.y_test.shape == (100, 1)
    marked = ds.x_test[..., 1].astype(bool)
    assert (marked.sum(1) == 2).all()
    np.testing.assert_allclose(ds.y_test[:, 0], (ds.x_test[..., 0] * marked).sum(1), rtol=1e-6)
    train_rows = {r.tobytes() for r in np.concatenate([ds.x_train, ds.x_val])}
    assert not train_rows & {r.tobytes() for r in ds.x_test}, "the test set is fresh"
    again = data.load("adding-problem", length=30, n=400, n_test=100, seed=3)
    assert np.array_equal(again.x_test, ds.x_test)  # seeded
    other = data.load("adding-problem", length=30, n=400, n_test=100, seed=4)
    assert not np.array_equal(other.x_test, ds.x_test)
    x, y = next(iter(ds.train_loader(batch_size=8)))
    assert x.shape == (8, 30, 2) and x.dtype == torch.float32 and y.dtype == torch.float32
    facts = ds.facts()
    assert facts["target"] == "regression" and facts["n_val"] == 40 and facts["n_test"] == 100
    with pytest.raises(ValueError, match="float targets"):
        _ = ds.num_classes
    with pytest.raises(TypeError, match=r"unknown options \['lag'\].*length"):
        data.load("adding-problem", lag=30)
    from scratchlib.data.sequence_tasks import SequenceTaskData, adding_problem

    with pytest.raises(ValueError, match="train and test shapes differ"):
        SequenceTaskData(adding_problem(10, 5), adding_problem(10, 6))


def test_temporal_xor_and_copy_task_modules() -> None:
    xor = data.load("temporal-xor", n=100, n_test=50, n_triples=4)
    steps = np.array(xor.info["xor_steps"])
    assert xor.x_test.shape == (50, 11, 1) and steps.tolist() == [
        (t + 1) % 3 == 2 for t in range(11)
    ]
    now, before = (
        xor.x_test[:, steps, 0].astype(int),
        xor.x_test[:, np.roll(steps, -1), 0].astype(int),
    )
    assert np.array_equal(xor.y_test[:, steps, 0].astype(int), now ^ before)  # the XOR bits
    copy = data.load("copy-task", n=200, n_test=20, lag=7, seq_len=3, n_symbols=5)
    assert copy.x_test.shape == (20, 13, 7) and copy.num_classes == 5 and copy.classification
    tokens = copy.x_test.argmax(-1)
    assert np.array_equal(copy.y_test[:, -3:], tokens[:, :3])  # written back after the wait
    assert (copy.y_test[:, :-3] == -100).all()
    x, y = next(iter(copy.test_loader(batch_size=4)))
    assert x.dtype == torch.float32 and y.dtype == torch.long and y.shape == (4, 13)
    assert copy.facts()["target"] == "classes"


@pytest.mark.parametrize("name", ["dates", "reversal"])
def test_pair_tasks_batch_as_padded_pairs(name: str) -> None:
    ds = data.load(name, n=300, batch_size=16)
    assert isinstance(ds, PairData) and ds.source == "synthetic"
    assert (ds.pad_id, ds.bos_id, ds.eos_id) == (0, 1, 2)
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes == {"train": 243, "val": 27, "test": 30}
    assert not set(ds.splits["train"]) & set(ds.splits["test"])
    batch = next(iter(ds.train_loader()))
    assert batch["src"].shape[0] == 16 and batch["src_mask"].dtype == torch.bool
    assert (batch["tgt_in"][:, 0] == ds.bos_id).all()
    lengths = batch["tgt_mask"].sum(1)
    assert (batch["tgt_out"][torch.arange(16), lengths - 1] == ds.eos_id).all()
    # decoding the targets gives the strings back; encoding the sources gives the batch back
    test = ds.pairs("test")
    loader = ds.test_loader(len(test))
    full = next(iter(loader))
    assert ds.decode_tgt(full["tgt_out"]) == [t for _, t in test]
    src, mask = ds.encode_src([s for s, _ in test])
    assert torch.equal(src, full["src"]) and torch.equal(mask, full["src_mask"])
    facts = ds.facts()
    assert facts["src_vocab_size"] == ds.src_tokenizer.vocab_size > 3


def test_reversal_pairs_reverse() -> None:
    ds = data.load("reversal", n=50, min_len=2, max_len=5, alphabet="xyz")
    assert all(t == s[::-1] and 2 <= len(s) <= 5 and set(s) <= set("xyz") for s, t in ds.raw)
