#!/usr/bin/env python3
"""Execute curriculum notebooks headless and report what each cost and claimed.

    python tools/run_notebook.py 02-CNN-Revolution/01_lenet5.ipynb [more.ipynb ...]
        [--all] [--mode smoke|default|full] [--threads N] [-p NAME VALUE ...]
        [--out outputs/executed] [--json FILE] [--markdown FILE]

For every notebook papermill runs it in its module folder with SMOKE / FULL set for the mode. The
report gives:

* ``kernel CPU``: the CPU seconds (user + system) the kernel spent running the notebook's cells,
  kernel start excluded — a fair budget figure on a shared machine, which load barely changes;
* ``wall``: the seconds the cells took (kernel start excluded), and the kernel's start-up apart;
* the notebook's claims table, read from ``outputs/claims/<notebook>-<mode>.json``.

Each result is also written as a timing fact, ``outputs/timings/<notebook>-<mode>.json`` (beside
the claims), which ``tools/results_tables.py`` turns into the module READMEs' times. ``--all`` runs
every notebook of the six modules (what ``make test-default`` does). Exits 1 if any notebook failed,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, results_tables.py
MODULES = (
    "01-Foundations",
    "02-CNN-Revolution",
    "03-Applying-CNNs",
    "04-Sequence-Models",
    "05-Generative",
    "06-Modern",
)
MODE_PARAMETERS = {"smoke": {"SMOKE": True}, "full": {"FULL": True}, "default": {}}


def all_notebooks(root: Path = ROOT) -> list[Path]:
    """Every curriculum notebook, module by module, in order."""
    return sorted(p for m in MODULES for p in (root / m).glob("[0-9][0-9]_*.ipynb"))


def notebook_id(nb: Path) -> str:
    """``01-Foundations/01_perceptron`` for a notebook of the curriculum (its name elsewhere)."""
    try:
        return nb.resolve().relative_to(ROOT).with_suffix("").as_posix()
    except ValueError:
        return nb.stem


def facts_dir(kind: str) -> Path:
    """``outputs/<kind>`` (``claims``, ``timings``): beside ``$SCRATCHLIB_RUNS`` when set."""
    runs = Path(os.environ.get("SCRATCHLIB_RUNS", ROOT / "outputs" / "runs"))
    return runs.parent / kind


def plain(text: str) -> str:
    """``text`` without the terminal colour codes a kernel's traceback carries."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def parse_value(text: str) -> Any:
    """A ``-p`` value as papermill reads one: True/False/None, numbers, tuples... else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class KernelClock:
    """CPU seconds of the kernel process (and anything it starts), read through nbclient's hooks:
    once the kernel has started (before the first cell) and after every cell."""

    def __init__(self) -> None:
        self.start_cpu = self.last_cpu = 0.0
        self.start_wall = self.last_wall = 0.0
        self._procs: list[Any] = []

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs:
            try:
                t = p.cpu_times()
            except Exception:  # noqa: BLE001 - a process that ended: its time is already counted
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def on_notebook_start(self, **_: Any) -> None:
        import psutil

        me = psutil.Process()
        self._procs = [c for c in me.children(recursive=True)]
        self.start_cpu = self.last_cpu = self._cpu()
        self.start_wall = self.last_wall = time.perf_counter()

    def on_cell_complete(self, **_: Any) -> None:
        self.last_cpu, self.last_wall = self._cpu(), time.perf_counter()


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send this process's standard error — and so the kernel's, which inherits it — to ``path``
    (the kernel's start-up and shutdown chatter would drown the report)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run(
    nb: Path, mode: str, threads: int | None, params: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Execute one notebook; return its result (also written as a timing fact)."""
    import papermill as pm

    parameters = {**MODE_PARAMETERS[mode], **params}
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out.mkdir(parents=True, exist_ok=True)
    clock, error = KernelClock(), ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.time()
    t0 = time.perf_counter()
    log = out / f"{nb.stem}.stderr.txt"
    try:
        with stderr_to(log):
            pm.execute_notebook(
                str(nb),
                str(out / nb.name),
                parameters=parameters,
                cwd=str(nb.parent),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
                on_notebook_start=clock.on_notebook_start,
                on_cell_complete=clock.on_cell_complete,
            )
    except pm.PapermillExecutionError as exc:
        trace = plain("\n".join(exc.traceback))[-2000:]
        error = plain(f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n{trace}")
    except Exception as exc:  # noqa: BLE001 - a kernel that would not start, a bad notebook, ...
        error = f"{type(exc).__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    total = time.perf_counter() - t0
    name = notebook_id(nb)
    stem = name.replace("/", "__")
    claims_file = facts_dir("claims") / f"{stem}-{mode}.json"
    fresh = claims_file.exists() and claims_file.stat().st_mtime >= started - 1
    result = {
        "notebook": name,
        "mode": mode,
        "ok": not error,
        "kernel_cpu_s": round(clock.last_cpu - clock.start_cpu, 1),
        "wall_s": round(clock.last_wall - clock.start_wall, 1),
        "kernel_start_s": round(clock.start_wall - t0, 1) if clock.start_wall else None,
        "total_wall_s": round(total, 1),
        "threads": threads,
        "parameters": {k: repr(v) for k, v in parameters.items()},
        "time": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load, 2) if load is not None else None,
            "platform": platform.platform(),
            "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        },
        "executed": str(out / nb.name),
        "stderr": str(log),
        "claims": json.loads(claims_file.read_text(encoding="utf-8")) if fresh else None,
        "error": error,
    }
    timing = {k: v for k, v in result.items() if k != "claims"}
    path = facts_dir("timings") / f"{stem}-{mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(timing, indent=1), encoding="utf-8")
    tmp.replace(path)
    return result


