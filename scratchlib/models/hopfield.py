"""The Hopfield network — Hopfield (1982), "Neural networks and physical systems with emergent
collective computational abilities", PNAS 79(8).

N binary neurons ``s_i ∈ {−1, +1}`` with symmetric weights and no self-connections, set by
Hebb's rule from the patterns ``ξ^μ`` to store:  ``W = (1/N) Σ_μ ξ^μ ξ^μᵀ``, ``W_ii = 0``.
Asynchronous updates ``s_i ← sign(Σ_j W_ij s_j)`` never increase the energy
``E(s) = −½ sᵀ W s``, so the state rolls downhill into a stored memory (or a spurious one).
Amit, Gutfreund & Sompolinsky (1985) showed recall collapses beyond about 0.138 N random patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ModelInfo, register

__all__ = ["Hopfield", "capacity_curve", "half_recall_point", "corrupt"]


@register
class Hopfield:
    """A Hopfield network of ``n`` ±1 neurons in NumPy."""

    MODEL_INFO = ModelInfo(
        name="Hopfield network",
        paper="Neural networks and physical systems with emergent collective computational abilities",
        authors="John J. Hopfield",
        year=1982,
        module="01-Foundations",
        category="associative memory",
        key_innovations=(
            "memory as the minima of an energy function that the dynamics only ever lowers",
            "content-addressable recall: a corrupted cue completes to the stored pattern",
        ),
        limitations=(
            "capacity about 0.138 N random patterns (Amit, Gutfreund & Sompolinsky 1985)",
            "spurious states: mixtures and inverses of stored patterns are minima too",
            "correlated patterns (like real digits) interfere far below that capacity",
        ),
        paper_result="about 0.15 N patterns can be stored before recall errors become severe",
        url="https://doi.org/10.1073/pnas.79.8.2554",
    )

    def __init__(self, n: int, seed: int = 0) -> None:
        if n < 2:
            raise ValueError(f"a Hopfield network needs n >= 2 neurons, got {n}")
        self.n = n
        self.W = np.zeros((n, n))
        self.rng = np.random.default_rng(seed)
        self.patterns = np.zeros((0, n))

    def _check(self, s: np.ndarray, what: str = "state") -> np.ndarray:
        s = np.asarray(s, dtype=float)
        if s.shape[-1] != self.n or not np.all(np.isin(s, (-1.0, 1.0))):
            raise ValueError(
                f"a {what} must be ±1 values of length {self.n}; got shape {s.shape}"
                " (binarise images with np.where(x > 0.5, 1, -1))"
            )
        return s

    def store(self, patterns: np.ndarray) -> Hopfield:
        """Hebb's rule: ``W = (1/N) Σ ξ ξᵀ`` with a zero diagonal (no neuron excites itself)."""
        P = self._check(np.atleast_2d(patterns), "pattern")
        self.patterns = P
        self.W = P.T @ P / self.n  # W_ij = 1/N Σ_μ ξ_i^μ ξ_j^μ
        np.fill_diagonal(self.W, 0.0)  # W_ii = 0
        return self

    def energy(self, s: np.ndarray) -> float:
        s = self._check(s)
        return float(-0.5 * s @ self.W @ s)  # E(s) = −½ sᵀ W s

    def recall(
        self, s: np.ndarray, max_sweeps: int = 20, track_energy: bool = False
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Asynchronous updates in random order until a full sweep changes nothing.

        Returns the final state and ``{"sweeps", "converged", "energies"}`` (energy after every
        single-neuron update when ``track_energy``).
        """
        s = self._check(s).copy()
        h = self.W @ s  # local fields, updated incrementally when one neuron flips
        energies = [float(-0.5 * s @ h)] if track_energy else []
        for sweep in range(1, max_sweeps + 1):
            changed = 0
            for i in self.rng.permutation(self.n):
                new = 1.0 if h[i] > 0 else (-1.0 if h[i] < 0 else s[i])  # s_i ← sign(Σ_j W_ij s_j)
                if new != s[i]:
                    h += self.W[:, i] * (new - s[i])  # only column i changes the fields
                    s[i] = new
                    changed += 1
                if track_energy:
                    energies.append(float(-0.5 * s @ h))
            if changed == 0:
                return s, {"sweeps": sweep, "converged": True, "energies": energies}
        return s, {"sweeps": max_sweeps, "converged": False, "energies": energies}

    def overlap(self, s: np.ndarray, pattern: np.ndarray) -> float:
        """``m = s·ξ / N``: 1 for perfect recall, −1 for the inverted pattern, ~0 for unrelated."""
        return float(np.asarray(s) @ np.asarray(pattern) / self.n)

    def __repr__(self) -> str:
        return f"Hopfield(n={self.n}, stored={len(self.patterns)})"


def corrupt(pattern: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Flip a ``fraction`` of a ±1 pattern's entries (at random positions)."""
    s = np.array(pattern, dtype=float)
    k = int(round(fraction * s.size))
    idx = rng.choice(s.size, size=k, replace=False)
    s[idx] *= -1
    return s


def capacity_curve(
    n: int,
    loads: np.ndarray,
    trials: int = 3,
    probes: int = 20,
    noise: float = 0.0,
    threshold: float = 0.99,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Recall quality against load ``α = P/N`` for random patterns.

    For each load, store ``P = round(α N)`` random ±1 patterns, start from (a ``noise``-corrupted
    copy of) up to ``probes`` of them, run to a fixed point, and count a recall when the final
    overlap ``m >= threshold`` (default 0.99: at most 0.5% of the bits wrong, as m = 1 - 2 x the
    fraction wrong). Returns ``{"load", "recall", "overlap"}`` (means over trials).
    """
    rng = np.random.default_rng(seed)
    recall, overlap = [], []
    for alpha in loads:
        p = max(1, int(round(alpha * n)))
        hits, ms = [], []
        for _ in range(trials):
            patterns = rng.choice([-1.0, 1.0], size=(p, n))
            net = Hopfield(n, seed=int(rng.integers(1 << 31))).store(patterns)
            for mu in rng.permutation(p)[:probes]:
                cue = corrupt(patterns[mu], noise, rng) if noise else patterns[mu]
                s, _ = net.recall(cue)
                m = net.overlap(s, patterns[mu])
                ms.append(m)
                hits.append(m >= threshold)
        recall.append(np.mean(hits))
        overlap.append(np.mean(ms))
    return {
        "load": np.asarray(loads, float),
        "recall": np.array(recall),
        "overlap": np.array(overlap),
    }


def half_recall_point(curve: dict[str, np.ndarray]) -> float:
    """The load where recall first falls through 50% (linear interpolation between measured loads)."""
    a, r = curve["load"], curve["recall"]
    for i in range(1, len(a)):
        if r[i - 1] >= 0.5 > r[i]:
            return float(a[i - 1] + (r[i - 1] - 0.5) * (a[i] - a[i - 1]) / (r[i - 1] - r[i]))
    return float("nan")
