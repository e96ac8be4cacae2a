"""Shared test set-up: every test writes runs and data into its own temporary folders, offline.

Shared fakes, as fixtures: ``fake_wandb`` (a stand-in ``wandb`` module that records every call and
can be told to fail at one), ``frozen_clock`` (every run folder gets the same timestamp),
``tiny_classifier`` (a small torch model) and ``temporary_model`` (register a model class for one
test only).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Runs go to a temporary runs folder, the data cache is empty, and nothing touches the network."""
    base = tmp_path_factory.mktemp("scratch")
    monkeypatch.setenv("SCRATCHLIB_RUNS", str(base / "runs"))
    monkeypatch.setenv("SCRATCHLIB_DATA", str(base / "data"))
    monkeypatch.setenv("SCRATCHLIB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # tests run as one process unless they say
        monkeypatch.delenv(var, raising=False)
    yield
    from scratchlib.track import run as run_mod

    run_mod.set_active(None)
    import matplotlib.pyplot as plt

    plt.close("all")  # a figure a test left open must not leak into the next test on this worker


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (small models: threads only add contention), then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def runs_dir() -> Path:
    return Path(os.environ["SCRATCHLIB_RUNS"])


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["SCRATCHLIB_DATA"])


# --- a frozen clock ------------------------------------------------------------------------------

FROZEN = dt.datetime(2030, 1, 2, 3, 4, 5)


class FrozenDatetime(dt.datetime):
    """``datetime`` whose ``now()`` is always :data:`FROZEN` (in the zone asked for)."""

    @classmethod
    def now(cls, tz=None):
        return FROZEN.replace(tzinfo=tz)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every run folder started in this test gets the stamp ``20300102-030405``; event times
    keep ticking (microseconds), so the order runs started in can still be read."""
    from scratchlib.track import run as run_mod

    monkeypatch.setattr(
        run_mod, "_dt", types.SimpleNamespace(datetime=FrozenDatetime, timezone=dt.timezone)
    )
    monkeypatch.setattr(
        run_mod, "_now", lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    )
    return FROZEN.strftime("%Y%m%d-%H%M%S")


# --- a fake wandb ----------------------------------------------------------------------------------


class FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module that records every call; ``fail`` names a call that raises
    (``init``, ``log``, ``summary``, ``config``, ``artifact`` or ``finish``)."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__("wandb")
        self.fail = fail
        self.init_kwargs: dict | None = None
        self.calls: list[tuple[str, object]] = []
        fake = self

        class Settings:
            def __init__(self, **kw) -> None:
                self.kw = kw

        class Artifact:
            def __init__(self, name: str, type: str) -> None:
                self.name, self.type, self.files = name, type, []

            def add_file(self, path: str) -> None:
                self.files.append(path)

            def add_dir(self, path: str) -> None:
                self.files.append(path)

        class Summary:
            def update(self, d) -> None:
                fake._record("summary", dict(d))

        class Config:
            def update(self, d, allow_val_change: bool = False) -> None:
                fake._record("config", dict(d))

        class WRun:
            name = "wandb-run"
            summary = Summary()
            config = Config()

            def log(self, d, step=None) -> None:
                fake._record("log", (dict(d), step))

            def log_artifact(self, art, aliases=None) -> None:
                fake._record("artifact", (art.type, list(aliases or []), list(art.files)))

            def finish(self) -> None:
                fake._record("finish", None)

        self.Settings, self.Artifact, self._WRun = Settings, Artifact, WRun
        self.Image = lambda path: ("Image", path)

    def _record(self, what: str, payload: object) -> None:
        if self.fail == what:
            raise RuntimeError(f"wandb {what} blew up")
        self.calls.append((what, payload))

    def init(self, **kw):
        self.init_kwargs = kw
        if self.fail == "init":
            raise ConnectionError("wandb init: network unreachable")
        return self._WRun()

    def of(self, what: str) -> list:
        """The payloads of every call of one kind, in order."""
        return [p for w, p in self.calls if w == what]


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch):
    """``install(fail=None) -> FakeWandb``: put a fake ``wandb`` in ``sys.modules`` for this test."""

    def install(fail: str | None = None) -> FakeWandb:
        fake = FakeWandb(fail)
        monkeypatch.setitem(sys.modules, "wandb", fake)
        return fake

    return install


# --- small models --------------------------------------------------------------------------------


@pytest.fixture
def tiny_classifier():
    """``make(d_in=2, k=2, hidden=8) -> nn.Module``: a seeded two-layer classifier, fast on a CPU."""
    import torch
    from torch import nn

    def make(d_in: int = 2, k: int = 2, hidden: int = 8, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, k))

    return make


@pytest.fixture
def temporary_model():
    """``register(cls) -> cls``: ``@models.register`` for this test only (the registry is restored)."""
    from scratchlib import models

    models.names()  # load every model file first, so the restore keeps them
    before = dict(models.REGISTRY)
    yield models.register
    models.REGISTRY.clear()
    models.REGISTRY.update(before)


@pytest.fixture
def temporary_dataset():
    """``add(name, shape, k=10, n_train=32, n_test=16) -> name``: a small random image or table
    dataset under ``name``, for this test only (the dataset registry is restored)."""
    import numpy as np

    from scratchlib import data

    before = dict(data.DATASETS)

    def add(name: str, shape: tuple[int, ...], k: int = 10, n_train: int = 32, n_test: int = 16):
        rng = np.random.default_rng(0)

        def loader(request) -> data.DataBundle:
            def split(n: int):
                return rng.random((n, *shape), dtype=np.float32), np.arange(n) % k

            (xa, ya), (xb, yb) = split(n_train), split(n_test)
            return data.DataBundle(
                name, xa, ya, xb, yb, source="synthetic", classes=[str(c) for c in range(k)]
            )

        data.dataset(name, f"{k} classes of random {shape} inputs (tests)")(loader)
        return name

    yield add
    data.DATASETS.clear()
    data.DATASETS.update(before)
