"""Run folders and facts: the record of every training run, readable without re-training.

::

    outputs/runs/run_<YYYYmmdd-HHMMSS>_<model>_<experiment>/
        config.json            config snapshot + model info + data facts + environment (+ trainer)
        facts/events.jsonl     one JSON object per lifecycle event (schema_version on every line)
        facts/scalars.csv      one row per epoch (or per validation)
        facts/steps.csv        one row per logged training step
        figures/               every plot made during the run (PNG)
        checkpoints/           best.pt / last.pt

Events: ``on_start``, ``on_epoch_end``, ``on_eval``, ``on_figure``, ``on_checkpoint``,
``on_resume``, ``on_train_end``, ``on_finish`` (and ``on_wandb``, ``on_early_stop``).

How the files stay whole: a run folder is created with an exclusive ``mkdir`` (a ``-2``, ``-3``, ...
suffix when the name is taken, so runs started together never share one). ``events.jsonl``,
``scalars.csv`` and ``steps.csv`` are *appended* whole lines: a torn last line left by a crash or a
full disk is cut back to the last newline before the next append, and an append that fails part-way
is undone. A CSV is rewritten (atomically) only when a new column appears. ``config.json`` is
rewritten atomically. NaN and infinities are written to JSON as ``null``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import json
import logging
import os
import platform
import re
import sys
import threading
from pathlib import Path
from typing import Any

from scratchlib.utils import atomic_write_bytes, atomic_write_json, atomic_write_text, jsonable

SCHEMA_VERSION = 1
RUNS_ENV = "SCRATCHLIB_RUNS"
RESERVED_SECTIONS = ("schema_version", "run_id", "model", "experiment")

log = logging.getLogger("scratchlib.track")

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


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _make_run_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name`` (or ``name-2``, ``name-3``, ...) with an exclusive ``mkdir``: two
    processes can never both get the same folder, however close together they start."""
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(
            f"the runs folder {parent} is a file; point $SCRATCHLIB_RUNS (or root=) at a folder"
        )
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")


# --- whole-line appends -----------------------------------------------------------------------


def _cut_torn_tail(fd: int) -> int:
    """Truncate an open file back to its last newline (a line torn by a crash); return its size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    os.lseek(fd, size - 1, os.SEEK_SET)
    if os.read(fd, 1) == b"\n":
        return size
    keep, pos = 0, size
    while pos > 0:
        start = max(0, pos - 65536)
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, pos - start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            break
        pos = start
    os.ftruncate(fd, keep)
    log.warning("cut a torn last line (%d bytes) left by an interrupted write", size - keep)
    return keep


def append_lines(path: str | os.PathLike[str], data: bytes) -> None:
    """Append ``data`` (whole lines, ending in a newline) to ``path``.

    A torn last line already in the file is cut off first; if this write fails part-way (a full
    disk), the file is truncated back so it never holds half a line."""
    if not data.endswith(b"\n"):
        raise ValueError("append_lines needs whole lines ending in a newline")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        end = _cut_torn_tail(fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


class CsvFacts:
    """A CSV facts file that grows by appended rows; rewritten (atomically) only when a row brings
    a column the header does not have yet (e.g. the val columns at the first validation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None  # read from the file's header on first use

    def _whole_text(self) -> str:
        """The file's text up to its last newline (a torn last row is left out)."""
        if not self.path.exists():
            return ""
        raw = self.path.read_bytes()
        return raw[: raw.rfind(b"\n") + 1].decode("utf-8")

    def append(self, rows: list[dict[str, Any]]) -> None:
        if self.columns is None:  # the header of a file written before (a resumed run)
            first = b""
            if self.path.exists():
                with open(self.path, "rb") as f:
                    first = f.readline()
            whole = first.endswith(b"\n")
            self.columns = next(csv.reader([first.decode("utf-8").strip()]), []) if whole else []
        columns = list(self.columns)
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
        if columns == self.columns and self.columns:
            writer.writerows(rows)
            append_lines(self.path, buf.getvalue().encode("utf-8"))
            return
        writer.writeheader()
        writer.writerows(csv.DictReader(io.StringIO(self._whole_text())))
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue(), durable=False)
        self.columns = columns


# --- the run ------------------------------------------------------------------------------------