def claim_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """The claims of a record as table rows, measured values formatted as the notebook shows them."""
    from results_tables import claim_of  # a sibling script: tools/ is on sys.path

    return [claim_of(c, record.get("mode", "default")).row() for c in record.get("claims", [])]


def report(r: dict[str, Any]) -> str:
    """The plain-text report of one result."""
    lines = [
        f"\n## {r['notebook']} ({r['mode']}): {'ok' if r['ok'] else 'FAILED'}, "
        f"kernel CPU {r['kernel_cpu_s']} s, wall {r['wall_s']} s "
        f"(+ kernel start {r['kernel_start_s']} s; threads {r['threads'] or 'default'})"
    ]
    rec = r["claims"]
    if rec:
        lines.append(f"data: {rec.get('data')}")
        for row in claim_rows(rec):
            mark = "holds" if row["holds"] == "yes" else "DOES NOT HOLD"
            checked = "checked" if r["mode"] in row["checked in"].split("/") else "reported"
            lines.append(
                f"- [{mark}; {checked}] {row['claim']}: {row['measured']} (expected {row['expected']})"
            )
    elif r["ok"]:
        lines.append("(no claims recorded for this mode)")
    if r["error"]:
        lines.append(r["error"])
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: list[dict[str, Any]]) -> str:
    """A summary table of every result, then each notebook's claims table."""
    out = [
        "| notebook | mode | result | kernel CPU s | wall s | claims held / checked |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = claim_rows(r["claims"]) if r["claims"] else []
        checked = [x for x in rows if r["mode"] in x["checked in"].split("/")]
        held = sum(x["holds"] == "yes" for x in checked)
        tally = f"{held} / {len(checked)}" if rows else "no claims recorded"
        out.append(
            f"| {r['notebook']} | {r['mode']} | {'ok' if r['ok'] else '**FAILED**'} "
            f"| {r['kernel_cpu_s']} | {r['wall_s']} | {tally} |"
        )
    for r in results:
        out += ["", f"### {r['notebook']} ({r['mode']})", ""]
        if r["error"]:
            out += ["```", r["error"].strip(), "```", ""]
        if not r["claims"]:
            out.append("No claims recorded.")
            continue
        out += ["| claim | measured | expected | checked in | holds |", "|---|---|---|---|---|"]
        for x in claim_rows(r["claims"]):
            out.append(
                f"| {_cell(x['claim'])} | {_cell(x['measured'])} | {_cell(x['expected'])} "
                f"| {x['checked in']} | {x['holds']} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--all", action="store_true", help="every notebook of the six modules")
    ap.add_argument("--mode", choices=("smoke", "default", "full"), default="default")
    ap.add_argument("--threads", type=int, default=None, help="OMP/MKL threads for the kernel")
    ap.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "executed")
    ap.add_argument("--json", type=Path, help="also write every result (claims included) as JSON")
    ap.add_argument("--markdown", type=Path, help="also write a summary and the claims tables")
    args = ap.parse_args(argv)
    notebooks = all_notebooks() if args.all else [nb.resolve() for nb in args.notebooks]
    if not notebooks:
        print("error: name notebooks to run, or --all", file=sys.stderr)
        return 2
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        print(f"error: no notebook {', '.join(missing)}; see README.md", file=sys.stderr)
        return 2
    params = {name: parse_value(value) for name, value in args.parameter}
    results = []
    for nb in notebooks:
        results.append(run(nb, args.mode, args.threads, params, args.out))
        print(report(results[-1]), flush=True)
        if args.json:  # after every notebook: a long run that is stopped keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
        if args.markdown:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown(results), encoding="utf-8")
    failed = [r["notebook"] for r in results if not r["ok"]]
    print(f"\n{len(results) - len(failed)} of {len(results)} notebooks ran in {args.mode} mode")
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
