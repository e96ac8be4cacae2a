"""Read many runs into pandas: comparison plots and reports never need re-training.

One malformed run folder (a truncated ``config.json``, a byte that is not UTF-8, a damaged line in
the middle of ``events.jsonl``) is skipped with one :class:`MalformedRunWarning` naming it; the
other runs are read as usual. A torn *last* line is what a crash leaves: it is skipped silently.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .run import _slug, runs_root

__all__ = [
    "MalformedRunError",
    "MalformedRunWarning",
    "find_runs",
    "load_events",
    "load_config",
    "load_runs",
    "load_scalars",
    "load_steps",
]

_EVENT_KEYS = {"schema_version", "event", "time", "run_id", "split"}
_CONFIG_KEYS = {"schema_version", "run_id", "model", "experiment", "model_info", "environment"}


class MalformedRunError(ValueError):
    """A run folder whose facts cannot be read (the message names the file and what is wrong)."""


class MalformedRunWarning(UserWarning):
    """A run folder was skipped by a reader because its facts cannot be read."""


def _skip(run_dir: Path, exc: Exception | str) -> None:
    warnings.warn(
        f"skipping malformed run folder {run_dir}: {exc}", MalformedRunWarning, stacklevel=3
    )


def find_runs(
    root: str | os.PathLike[str] | None = None,
    model: str | None = None,
    experiment: str | None = None,
) -> list[Path]:
    """Run folders under ``root`` (default ``outputs/runs``), oldest first, optionally filtered.

    A folder whose ``config.json`` cannot be read is left out with one warning."""
    base = runs_root(root)
    if not base.exists():
        return []
    if not base.is_dir():
        raise NotADirectoryError(
            f"{base} is a file, not a runs folder; pass the folder that holds the run_* folders"
        )
    out = []
    for d in (p for p in base.iterdir() if p.is_dir() and p.name.startswith("run_")):
        if not (d / "config.json").exists():
            continue  # being created right now, or never got its facts: nothing to read
        try:
            cfg = load_config(d)
        except MalformedRunError as exc:
            _skip(d, exc)
            continue
        if model and cfg.get("model") != _slug(model):
            continue
        if experiment and cfg.get("experiment") != _slug(experiment):
            continue
        out.append(d)
    return sorted(out, key=_started)


def _started(run_dir: Path) -> tuple[str, str]:
    """Sort key: the on_start time (millisecond precision), then the folder name."""
    path = Path(run_dir) / "facts" / "events.jsonl"
    first: Any = ""
    if path.exists():
        with open(path, "rb") as f:
            line = f.readline()
        try:
            first = json.loads(line.decode("utf-8")).get("time", "")
        except (ValueError, AttributeError):
            first = ""
    return str(first), Path(run_dir).name


def load_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's ``config.json`` (``{}`` if it has none); :class:`MalformedRunError` if unreadable."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRunError(f"{path} is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MalformedRunError(f"{path} holds a {type(doc).__name__}, not a JSON object")
    return doc


def load_events(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event of a run, in order. A cut-off last line (a crash mid-write) is skipped; a
    damaged line anywhere else raises :class:`MalformedRunError` naming it."""
    path = Path(run_dir) / "facts" / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines):  # the torn last line a crash leaves: no newline after it
                continue
            raise MalformedRunError(f"{path} line {number} is damaged ({exc})") from None
        if not isinstance(event, dict):
            raise MalformedRunError(f"{path} line {number} is not a JSON object")
        events.append(event)
    return events


def _dirs(runs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None) -> list[Path]:
    if runs is None or isinstance(runs, (str, os.PathLike)):
        p = Path(runs) if runs is not None else None
        if p is not None and ((p / "facts").is_dir() or (p / "config.json").is_file()):
            return [p]
        return find_runs(p)
    return [Path(r) for r in runs]


def _status(events: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """The run's status and its closing event: the last ``on_finish`` after the last (re)start."""
    finish = None
    for e in events:
        if e.get("event") in ("on_start", "on_resume"):
            finish = None
        elif e.get("event") == "on_finish":
            finish = e
    return (finish.get("status", "finished") if finish else "interrupted"), finish


def load_runs(runs=None):
    """One row per run: id, model, experiment, status, times, data source, config, final metrics.

    ``runs``: None (every run under ``outputs/runs``), a runs folder, one run folder, or a list
    of run folders. Sections added later (``trainer``, ``hparams``) become ``<section>.<key>``."""
    import pandas as pd

    rows = []
    for d in _dirs(runs):
        try:
            cfg = load_config(d)
            events = load_events(d)
        except MalformedRunError as exc:
            _skip(d, exc)
            continue
        start = next((e for e in events if e.get("event") == "on_start"), {})
        status, finish = _status(events)
        epochs = {e.get("epoch") for e in events if e.get("event") == "on_epoch_end"}
        row: dict[str, Any] = {
            "run_id": cfg.get("run_id", d.name),
            "model": cfg.get("model"),
            "experiment": cfg.get("experiment"),
            "status": status,
            "started": start.get("time"),
            "finished": finish.get("time") if finish else None,
            "data_source": (cfg.get("data") or {}).get("data_source"),
            "epochs": len(epochs),
            "path": str(d),
        }
        for section, values in cfg.items():
            if section in _CONFIG_KEYS or section == "data" or not isinstance(values, dict):
                continue
            for k, v in values.items():
                if not isinstance(v, (dict, list)):
                    row[f"{section}.{k}"] = v
        for e in events:
            if e.get("event") == "on_eval":
                split = e.get("split", "test")
                row.update({f"{split}_{k}": v for k, v in e.items() if k not in _EVENT_KEYS})
        if finish:
            summary = finish.get("summary") or {}
            row.update({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["started"] = pd.to_datetime(df["started"], utc=True)
        df["finished"] = pd.to_datetime(df["finished"], utc=True)
        df["duration_s"] = (df["finished"] - df["started"]).dt.total_seconds()
    return df


def _load_csv(runs, name: str):
    import pandas as pd

    frames = []
    for d in _dirs(runs):
        path = Path(d) / "facts" / name
        if not path.exists() or path.stat().st_size == 0:
            continue
        try:
            cfg = load_config(d)
            raw = path.read_bytes()
            raw = raw[: raw.rfind(b"\n") + 1]  # a torn last row (a crash mid-append) is left out
            df = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
        except (MalformedRunError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            _skip(Path(d), exc if isinstance(exc, MalformedRunError) else f"{path}: {exc}")
            continue
        except pd.errors.EmptyDataError:
            continue
        df.insert(0, "experiment", cfg.get("experiment"))
        df.insert(0, "model", cfg.get("model"))
        df.insert(0, "run_id", cfg.get("run_id", Path(d).name))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_scalars(runs=None):
    """Every run's ``scalars.csv`` (one row per epoch) stacked into one long DataFrame with
    ``run_id``, ``model``, ``experiment``. ``runs`` as for :func:`load_runs`."""
    return _load_csv(runs, "scalars.csv")


def load_steps(runs=None):
    """Every run's ``steps.csv`` (one row per logged training step) stacked like
    :func:`load_scalars`."""
    return _load_csv(runs, "steps.csv")
