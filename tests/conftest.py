"""Shared test set-up: every test writes runs and data into its own temporary folders, offline."""

from __future__ import annotations

import os
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
