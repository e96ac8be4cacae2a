"""``ModelInfo``: what a learner (and the tracking) should know about a model, written once.

A leaf module (standard library only): models declare ``MODEL_INFO = ModelInfo(...)``, tracking
records it, and neither has to import the other. ``scratchlib.models`` re-exports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """What a learner (and the tracking) should know about a model, written once."""

    name: str
    paper: str
    authors: str
    year: int
    module: str  # e.g. "01-Foundations"
    category: str  # e.g. "linear classifier", "cnn", "rnn", "generative"
    key_innovations: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()
    paper_result: str = ""  # the headline number the notebook measures against
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key_innovations"] = list(self.key_innovations)
        d["limitations"] = list(self.limitations)
        return d

    def markdown(self) -> str:
        """A short header for notebooks: paper, authors, year, ideas, limits."""
        lines = [f"**{self.name}** — {self.authors} ({self.year}), *{self.paper}*"]
        if self.paper_result:
            lines.append(f"- Paper's result: {self.paper_result}")
        lines += [f"- Key idea: {k}" for k in self.key_innovations]
        lines += [f"- Cannot: {k}" for k in self.limitations]
        return "\n".join(lines)
