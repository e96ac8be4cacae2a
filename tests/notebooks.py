"""Find the curriculum's notebooks (shared by the notebook tests)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "01-Foundations",
    "02-CNN-Revolution",
    "03-Applying-CNNs",
    "04-Sequence-Models",
    "05-Generative",
    "06-Modern",
]


def notebooks() -> list[Path]:
    return sorted(p for m in MODULES for p in (ROOT / m).glob("[0-9][0-9]_*.ipynb"))
