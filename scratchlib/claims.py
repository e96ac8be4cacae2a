"""Claims: every result a notebook states, computed from the run that is executing (DESIGN.md §4).

A notebook never types a result. It measures, then states the result as a claim::

    C = claims.Claims("02-CNN-Revolution/01_lenet5", smoke=SMOKE, full=FULL)
    C.add("cnn_beats_mlp", "LeNet-5 makes fewer test errors than an MLP with as many weights",
          measured={"LeNet-5": err_cnn, "MLP": err_mlp}, fmt="{:.2%}",
          expected="LeNet-5 < MLP", holds=err_cnn < err_mlp, modes=("default", "full"),
          reference="paper: 0.95% (LeNet-5) vs 4.5% (a 300-unit MLP)")
    ...
    C.table()   # claim · measured · expected · reference · checked in · holds
    C.check()   # the checks cell: asserts the claims this mode can support, records them

``modes`` says where a claim is *asserted*: SMOKE supports mechanics (shapes, a finite loss that
falls), the default CPU run the qualitative effect, FULL the paper's number under its protocol.
Every claim is reported in every mode with whether it held, so a learner sees from the run's own
numbers when an effect did not appear. Claims are recorded as facts: an ``on_claims`` event in the
active run and ``outputs/claims/<notebook>-<mode>.json``, from which the module READMEs' results
tables are generated.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scratchlib.utils import atomic_write_json, jsonable

__all__ = ["Claim", "Claims", "MODES", "mode_of", "claims_dir", "load_claims"]

MODES = ("smoke", "default", "full")


def mode_of(smoke: bool, full: bool) -> str:
    """``"smoke"``, ``"default"`` or ``"full"`` from a notebook's two flags (SMOKE wins)."""
    return "smoke" if smoke else ("full" if full else "default")


def claims_dir() -> Path:
    """Where claim records go: ``outputs/claims`` (beside ``$SCRATCHLIB_RUNS`` when that is set)."""
    from scratchlib.track import runs_root

    return runs_root().parent / "claims"


@dataclass
class Claim:
    """One stated result: what it says, what this run measured, and whether that supports it."""

    id: str
    text: str
    measured: dict[str, Any]
    expected: str
    holds: bool
    modes: tuple[str, ...]
    reference: str = ""
    fmt: str = "{:.4g}"
    mode: str = "default"

    @property
    def checked(self) -> bool:
        """True when this mode asserts the claim (it can support it)."""
        return self.mode in self.modes

    def measured_text(self) -> str:
        def show(v: Any) -> str:
            if v is None:  # a non-finite value read back from JSON (written as null)
                return "—"
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return str(v)
            return "nan" if isinstance(v, float) and math.isnan(v) else self.fmt.format(v)

        return ", ".join(f"{k} {show(v)}" if k else show(v) for k, v in self.measured.items())

    def sentence(self) -> str:
        """The claim as the notebook states it, with this run's numbers and verdict."""
        verdict = "holds" if self.holds else "does NOT hold"
        note = "" if self.checked else f" (reported, not asserted in {self.mode} mode)"
        return (
            f"{'✓' if self.holds else '✗'} {self.text}: measured {self.measured_text()} "
            f"(expected {self.expected}) — {verdict} in this run{note}."
        )

    def row(self) -> dict[str, Any]:
        return {
            "claim": self.text,
            "measured": self.measured_text(),
            "expected": self.expected,
            "reference": self.reference,
            "checked in": "/".join(self.modes),
            "holds": "yes" if self.holds else "NO",
        }


@dataclass
class Claims:
    """The claims of one notebook run (see the module docstring)."""

    notebook: str
    smoke: bool = False
    full: bool = False
    data_sources: dict[str, str] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mode = mode_of(self.smoke, self.full)
        self._t0 = time.perf_counter()

    def data(self, name: str, source: str) -> None:
        """Record which data a claim was measured on (``DataBundle.source``: real or fallback)."""
        self.data_sources[name] = source

    def add(
        self,
        id: str,
        text: str,
        *,
        measured: Any,
        expected: str,
        holds: bool,
        modes: Sequence[str] = ("default", "full"),
        reference: str = "",
        fmt: str = "{:.4g}",
        say: bool = True,
    ) -> Claim:
        """State a result. ``measured`` is a number or ``{label: number}``; ``holds`` is the
        comparison that supports the claim, computed by the notebook from those numbers;
        ``modes`` are the modes whose checks cell asserts it. Prints the claim's sentence."""
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {tuple(modes)}")
        if any(c.id == id for c in self.claims):
            raise ValueError(f"claim {id!r} was already added; ids name one claim each")
        values = measured if isinstance(measured, dict) else {"": measured}
        claim = Claim(
            id, text, dict(values), expected, bool(holds), tuple(modes), reference, fmt, self.mode
        )
        self.claims.append(claim)
        if say:
            print(claim.sentence())
        return claim

    def loss_fell(self, losses: Iterable[float], what: str = "training loss") -> Claim:
        """The mechanics every mode supports: the loss is finite and fell."""
        losses = [float(v) for v in losses]
        finite = all(math.isfinite(v) for v in losses)
        return self.add(
            f"{what.replace(' ', '_')}_fell",
            f"the {what} is finite and fell",
            measured={"first": losses[0], "last": losses[-1]},
            expected="finite, last < first",
            holds=finite and len(losses) > 1 and losses[-1] < losses[0],
            modes=MODES,
        )

    def table(self) -> Any:
        """The claims table (a pandas DataFrame; shown as a table in a notebook)."""
        import pandas as pd

        return pd.DataFrame([c.row() for c in self.claims])

    def failures(self) -> list[Claim]:
        """The claims this mode asserts that did not hold."""
        return [c for c in self.claims if c.checked and not c.holds]

    def check(self) -> None:
        """The checks cell: record every claim, then assert those this mode can support."""
        self.record()
        bad = self.failures()
        if not any(c.checked for c in self.claims):
            raise AssertionError(f"no claim of {self.notebook} is checked in {self.mode} mode")
        if bad:
            lines = "\n".join(f"- {c.sentence()}" for c in bad)
            raise AssertionError(f"{len(bad)} claim(s) did not hold in {self.mode} mode:\n{lines}")
        print(f"all {sum(c.checked for c in self.claims)} claims checked in {self.mode} mode hold")

    def record(self) -> Path:
        """Write the claims as facts: ``outputs/claims/<notebook>-<mode>.json`` and an
        ``on_claims`` event in the active run."""
        import torch

        from scratchlib import track

        record = {
            "notebook": self.notebook,
            "mode": self.mode,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self._t0, 1),
            "data": self.data_sources,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "platform": platform.platform(),
            "claims": [{**asdict(c), "checked": c.checked} for c in self.claims],
        }
        stem = self.notebook.replace("/", "__").removesuffix(".ipynb")
        path = claims_dir() / f"{stem}-{self.mode}.json"
        atomic_write_json(path, jsonable(record), sort_keys=False)  # measured values in order
        run = track.active()
        if run is not None:
            run.event("on_claims", **{k: v for k, v in record.items() if k != "platform"})
        return path


def load_claims(folder: str | Path | None = None) -> Any:
    """Every recorded claim under ``folder`` (default :func:`claims_dir`) as one pandas table:
    notebook, mode, time, seconds, id, text, measured, expected, holds, checked, reference."""
    import json

    import pandas as pd

    rows = []
    for path in sorted(Path(folder or claims_dir()).glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        for c in rec.get("claims", []):
            rows.append({k: rec.get(k) for k in ("notebook", "mode", "time", "seconds")} | c)
    return pd.DataFrame(rows)
