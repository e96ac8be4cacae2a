"""Seeding, device choice, timing and source display: the small things every notebook needs."""

from __future__ import annotations

import inspect
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "project_root",
    "seed_everything",
    "choose_device",
    "Timer",
    "show_source",
    "describe_device",
]


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The curriculum's root folder (holding ``pyproject.toml`` and ``scratchlib/``), found by
    walking up from ``start`` (default: the working directory). Falls back to ``start`` itself, so
    notebooks opened inside a module folder still write to the one ``outputs/`` and ``data/``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "scratchlib").is_dir():
            return d
    return here


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and every GPU). Returns the seed.

    ``deterministic=True`` also asks torch for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the legacy global RNG older code uses
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # NumPy-only use
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


def choose_device(preference: str | Any = "auto"):
    """A ``torch.device``: ``"auto"`` picks CUDA, then Apple MPS, then the CPU.

    An explicit ``"cuda"``/``"mps"`` that is not available raises with a hint instead of silently
    running on the CPU.
    """
    import torch

    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"DEVICE={preference!r} but torch sees no CUDA GPU (torch {torch.__version__}). "
            "Use DEVICE='auto' or 'cpu', or run `make doctor` to see why the GPU is missing."
        )
    if pref == "mps" and not has_mps:
        raise RuntimeError("DEVICE='mps' but Apple MPS is not available; use DEVICE='auto'.")
    if pref not in {"cpu", "mps"} and not pref.startswith("cuda"):
        raise ValueError(
            f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return torch.device(pref)


def describe_device(device: Any = "auto") -> str:
    """One line naming the device (GPU model where there is one)."""
    import torch

    dev = choose_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


class Timer:
    """``with Timer() as t: ...`` then ``t.elapsed`` seconds (``time.perf_counter``)."""

    def __init__(self, label: str = "", verbose: bool = False) -> None:
        self.label, self.verbose, self.elapsed = label, verbose, 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._t0
        if self.verbose:
            print(f"{self.label or 'elapsed'}: {self.elapsed:.2f} s")


def show_source(obj: Any) -> str:
    """Show the real source of a library function or class in a notebook (and return it).

    Learners see the implementation they are running, not a copy pasted into the notebook.
    """
    src = inspect.getsource(obj)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            where = inspect.getsourcefile(obj) or "?"
            rel = where.split("scratchlib", 1)[-1]
            display(Markdown(f"`scratchlib{rel}`\n```python\n{src}\n```"))
            return src
    except ImportError:
        pass
    print(src)
    return src
