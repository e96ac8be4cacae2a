"""Read many runs into pandas: comparison plots and reports never need re-training."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .run import runs_root

__all__ = ["find_runs", "load_events", "load_config", "load_runs", "load_scalars"]


def find_runs(
    root: str | os.PathLike[str] | None = None,
    model: str | None = None,
    experiment: str | None = None,
) -> list[Path]:
    """Run folders under ``root`` (default ``outputs/runs``), oldest first, optionally filtered."""
    base = runs_root(root)
    if not base.exists():
        return []
    from .run import _slug

    out = []
    for d in (p for p in base.iterdir() if p.is_dir() and p.name.startswith("run_")):
        cfg = load_config(d)
        if model and cfg.get("model") != _slug(model):
            continue
        if experiment and cfg.get("experiment") != _slug(experiment):
            continue
        out.append(d)
    return sorted(out, key=_started)


def _started(run_dir: Path) -> tuple[str, str]:
    """Sort key: the on_start time (millisecond precision), then the folder name."""
    path = Path(run_dir) / "facts" / "events.jsonl"
    first = ""
    if path.exists():
        with open(path, encoding="utf-8") as f:
            line = f.readline()
        try:
            first = json.loads(line).get("time", "")
        except json.JSONDecodeError:
            first = ""
    return first, Path(run_dir).name


def load_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_events(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event of a run, in order. A cut-off last line (a crash mid-write) is skipped."""
    path = Path(run_dir) / "facts" / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _dirs(runs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None) -> list[Path]:
    if runs is None or isinstance(runs, (str, os.PathLike)):
        p = Path(runs) if runs is not None else None
        if p is not None and (p / "facts").is_dir():
            return [p]
        return find_runs(p)
    return [Path(r) for r in runs]


def load_runs(runs=None):
    """One row per run: id, model, experiment, status, times, data source, config, final metrics."""
    import pandas as pd

    rows = []
    for d in _dirs(runs):
        cfg = load_config(d)
        events = load_events(d)
        start = next((e for e in events if e.get("event") == "on_start"), {})
        finish = next((e for e in reversed(events) if e.get("event") == "on_finish"), None)
        row: dict[str, Any] = {
            "run_id": cfg.get("run_id", d.name),
            "model": cfg.get("model"),
            "experiment": cfg.get("experiment"),
            "status": finish.get("status") if finish else "interrupted",
            "started": start.get("time"),
            "finished": finish.get("time") if finish else None,
            "data_source": cfg.get("data", {}).get("data_source"),
            "epochs": sum(e.get("event") == "on_epoch_end" for e in events),
            "path": str(d),
        }
        for k, v in cfg.get("config", {}).items():
            if not isinstance(v, (dict, list)):
                row[f"config.{k}"] = v
        for e in events:
            if e.get("event") == "on_eval":
                split = e.get("split", "test")
                for k, v in e.items():
                    if k not in {"schema_version", "event", "time", "run_id", "split"}:
                        row[f"{split}_{k}"] = v
        if finish:
            row.update(
                {
                    k: v
                    for k, v in finish.get("summary", {}).items()
                    if not isinstance(v, (dict, list))
                }
            )
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["started"] = pd.to_datetime(df["started"], utc=True)
        df["finished"] = pd.to_datetime(df["finished"], utc=True)
        df["duration_s"] = (df["finished"] - df["started"]).dt.total_seconds()
    return df


def load_scalars(runs=None):
    """Every run's ``scalars.csv`` stacked into one long DataFrame with run_id, model, experiment."""
    import pandas as pd

    frames = []
    for d in _dirs(runs):
        path = Path(d) / "facts" / "scalars.csv"
        if not path.exists() or path.stat().st_size == 0:
            continue
        df = pd.read_csv(path)
        cfg = load_config(d)
        df.insert(0, "experiment", cfg.get("experiment"))
        df.insert(0, "model", cfg.get("model"))
        df.insert(0, "run_id", cfg.get("run_id", Path(d).name))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
