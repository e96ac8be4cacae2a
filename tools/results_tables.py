#!/usr/bin/env python3
"""Write each module README's results section from the facts: never typed, always generated.

    python tools/results_tables.py [--module 01-Foundations ...] [--claims DIR] [--timings DIR]

The section between ``<!-- results:begin -->`` and ``<!-- results:end -->`` of
``<module>/README.md`` is replaced by

* a times table: SMOKE and default kernel CPU seconds and wall seconds per notebook, from the
  timing facts ``tools/run_notebook.py`` writes (``outputs/timings/<notebook>-<mode>.json``);
* per notebook, a claims table — claim · default measured · FULL measured · paper / reference —
  from the claims records the notebooks' checks cells write (``outputs/claims/<notebook>-<mode>.json``,
  see ``scratchlib.claims``). A notebook without a FULL record says "not run"; a FULL record says
  where it was measured (device, date, file).

Everything outside the markers is kept. A README without both markers (begin before end, once each)
is an error that names the file and the lines to add; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
MODULES = (
    "01-Foundations",
    "02-CNN-Revolution",
    "03-Applying-CNNs",
    "04-Sequence-Models",
    "05-Generative",
    "06-Modern",
)


class MarkersError(ValueError):
    """A README lacks the results markers (or has them twice, or in the wrong order)."""


def default_dir(kind: str) -> Path:
    """``outputs/claims`` or ``outputs/timings``: beside ``$SCRATCHLIB_RUNS`` when that is set."""
    runs = Path(os.environ.get("SCRATCHLIB_RUNS", ROOT / "outputs" / "runs"))
    return runs.parent / kind


def read_facts(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(notebook, mode): record}`` for every readable JSON fact in ``folder``."""
    facts: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            print(f"warning: skipping unreadable fact {path}", file=sys.stderr)
            continue
        if isinstance(rec, dict) and rec.get("notebook") and rec.get("mode"):
            facts[(rec["notebook"], rec["mode"])] = {**rec, "_file": path.name}
    return facts


def claim_of(c: dict[str, Any], mode: str) -> Any:
    """A recorded claim as a :class:`scratchlib.claims.Claim` (for its formatting)."""
    from scratchlib.claims import Claim

    return Claim(
        **{k: c[k] for k in ("id", "text", "measured", "expected", "holds")},
        modes=tuple(c.get("modes", ())),
        reference=c.get("reference", ""),
        fmt=c.get("fmt", "{:.4g}"),
        mode=c.get("mode", mode),
    )


def cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _measured(c: dict[str, Any] | None, mode: str) -> str:
    if c is None:
        return "—"
    claim = claim_of(c, mode)
    verdict = "✓" if claim.holds else "✗"
    note = "" if claim.checked else " (reported, not asserted)"
    return cell(f"{claim.measured_text()} {verdict}{note}")


def _time(t: dict[str, Any] | None) -> str:
    if t is None:
        return "not measured"
    if not t.get("ok", True):
        return "FAILED"
    threads = (
        f", {t['threads']} thread{'s' if t['threads'] != 1 else ''}" if t.get("threads") else ""
    )
    return f"{t['kernel_cpu_s']:.0f} s CPU{threads} · {t['wall_s']:.0f} s wall"


def _where(t: dict[str, Any] | None) -> str:
    if t is None:
        return ""
    m = t.get("machine", {})
    load = m.get("load_average_at_start")
    return cell(
        f"{str(t.get('time', ''))[:10]}, {m.get('cpus', '?')} CPUs"
        + (f", load {load:.1f}" if load is not None else "")
    )


def _data(rec: dict[str, Any] | None) -> str:
    if not rec or not rec.get("data"):
        return ""
    return cell(", ".join(f"{k}: {v}" for k, v in rec["data"].items()))


