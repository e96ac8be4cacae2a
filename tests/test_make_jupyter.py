"""`make jupyter` as root (containers, cloud GPU machines): JupyterLab refuses to start as root
without --allow-root, so the target passes it — and says so — only when the user is root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEARNER_STAMP = ".installed-notebooks+foundations+cnn+detection+sequence+generative+modern"


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_make_jupyter_passes_allow_root_only_for_root(tmp_path: Path, uid: str) -> None:
    venv, fakebin = tmp_path / "venv", tmp_path / "fakebin"
    (venv / "bin").mkdir(parents=True)
    fakebin.mkdir()
    (venv / LEARNER_STAMP).touch()  # installed: newer than pyproject.toml and poetry.lock
    _executable(venv / "bin" / "jupyter", '#!/bin/sh\necho "jupyter called with: $*"\n')
    _executable(fakebin / "id", f"#!/bin/sh\necho {uid}\n")  # who `make` thinks the user is
    out = subprocess.run(
        ["make", "-s", "jupyter", f"VENV={venv}", "POETRY=/bin/true", "PORT=8123"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    called = [line for line in out.stdout.splitlines() if line.startswith("jupyter called with:")]
    assert len(called) == 1, out.stdout
    if uid == "0":
        assert called[0] == "jupyter called with: lab --port=8123 --notebook-dir=. --allow-root"
        assert "you are root" in out.stdout and "--allow-root" in out.stdout
    else:
        assert called[0] == "jupyter called with: lab --port=8123 --notebook-dir=."
        assert "--allow-root" not in out.stdout and "you are root" not in out.stdout