class Run:
    """One training run's folder and facts. Create with :func:`scratchlib.track.start`; continue
    one with :func:`scratchlib.track.resume`."""

    def __init__(
        self,
        model_name: str,
        experiment: str,
        config: dict[str, Any] | None = None,
        root: str | os.PathLike[str] | None = None,
        model_info: dict[str, Any] | None = None,
        data_facts: dict[str, Any] | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        model_name, experiment = _slug(model_name), _slug(experiment)
        folder = _make_run_dir(runs_root(root), f"run_{_stamp()}_{model_name}_{experiment}")
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": folder.name,
            "model": model_name,
            "experiment": experiment,
            "config": dict(config or {}),
            "model_info": dict(model_info or {}),
            "data": dict(data_facts or {}),
            "environment": _environment(),
        }
        if hparams is not None:
            doc["hparams"] = dict(hparams)
        self._attach(folder, doc)
        for d in (self.facts_dir, self.figures_dir, self.checkpoints_dir):
            d.mkdir(exist_ok=True)
        self._write_config()
        self.event(
            "on_start",
            model=self.model_name,
            experiment=self.experiment,
            config=self.config,
            model_info=self.model_info,
            data=self.data_facts,
        )

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> Run:
        """The run in an existing folder, ready to write into again (no event is written)."""
        from .readers import load_config

        folder = Path(run_dir)
        doc = load_config(folder)
        if not doc:
            raise FileNotFoundError(f"{folder} has no config.json: it is not a run folder")
        run = cls.__new__(cls)
        run._attach(folder, doc)
        for d in (run.facts_dir, run.figures_dir, run.checkpoints_dir):
            d.mkdir(exist_ok=True)
        return run

    def _attach(self, folder: Path, doc: dict[str, Any]) -> None:
        self.dir = folder
        self._doc = doc
        self.id = str(doc.get("run_id") or folder.name)
        self.model_name = str(doc.get("model") or "x")
        self.experiment = str(doc.get("experiment") or "x")
        self.facts_dir = folder / "facts"
        self.figures_dir = folder / "figures"
        self.checkpoints_dir = folder / "checkpoints"
        self.status = "running"
        self.summary: dict[str, Any] = {}
        self.wandb = None  # set by track.start / track.resume when wandb is on
        self._lock = threading.Lock()  # checkpoints are announced from a writer thread
        self._scalars = CsvFacts(self.facts_dir / "scalars.csv")
        self._steps = CsvFacts(self.facts_dir / "steps.csv")

    # the config.json sections, readable as attributes
    @property
    def config(self) -> dict[str, Any]:
        return self._doc.setdefault("config", {})

    @property
    def model_info(self) -> dict[str, Any]:
        return self._doc.setdefault("model_info", {})

    @property
    def data_facts(self) -> dict[str, Any]:
        return self._doc.setdefault("data", {})

    # --- writing ----------------------------------------------------------------------------
    def _write_config(self) -> None:
        atomic_write_json(self.dir / "config.json", self._doc)

    def update_config(self, **sections: Any) -> dict[str, Any]:
        """Merge ``sections`` into ``config.json`` (rewritten atomically) and return the document.

        A dict merges into a dict section of the same name (``config=``, ``data=``, or a new one
        such as ``trainer=``); anything else replaces it. ``run_id``, ``model``, ``experiment`` and
        ``schema_version`` name the run and cannot change."""
        fixed = sorted(set(sections) & set(RESERVED_SECTIONS))
        if fixed:
            raise ValueError(f"update_config cannot change {fixed}: they identify the run")
        with self._lock:
            for name, value in sections.items():
                old = self._doc.get(name)
                if isinstance(value, dict) and isinstance(old, dict):
                    self._doc[name] = {**old, **value}
                else:
                    self._doc[name] = value
            self._write_config()
        if self.wandb is not None:
            self.wandb.config(jsonable(sections))
        return self._doc

    def event(self, event: str, **payload: Any) -> dict[str, Any]:
        """Append one lifecycle event to ``facts/events.jsonl`` (one whole line, strict JSON)."""
        record = {
            "schema_version": SCHEMA_VERSION,
            "event": event,
            "time": _now(),
            "run_id": self.id,
        }
        record.update(payload)
        line = json.dumps(jsonable(record), sort_keys=True, allow_nan=False) + "\n"
        with self._lock:
            append_lines(self.facts_dir / "events.jsonl", line.encode("utf-8"))
        return record

    def log_epoch(self, epoch: int, **scalars: Any) -> None:
        """Record one epoch's scalars (a row of ``scalars.csv``, an event, and wandb if on)."""
        row = {"epoch": int(epoch), **{k: _plain(v) for k, v in scalars.items()}}
        with self._lock:
            self._scalars.append([row])
        self.event("on_epoch_end", **row)
        if self.wandb is not None:
            self.wandb.log(row, step=int(epoch))

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        """Append per-step rows (each with a ``step`` key) to ``facts/steps.csv``."""
        if not rows:
            return
        plain = []
        for row in rows:
            if "step" not in row:
                raise ValueError(f"each row for log_steps needs a 'step' key; got {sorted(row)}")
            plain.append({k: _plain(v) for k, v in row.items()})
        with self._lock:
            self._steps.append(plain)

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
        self.event("on_checkpoint", kind=kind, path=_relative(Path(path), self.dir), **info)
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

    @property
    def steps(self):
        """This run's ``steps.csv`` as a pandas DataFrame."""
        from .readers import load_steps

        return load_steps([self.dir])

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish("failed" if exc_type else "finished")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    if isinstance(v, str):
        return v.replace("\r", " ").replace("\n", " ")  # a fact is one line
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