def notebook_section(name: str, claims: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The claims table of one notebook (default and FULL side by side)."""
    default, full = claims.get((name, "default")), claims.get((name, "full"))
    short = name.split("/")[-1]
    if default is None and full is None:
        return [f"**{short}**: no default or FULL claims recorded yet (`make test-default`).", ""]
    where_default = (
        f"default measured {str(default['time'])[:10]} on {default.get('device', '?')}"
        f" ({_data(default) or 'data not recorded'})"
        if default
        else "default: not run"
    )
    where_full = (
        f"FULL measured {str(full['time'])[:10]} on {full.get('device', '?')} "
        f"({_data(full) or 'data not recorded'}; `{full['_file']}`)"
        if full
        else "FULL: not run"
    )
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    for mode, rec in (("default", default), ("full", full)):
        for c in (rec or {}).get("claims", []):
            by_id.setdefault(c["id"], {})[mode] = c
    lines = [
        f"**{short}** — {where_default}; {where_full}.",
        "",
        "| claim | default measured | FULL measured | paper / reference |",
        "|---|---|---|---|",
    ]
    for modes in by_id.values():
        any_c = modes.get("default") or modes["full"]
        full_cell = _measured(modes.get("full"), "full") if full else "not run"
        lines.append(
            f"| {cell(any_c['text'])} | {_measured(modes.get('default'), 'default')} "
            f"| {full_cell} | {cell(any_c.get('reference', ''))} |"
        )
    return lines + [""]


def module_section(
    module: str,
    notebooks: list[str],
    claims: dict[tuple[str, str], dict[str, Any]],
    timings: dict[tuple[str, str], dict[str, Any]],
) -> str:
    """The generated text between the markers for one module."""
    lines = [
        "<!-- generated by `make readme-tables` (tools/results_tables.py) from outputs/claims/ and "
        "outputs/timings/: do not edit by hand -->",
        "",
        "Times: the kernel's CPU seconds for the notebook's cells (kernel start excluded; a fair "
        "figure on a busy machine) and wall seconds, measured by `tools/run_notebook.py`.",
        "",
        "| notebook | SMOKE | default | default data | measured |",
        "|---|---|---|---|---|",
    ]
    for name in notebooks:
        short = name.split("/")[-1]
        smoke, default = timings.get((name, "smoke")), timings.get((name, "default"))
        data = _data(claims.get((name, "default")))
        lines.append(
            f"| [{short}]({short}.ipynb) | {_time(smoke)} | {_time(default)} | {data} "
            f"| {_where(default or smoke)} |"
        )
    if any(
        t.get("machine", {}).get("pythondontwritebytecode")
        for (nb, _), t in timings.items()
        if nb in notebooks
    ):
        lines += [
            "",
            "(Measured with `PYTHONDONTWRITEBYTECODE` set, so every import was compiled afresh: a "
            "machine that caches bytecode, as Python does by default, spends a few seconds less.)",
        ]
    lines += [
        "",
        "Claims: each result a notebook states, as measured by its last default and FULL runs "
        '(✓ held, ✗ did not; "reported, not asserted": that mode cannot support the claim).',
        "",
    ]
    for name in notebooks:
        lines += notebook_section(name, claims)
    return "\n".join(lines).rstrip() + "\n"


def replace_section(text: str, section: str, path: Path) -> str:
    """``text`` with everything between the markers replaced by ``section``."""
    begins, ends = text.count(BEGIN), text.count(END)
    if begins != 1 or ends != 1 or text.index(BEGIN) > text.index(END):
        raise MarkersError(
            f"{path}: the results section needs the two marker lines {BEGIN} and {END}, once each "
            f"and in that order (found {begins} begin and {ends} end). Add them where the results "
            "table belongs, then run `make readme-tables` again."
        )
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def module_notebooks(folder: Path) -> list[str]:
    """``<module>/<notebook>`` names (no suffix) of the module's notebooks, in order."""
    return [f"{folder.name}/{p.stem}" for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))]


def write_readmes(modules: list[Path], claims_dir: Path, timings_dir: Path) -> list[Path]:
    """Regenerate the results section of every module README; returns the files changed.
    Every README is checked before any is written."""
    claims, timings = read_facts(claims_dir), read_facts(timings_dir)
    new: dict[Path, str] = {}
    for folder in modules:
        readme = folder / "README.md"
        if not readme.is_file():
            raise MarkersError(f"{readme}: no such file (every module folder has a README)")
        text = readme.read_text(encoding="utf-8")
        section = module_section(folder.name, module_notebooks(folder), claims, timings)
        new[readme] = replace_section(text, section, readme)
    changed = []
    for readme, text in new.items():
        if readme.read_text(encoding="utf-8") != text:
            readme.write_text(text, encoding="utf-8")
            changed.append(readme)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", help="a module folder (default: all six)")
    ap.add_argument("--claims", type=Path, default=None, help="claims records (outputs/claims)")
    ap.add_argument("--timings", type=Path, default=None, help="timing facts (outputs/timings)")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = args.module or [m for m in MODULES if (args.root / m).is_dir()]
    unknown = [m for m in names if not (args.root / m).is_dir()]
    if unknown:
        print(f"error: no module folder {', '.join(unknown)}; modules: {', '.join(MODULES)}")
        return 2
    try:
        changed = write_readmes(
            [args.root / m for m in names],
            args.claims or default_dir("claims"),
            args.timings or default_dir("timings"),
        )
    except MarkersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"updated {path.relative_to(args.root) if path.is_relative_to(args.root) else path}")
    if not changed:
        print("README results sections already match the facts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
