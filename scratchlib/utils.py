"""Seeding, device choice, timing and source display: the small things every notebook needs."""

from __future__ import annotations

import inspect
import json
import os
import random
import tempfile
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
    "progress",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "remove_stale_temporaries",
    "jsonable",
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


def progress(iterable: Any = None, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm progress bar: a widget in notebooks, text in terminals; ``iterable`` itself when off."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, **kwargs)


# --- atomic writes: the one place files are written -------------------------------------------

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half of one.

    A temporary file beside the target (``.<name>.<random>.tmp``) is renamed over it. ``durable``
    also fsyncs first, so the data survives a power cut (checkpoints); small facts files skip it.
    An interrupted write removes its temporary file; one left by a killed process is removed by
    :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600: give the file open()'s permissions
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, durable: bool = True, sort_keys: bool = True
) -> Path:
    """``obj`` as strict JSON (NaN and infinities become ``null``), written atomically."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write_text(path, text, durable=durable)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`atomic_write_bytes` left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts: NaN/inf -> None, numpy and torch scalars and
    arrays -> numbers and lists, paths, devices and other odds -> strings."""
    import math

    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return jsonable(obj.item())
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    return str(obj)
