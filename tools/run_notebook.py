#!/usr/bin/env python3
"""Execute curriculum notebooks headless and report what each cost and claimed.

    python tools/run_notebook.py 02-CNN-Revolution/01_lenet5.ipynb [more.ipynb ...]
        [--mode smoke|default|full] [--threads N] [-p NAME VALUE ...] [--out outputs/executed]

For every notebook: papermill runs it in its module folder with SMOKE / FULL set for the mode;
the report gives the wall time, the kernel's CPU seconds (user + system, which machine load
barely changes — a fair budget figure on a shared machine) and the notebook's claims table
(from ``outputs/claims/<notebook>-<mode>.json``). Exits 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(nb: Path, mode: str, threads: int | None, params: list[list[str]], out: Path) -> dict:
    flags = {"smoke": ["-p", "SMOKE", "True"], "full": ["-p", "FULL", "True"], "default": []}[mode]
    extra = [x for name, value in params for x in ("-p", name, value)]
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out / nb.name), "--cwd", str(nb.parent),
           "-k", "python3", "--no-progress-bar", *flags, *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stem = str(nb.relative_to(ROOT)).replace("/", "__").removesuffix(".ipynb")
    runs = Path(os.environ.get("SCRATCHLIB_RUNS", ROOT / "outputs" / "runs"))
    claims_file = runs.parent / "claims" / f"{stem}-{mode}.json"
    claims = json.loads(claims_file.read_text()) if claims_file.exists() else None
    fresh = claims is not None and claims_file.stat().st_mtime >= time.time() - wall - 5
    return {"notebook": str(nb.relative_to(ROOT)), "mode": mode, "ok": done.returncode == 0,
            "wall_s": round(wall, 1), "kernel_cpu_s": round(cpu, 1),
            "claims": claims if fresh else None, "error": done.stderr[-2500:] if done.returncode else ""}  # fmt: skip


def report(r: dict) -> None:
    status = "ok" if r["ok"] else "FAILED"
    print(
        f"\n## {r['notebook']} ({r['mode']}): {status}, wall {r['wall_s']} s, kernel CPU {r['kernel_cpu_s']} s"
    )
    if r["claims"]:
        rec = r["claims"]
        print(
            f"data: {rec.get('data')}; claims recorded after {rec.get('seconds')} s of notebook time"
        )
        for c in rec["claims"]:
            mark = "holds" if c["holds"] else "DOES NOT HOLD"
            check = "checked" if c["checked"] else "reported"
            print(f"- [{mark}; {check}] {c['text']}: {c['measured']} (expected {c['expected']})")
    elif r["ok"]:
        print("(no claims recorded for this mode)")
    if r["error"]:
        print(r["error"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--mode", choices=("smoke", "default", "full"), default="default")
    ap.add_argument("--threads", type=int, default=None, help="OMP/MKL threads for the kernel")
    ap.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "executed")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    results = []
    for nb in args.notebooks:
        nb = nb.resolve()
        if not nb.is_file():
            print(f"error: no notebook {nb}", file=sys.stderr)
            return 2
        results.append(run(nb, args.mode, args.threads, args.parameter, args.out))
        report(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
