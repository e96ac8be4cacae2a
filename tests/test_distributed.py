"""DDP on PyTorch's own engine: two CPU processes (gloo) launched by torchrun train exactly what one
process trains on the same global batch, and only rank 0 writes facts (docs/distributed.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "helpers" / "ddp_fit.py"


def _train(out: Path, nproc: int) -> tuple[dict, dict]:
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[2])}
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(SCRIPT), str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = torch.load(out / "weights.pt", weights_only=True)
    return weights, json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    one, one_result = _train(tmp_path / "one", 1)
    two, two_result = _train(tmp_path / "two", 2)
    assert one_result["world_size"] == 1 and two_result["world_size"] == 2
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst <= 1e-5, f"DDP parameters differ from one process by {worst:.2e}"
    print(f"largest parameter difference, 2 gloo processes vs 1: {worst:.2e}")
    h1, h2 = one_result["history"], two_result["history"]
    assert h1["step"] == h2["step"] == [6, 12]
    for key in ("train_loss", "val_loss", "val_accuracy"):  # metrics reduced over both ranks
        assert h2[key] == pytest.approx(h1[key], abs=1e-5)
    runs = list((tmp_path / "two" / "runs").iterdir())
    assert len(runs) == 1  # one run folder, written by rank 0
    assert (runs[0] / "checkpoints" / "last.pt").exists()
