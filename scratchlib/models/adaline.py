"""ADALINE — Widrow & Hoff (1960), "Adaptive switching circuits", IRE WESCON Convention Record.

An adaptive linear neuron: the same ``w·x + b`` as the perceptron, but trained on the *linear*
output with the least-mean-squares (delta) rule, i.e. gradient descent on the squared error

    E(w, b) = 1/(2n) Σ (t_i − (w·x_i + b))²,   t ∈ {−1, +1}

so every example teaches, not only the mistakes, and the weights converge to the least-squares
solution (the closed form ``lstsq`` computes) when the learning rate is small enough
(η < 2/λ_max of the input covariance; beyond it the updates diverge).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratchlib.train.loop import fit_epochs

from . import ModelInfo, register

__all__ = ["Adaline", "closed_form", "max_stable_lr"]


@register
class Adaline:
    """ADALINE in NumPy for two classes labelled 0/1 (trained on targets −1/+1)."""

    MODEL_INFO = ModelInfo(
        name="ADALINE",
        paper="Adaptive switching circuits",
        authors="Bernard Widrow and Marcian E. Hoff",
        year=1960,
        module="01-Foundations",
        category="linear classifier",
        key_innovations=(
            "learning as minimising a continuous error: gradient descent on the squared error",
            "the delta (LMS) rule, still at the heart of adaptive filters",
        ),
        limitations=(
            "still a linear boundary: no XOR",
            "squared error punishes points that are 'too correct', so outliers tilt the boundary",
            "diverges when the learning rate exceeds 2 / (largest eigenvalue of the input covariance)",
        ),
        paper_result="converges to the least-squares (Wiener) solution for small enough learning rates",
        url="https://isl.stanford.edu/~widrow/papers/c1960adaptiveswitching.pdf",
    )

    def __init__(
        self, n_features: int, lr: float = 0.01, mode: str = "batch", seed: int = 0
    ) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if mode not in ("batch", "sgd"):
            raise ValueError(
                f"mode must be 'batch' (full gradient) or 'sgd' (per-sample LMS), got {mode!r}"
            )
        self.n_features, self.lr, self.mode, self.seed = n_features, lr, mode, seed
        self.w = np.zeros(n_features)
        self.b = 0.0
        self.diverged = False

    @classmethod
    def for_data(cls, bundle: Any, **kwargs: Any) -> Adaline:
        return cls(int(np.prod(bundle.x_train.shape[1:])), **kwargs)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"Adaline expects inputs of shape (N, {self.n_features}); got {X.shape}"
            )
        return X

    def net_input(self, X: np.ndarray) -> np.ndarray:
        return self._check(X) @ self.w + self.b  # the linear output z = w·x + b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class 1 where ``w·x + b >= 0`` (the quantiser after the linear unit)."""
        return (self.net_input(X) >= 0).astype(np.int64)

    def mse(self, X: np.ndarray, y: np.ndarray) -> float:
        t = np.where(np.asarray(y).ravel() == 1, 1.0, -1.0)
        return float(np.mean((t - self.net_input(X)) ** 2) / 2)  # E = 1/(2n) Σ (t − z)²

    def train_epoch(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> None:
        X = self._check(X)
        t = np.where(np.asarray(y).ravel() == 1, 1.0, -1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.mode == "batch":
                err = t - (X @ self.w + self.b)  # e = t − z for every example
                self.w += self.lr * X.T @ err / len(X)  # w ← w + η · 1/n Σ e·x  (−η ∂E/∂w)
                self.b += self.lr * err.mean()
            else:  # Widrow-Hoff LMS: one example at a time
                for i in rng.permutation(len(X)) if rng is not None else range(len(X)):
                    e = t[i] - (X[i] @ self.w + self.b)  # e = t − z
                    self.w += self.lr * e * X[i]  # w ← w + η e x
                    self.b += self.lr * e
        if not (np.all(np.isfinite(self.w)) and np.isfinite(self.b)):
            self.diverged = True

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 50,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        run: Any = None,
        progress: bool = False,
    ) -> dict[str, list[Any]]:
        """Train for ``epochs``; the history holds ``mse``, ``train_accuracy`` (and validation).

        Training stops early, with ``self.diverged = True``, if the weights blow up.
        """
        X = self._check(X)
        y = np.asarray(y).ravel()
        if set(np.unique(y)) - {0, 1}:
            raise ValueError(
                f"Adaline is a two-class model: labels must be 0/1, got {np.unique(y)}"
            )
        rng = np.random.default_rng(self.seed)

        def epoch(_: int) -> dict[str, Any]:
            self.train_epoch(X, y, rng)
            mse = self.mse(X, y) if not self.diverged else float("inf")
            if not np.isfinite(mse) or mse > 1e12:  # blown up: stop, and say so
                self.diverged = True
                return {"mse": mse, "train_accuracy": float("nan")}
            row: dict[str, Any] = {"mse": mse, "train_accuracy": self.score(X, y)}
            if X_val is not None and y_val is not None:
                row["val_accuracy"] = self.score(X_val, y_val)
            return row

        return fit_epochs(
            epoch,
            epochs,
            run=run,
            progress=progress,
            desc="ADALINE",
            stop=lambda row: self.diverged,
            stop_reason="diverged",
        )

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))

    def __repr__(self) -> str:
        return f"Adaline(n_features={self.n_features}, lr={self.lr}, mode={self.mode!r})"


def closed_form(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The least-squares weights ADALINE converges to: ``argmin Σ (t − w·x − b)²`` via ``lstsq``."""
    X = np.asarray(X, dtype=float)
    t = np.where(np.asarray(y).ravel() == 1, 1.0, -1.0)
    Xa = np.c_[X, np.ones(len(X))]  # a column of ones carries the bias
    sol, *_ = np.linalg.lstsq(Xa, t, rcond=None)
    return sol[:-1], float(sol[-1])


def max_stable_lr(X: np.ndarray) -> float:
    """``2 / λ_max`` of ``E[x̃ x̃ᵀ]`` (x̃ = (x, 1)): batch gradient descent on ADALINE's error
    converges below this learning rate and diverges above it."""
    Xa = np.c_[np.asarray(X, dtype=float), np.ones(len(X))]
    lam = np.linalg.eigvalsh(Xa.T @ Xa / len(Xa)).max()
    return float(2.0 / lam)
