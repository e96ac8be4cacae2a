"""Run folders and facts: the record of every training run, readable without re-training.

::

    outputs/runs/run_<YYYYmmdd-HHMMSS>_<model>_<experiment>/
        config.json            config snapshot + model info + data facts + environment
        facts/events.jsonl     one JSON object per lifecycle event (schema_version on every line)
        facts/scalars.csv      one row per epoch
        figures/               every plot made during the run (PNG)
        checkpoints/           best.pt / last.pt

Events: ``on_start``, ``on_epoch_end``, ``on_eval``, ``on_figure``, ``on_checkpoint``,
``on_train_end``, ``on_finish``. ``events.jsonl`` is appended one whole line per write (a crash can
cut only the last line, which readers skip); ``scalars.csv`` and ``config.json`` are rewritten
atomically.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from scratchlib.utils import atomic_write_bytes, atomic_write_json, atomic_write_text, jsonable

SCHEMA_VERSION = 1
RUNS_ENV = "SCRATCHLIB_RUNS"

_ACTIVE: Run | None = None


def runs_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where run folders go: ``root``, else ``$SCRATCHLIB_RUNS``, else ``<project root>/outputs/runs``."""
    if root or os.environ.get(RUNS_ENV):
        return Path(root or os.environ[RUNS_ENV]).expanduser()
    from scratchlib.utils import project_root

    return project_root() / "outputs" / "runs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-").lower() or "x"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class Run:
    """One training run's folder and facts. Create with :func:`scratchlib.track.start`."""

    def __init__(
        self,
        model_name: str,
        experiment: str,
        config: dict[str, Any] | None = None,
        root: str | os.PathLike[str] | None = None,
        model_info: dict[str, Any] | None = None,
        data_facts: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = _slug(model_name)
        self.experiment = _slug(experiment)
        self.config = dict(config or {})
        self.model_info = dict(model_info or {})
        self.data_facts = dict(data_facts or {})
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = runs_root(root) / f"run_{stamp}_{self.model_name}_{self.experiment}"
        self.dir = base
        n = 1
        while self.dir.exists():  # two runs in the same second get distinct folders
            n += 1
            self.dir = base.with_name(f"{base.name}-{n}")
        self.id = self.dir.name
        self.facts_dir = self.dir / "facts"
        self.figures_dir = self.dir / "figures"
        self.checkpoints_dir = self.dir / "checkpoints"
        for d in (self.facts_dir, self.figures_dir, self.checkpoints_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._scalars: list[dict[str, Any]] = []
        self.status = "running"
        self.summary: dict[str, Any] = {}
        self.wandb = None  # set by track.start when wandb is on
        self._write_config()
        self.event(
            "on_start",
            model=self.model_name,
            experiment=self.experiment,
            config=self.config,
            model_info=self.model_info,
            data=self.data_facts,
        )

    # --- writing ----------------------------------------------------------------------------
    def _write_config(self) -> None:
        atomic_write_json(
            self.dir / "config.json",
            {
                "schema_version": SCHEMA_VERSION,
                "run_id": self.id,
                "model": self.model_name,
                "experiment": self.experiment,
                "config": self.config,
                "model_info": self.model_info,
                "data": self.data_facts,
                "environment": _environment(),
            },
        )

    def event(self, event: str, **payload: Any) -> dict[str, Any]:
        """Append one lifecycle event to ``facts/events.jsonl``."""
        record = {
            "schema_version": SCHEMA_VERSION,
            "event": event,
            "time": _now(),
            "run_id": self.id,
        }
        record.update(payload)
        line = json.dumps(jsonable(record), sort_keys=True, allow_nan=False) + "\n"
        with open(self.facts_dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
        return record

    def log_epoch(self, epoch: int, **scalars: Any) -> None:
        """Record one epoch's scalars (a row of ``scalars.csv``, an event, and wandb if on)."""
        row = {"epoch": int(epoch), **{k: _plain(v) for k, v in scalars.items()}}
        self._scalars.append(row)
        self._write_scalars()
        self.event("on_epoch_end", **row)
        if self.wandb is not None:
            self.wandb.log(row, step=int(epoch))

    def _write_scalars(self) -> None:
        cols: list[str] = []
        for r in self._scalars:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(self._scalars)
        atomic_write_text(self.facts_dir / "scalars.csv", buf.getvalue())

    def log_eval(self, split: str = "test", **metrics: Any) -> dict[str, Any]:
        """Record evaluation metrics (``on_eval``); they also go into the run's summary."""
        metrics = {k: _plain(v) for k, v in metrics.items()}
        self.summary.update({f"{split}_{k}": v for k, v in metrics.items()})
        if self.wandb is not None:
            self.wandb.summary({f"{split}/{k}": v for k, v in metrics.items()})
        return self.event("on_eval", split=split, **metrics)

    def train_end(self, **info: Any) -> None:
        self.event("on_train_end", **{k: _plain(v) for k, v in info.items()})

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` (and send it to wandb if on)."""
        path = self.figures_dir / f"{_slug(name)}.png"
        n = 1
        while path.exists():  # the same plot twice in one run keeps both
            n += 1
            path = self.figures_dir / f"{_slug(name)}-{n}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
        self.event("on_figure", figure=path.stem, path=str(path.relative_to(self.dir)))
        if self.wandb is not None:
            self.wandb.image(path.stem, path)
        return path

    def checkpoint_saved(self, path: Path, kind: str, **info: Any) -> None:
        self.event("on_checkpoint", kind=kind, path=str(Path(path).relative_to(self.dir)), **info)
        if self.wandb is not None:
            self.wandb.artifact(Path(path), kind)

    def finish(self, status: str = "finished", **summary: Any) -> None:
        """Close the run: ``on_finish`` with the summary; wandb is finished too."""
        global _ACTIVE
        if self.status != "running":
            return
        self.status = status
        self.summary.update({k: _plain(v) for k, v in summary.items()})
        self.event("on_finish", status=status, summary=self.summary)
        if self.wandb is not None:
            self.wandb.finish(self.figures_dir)
        if _ACTIVE is self:
            _ACTIVE = None

    # --- reading (this run) -----------------------------------------------------------------
    @property
    def scalars(self):
        """This run's ``scalars.csv`` as a pandas DataFrame."""
        from .readers import load_scalars

        return load_scalars([self.dir])

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish("failed" if exc_type else "finished")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    import numpy

    env["numpy"] = numpy.__version__
    return env


def active() -> Run | None:
    """The run started last and not yet finished (plots save into it), or None."""
    return _ACTIVE


def set_active(run: Run | None) -> None:
    global _ACTIVE
    _ACTIVE = run
