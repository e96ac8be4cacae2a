"""Every curriculum notebook: the contract (DESIGN.md section 4) and a smoke-mode execution.

Execution uses papermill with ``SMOKE=True`` and the module folder as working directory; a failing
cell fails the test with the notebook's own traceback. pytest-xdist spreads them over the cores.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from notebooks import ROOT, notebooks

NOTEBOOKS = notebooks()
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]
REQUIRED_PARAMETERS = ("SMOKE", "FULL", "SEED", "DEVICE", "USE_WANDB")


def _source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def test_the_curriculum_has_notebooks() -> None:
    # Guards the parametrised tests below against silently collecting nothing.
    assert len(NOTEBOOKS) >= 1, "no notebooks found in the module folders"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_contract(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).lstrip().startswith("# "), (
        "the first cell must be a markdown title"
    )
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"want exactly one cell tagged 'parameters', found {len(params)}"
    p = _source(params[0])
    missing = [n for n in REQUIRED_PARAMETERS if not re.search(rf"^\s*{n}\s*=", p, re.M)]
    assert not missing, f"the parameters cell does not set {missing}"
    assert code.index(params[0]) == 0, "the parameters cell must be the first code cell"
    assert any(re.search(r"^\s*(from|import)\s+scratchlib", _source(c), re.M) for c in code)
    assert "assert" in _source(code[-1]), "the last code cell must be the checks cell (asserts)"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"code cells {dirty} have outputs: run `make strip`"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_in_smoke_mode(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill as pm

    # pytest-xdist runs one notebook per core: one thread per kernel avoids oversubscription,
    # which on a 2-core machine slows torch down many times over.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")

    out = tmp_path / path.name
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(out),
            parameters={"SMOKE": True},
            cwd=str(path.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            # the kernel inherits the isolated SCRATCHLIB_RUNS / _DATA / _OFFLINE from conftest
        )
    except pm.PapermillExecutionError as exc:
        pytest.fail(
            f"{path.name} failed in cell {exc.exec_count}:\n{exc.ename}: {exc.evalue}\n"
            f"{''.join(exc.traceback)[-3000:]}",
            pytrace=False,
        )
    elapsed = time.perf_counter() - t0
    runs = list(Path(os.environ["SCRATCHLIB_RUNS"]).glob("run_*"))
    assert runs, f"{path.name} left no run folder with facts"
    assert any((r / "facts" / "events.jsonl").exists() for r in runs)
    print(f"{path.name}: {elapsed:.1f} s (smoke, kernel start included)")
