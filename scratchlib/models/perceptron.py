"""The Perceptron — Rosenblatt (1958), "The perceptron: a probabilistic model for information
storage and organization in the brain", Psychological Review 65(6).

A linear threshold unit ``y = step(w·x + b)`` trained by the perceptron rule: on a mistake, move
``w`` towards the example (``w += lr · t · x`` with ``t = ±1``). On linearly separable data it
makes a finite number of mistakes — at most ``(R/γ)²`` (Block 1962; Novikoff 1962) — and stops;
on data that is not separable (XOR) it never stops changing its mind (Minsky & Papert 1969).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratchlib.train.loop import fit_epochs

from . import ModelInfo, register

__all__ = ["Perceptron", "novikoff_bound"]


@register
class Perceptron:
    """A single perceptron in NumPy, for two classes labelled 0/1 (internally -1/+1)."""

    MODEL_INFO = ModelInfo(
        name="Perceptron",
        paper="The perceptron: a probabilistic model for information storage and organization in the brain",
        authors="Frank Rosenblatt",
        year=1958,
        module="01-Foundations",
        category="linear classifier",
        key_innovations=(
            "a neuron that learns its weights from examples (error-driven updates)",
            "guaranteed convergence on linearly separable data (Block 1962; Novikoff 1962)",
        ),
        limitations=(
            "only linear decision boundaries: cannot learn XOR (Minsky & Papert 1969)",
            "never settles on data that is not separable",
        ),
        paper_result="learns any linearly separable split in finitely many mistakes, <= (R/gamma)^2",
        url="https://doi.org/10.1037/h0042519",
    )

    def __init__(self, n_features: int, lr: float = 1.0, seed: int = 0) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.n_features, self.lr, self.seed = n_features, lr, seed
        self.w = np.zeros(n_features)  # weights start at zero: the rule is then scale-free
        self.b = 0.0

    @classmethod
    def for_data(cls, bundle: Any, **kwargs: Any) -> Perceptron:
        return cls(int(np.prod(bundle.x_train.shape[1:])), **kwargs)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"Perceptron expects inputs of shape (N, {self.n_features}); got {X.shape}"
            )
        return X

    def net_input(self, X: np.ndarray) -> np.ndarray:
        return self._check(X) @ self.w + self.b  # z = w·x + b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class 1 where ``w·x + b >= 0``, else class 0."""
        return (self.net_input(X) >= 0).astype(np.int64)  # step function

    def update(self, x: np.ndarray, y: int) -> bool:
        """The perceptron rule on one example; returns True if it was a mistake."""
        t = 1.0 if y == 1 else -1.0
        if t * (x @ self.w + self.b) > 0:  # correct side of the boundary: no change
            return False
        self.w += self.lr * t * x  # w <- w + lr * t * x
        self.b += self.lr * t  # b <- b + lr * t
        return True

    def train_epoch(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> int:
        """One pass over the data in (shuffled) order; returns the number of mistakes."""
        X = self._check(X)
        order = rng.permutation(len(X)) if rng is not None else np.arange(len(X))
        return sum(self.update(X[i], int(y[i])) for i in order)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 20,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        shuffle: bool = True,
        run: Any = None,
        progress: bool = False,
        stop_when_converged: bool = True,
    ) -> dict[str, list[Any]]:
        """Train for up to ``epochs``; stops after an epoch with zero mistakes (converged).

        History (also logged to the active run): ``mistakes``, ``train_accuracy``,
        ``val_accuracy``, ``weight_norm``.
        """
        X = self._check(X)
        y = np.asarray(y).ravel()
        if len(y) != len(X):
            raise ValueError(
                f"inputs and labels differ in length: {len(X)} inputs, {len(y)} labels"
            )
        if set(np.unique(y)) - {0, 1}:
            raise ValueError(
                f"Perceptron is a two-class model: labels must be 0/1, got {np.unique(y)}"
            )
        rng = np.random.default_rng(self.seed) if shuffle else None

        def epoch(_: int) -> dict[str, Any]:
            row: dict[str, Any] = {"mistakes": self.train_epoch(X, y, rng)}
            row["train_accuracy"] = self.score(X, y)
            if X_val is not None and y_val is not None:
                row["val_accuracy"] = self.score(X_val, y_val)
            row["weight_norm"] = float(np.linalg.norm(np.r_[self.w, self.b]))
            return row

        stop = (lambda row: row["mistakes"] == 0) if stop_when_converged else None
        return fit_epochs(
            epoch,
            epochs,
            run=run,
            progress=progress,
            desc="Perceptron",
            stop=stop,
            stop_reason="converged",
        )

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))

    def __repr__(self) -> str:
        return f"Perceptron(n_features={self.n_features}, lr={self.lr})"


def novikoff_bound(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """``(R/γ)²``: the Block–Novikoff (1962) bound on the perceptron's total mistakes, using the
    separator ``(w, b)`` for the margin γ (any separator gives a valid, if looser, bound). ``inf``
    if ``(w, b)`` does not separate the data."""
    Xa = np.c_[np.asarray(X, float), np.ones(len(X))]  # augment x with 1 so b is a weight
    wa = np.r_[w, b]
    t = np.where(np.asarray(y).ravel() == 1, 1.0, -1.0)
    margins = t * (Xa @ wa) / np.linalg.norm(wa)
    gamma = margins.min()
    if gamma <= 0:
        return float("inf")
    R = np.linalg.norm(Xa, axis=1).max()
    return float((R / gamma) ** 2)
