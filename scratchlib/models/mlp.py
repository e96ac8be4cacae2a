"""The multi-layer perceptron and backpropagation — Rumelhart, Hinton & Williams (1986),
"Learning representations by back-propagating errors", Nature 323.

Two versions:

* :class:`NumpyMLP` — every step by hand in NumPy: forward pass, the backward pass (the chain rule,
  layer by layer), the update. Checked against numerical gradients and torch autograd in the tests.
* :class:`MLP` — the same network from torch tensor ops (weight matrices as ``nn.Parameter``),
  autograd doing the backward pass, trained on MNIST with the Trainer. Simard, Steinkraus & Platt
  (2003) report 1.6 % MNIST test error for 784-800-10 trained with cross-entropy; Hinton et al.
  (2012) train 784-800-800-10 with dropout to about 1.1-1.3 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchlib.train.loop import fit_epochs

from . import ModelInfo, register

__all__ = ["NumpyMLP", "MLP", "numerical_gradients"]

_PAPER = dict(
    paper="Learning representations by back-propagating errors",
    authors="David E. Rumelhart, Geoffrey E. Hinton and Ronald J. Williams",
    year=1986,
    module="01-Foundations",
    category="feed-forward network",
    url="https://doi.org/10.1038/323533a0",
)


# --- activations and their derivatives (written in terms of z, the pre-activation) -------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))  # σ(z) = 1 / (1 + e^−z)


ACTIVATIONS = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),  # σ' = σ(1 − σ)
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),  # tanh' = 1 − tanh²
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),  # relu' = [z > 0]
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))  # subtract the max: same result, no overflow
    return e / e.sum(1, keepdims=True)


@register
class NumpyMLP:
    """A fully connected network with hand-written backpropagation (NumPy, float64).

    ``sizes = [d_in, h_1, ..., h_k, n_classes]``. Output: softmax with cross-entropy loss
    (``loss="cross_entropy"``), or sigmoid units with squared error (``loss="mse"``, as in 1986).
    """

    MODEL_INFO = ModelInfo(
        name="MLP (NumPy, hand-written backprop)",
        key_innovations=(
            "hidden units that learn their own features",
            "backpropagation: the chain rule computes every weight's gradient in one backward pass",
        ),
        limitations=(
            "deep sigmoid stacks: gradients vanish layer by layer",
            "fits a small training set perfectly and generalises worse (overfitting)",
        ),
        paper_result="learns XOR and other non-linearly-separable tasks with hidden units",
        **_PAPER,
    )

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        loss: str = "cross_entropy",
        seed: int = 0,
        init_scale: float | None = None,
    ) -> None:
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(
                f"sizes must list at least an input and an output size, all >= 1; got {sizes}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        self.sizes, self.activation, self.loss_name = [int(s) for s in sizes], activation, loss
        rng = np.random.default_rng(seed)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            # Xavier/Glorot for sigmoid/tanh, He for relu (or a fixed scale for experiments)
            scale = init_scale or (
                math.sqrt(2.0 / fan_in) if activation == "relu" else math.sqrt(1.0 / fan_in)
            )
            self.W.append(rng.normal(0.0, scale, size=(fan_in, fan_out)))
            self.b.append(np.zeros(fan_out))
        self._f, self._df = ACTIVATIONS[activation]

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"NumpyMLP expects inputs of shape (N, {self.sizes[0]}); got {X.shape}"
            )
        return X

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y).ravel().astype(int)
        if y.min() < 0 or y.max() >= self.sizes[-1]:
            raise ValueError(
                f"labels must be 0..{self.sizes[-1] - 1}; got range {y.min()}..{y.max()}"
            )
        return np.eye(self.sizes[-1])[y]  # one-hot targets

    # --- forward -------------------------------------------------------------------------------
    def forward(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Output probabilities, and the cache the backward pass needs: pre-activations ``zs`` and
        activations ``acts`` (``acts[0]`` is the input)."""
        a = self._check(X)
        acts, zs = [a], []
        for layer, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            z = a @ W + b  # z_l = a_{l-1} W_l + b_l
            zs.append(z)
            last = layer == self.n_layers - 1
            if last:
                a = _softmax(z) if self.loss_name == "cross_entropy" else _sigmoid(z)
            else:
                a = self._f(z)  # a_l = f(z_l)
            acts.append(a)
        return a, zs, acts

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.forward(X)[0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        out = self.predict_proba(X)
        Y = self._targets(y)
        if self.loss_name == "cross_entropy":
            return float(-np.mean(np.sum(Y * np.log(out + 1e-12), 1)))  # L = −1/n Σ log p_y
        return float(np.mean(np.sum((out - Y) ** 2, 1)) / 2)  # L = 1/(2n) Σ ||o − y||²

    def hidden(self, X: np.ndarray, layer: int = 0) -> np.ndarray:
        """Activations of hidden layer ``layer``: the features the network invented."""
        return self.forward(X)[2][layer + 1]

    # --- backward: the chain rule, layer by layer ------------------------------------------------
    def backward(self, X: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Gradients ``(dW, db)`` of the mean loss with respect to every weight and bias."""
        out, zs, acts = self.forward(X)
        Y = self._targets(y)
        n = len(Y)
        if self.loss_name == "cross_entropy":
            delta = (out - Y) / n  # ∂L/∂z_L for softmax + cross-entropy
        else:
            delta = (out - Y) * out * (1 - out) / n  # ∂L/∂z_L = (o − y) ⊙ σ'(z_L)
        dW: list[np.ndarray] = [np.empty(0)] * self.n_layers
        db: list[np.ndarray] = [np.empty(0)] * self.n_layers
        for layer in reversed(range(self.n_layers)):
            dW[layer] = acts[layer].T @ delta  # ∂L/∂W_l = a_{l-1}ᵀ δ_l
            db[layer] = delta.sum(0)  # ∂L/∂b_l = Σ δ_l
            if layer > 0:
                delta = (delta @ self.W[layer].T) * self._df(
                    zs[layer - 1]
                )  # δ_{l-1} = (δ_l W_lᵀ) ⊙ f'(z_{l-1})
        return dW, db

    def step(self, dW: list[np.ndarray], db: list[np.ndarray], lr: float) -> None:
        for layer in range(self.n_layers):
            self.W[layer] -= lr * dW[layer]  # W ← W − η ∂L/∂W
            self.b[layer] -= lr * db[layer]

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 100,
        lr: float = 0.5,
        batch_size: int | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        seed: int = 0,
        record_grad_norms: bool = False,
        run: Any = None,
        progress: bool = False,
    ) -> dict[str, list[Any]]:
        """Mini-batch gradient descent (full batch if ``batch_size`` is None).

        History: ``train_loss``, ``train_accuracy`` (+ ``val_*``), and with ``record_grad_norms``
        the gradient norm of every layer's weights (``grad_norm_1`` is the first layer).
        """
        X = self._check(X)
        y = np.asarray(y).ravel()
        self._targets(y)  # validate labels now, with a clear message
        rng = np.random.default_rng(seed)
        bs = batch_size or len(X)

        def epoch(_: int) -> dict[str, Any]:
            order = rng.permutation(len(X))
            norms = np.zeros(self.n_layers)
            for start in range(0, len(X), bs):
                idx = order[start : start + bs]
                dW, db = self.backward(X[idx], y[idx])
                if record_grad_norms:
                    norms += [np.linalg.norm(g) for g in dW]
                self.step(dW, db, lr)
            row: dict[str, Any] = {
                "train_loss": self.loss(X, y),
                "train_accuracy": self.score(X, y),
            }
            if X_val is not None and y_val is not None:
                row["val_loss"], row["val_accuracy"] = (
                    self.loss(X_val, y_val),
                    self.score(X_val, y_val),
                )
            if record_grad_norms:
                batches = math.ceil(len(X) / bs)
                row.update({f"grad_norm_{i + 1}": float(v / batches) for i, v in enumerate(norms)})
            return row

        return fit_epochs(epoch, epochs, run=run, progress=progress, desc="NumpyMLP")

    def __repr__(self) -> str:
        return (
            f"NumpyMLP(sizes={self.sizes}, activation={self.activation!r}, loss={self.loss_name!r})"
        )


def numerical_gradients(model: NumpyMLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-6):
    """Central differences ``(L(θ+ε) − L(θ−ε)) / 2ε`` for every parameter: slow, obviously right."""
    grads_W, grads_b = [], []
    for params, out in ((model.W, grads_W), (model.b, grads_b)):
        for p in params:
            g = np.zeros_like(p)
            it = np.nditer(p, flags=["multi_index"])
            for _ in it:
                i = it.multi_index
                old = p[i]
                p[i] = old + eps
                up = model.loss(X, y)
                p[i] = old - eps
                down = model.loss(X, y)
                p[i] = old
                g[i] = (up - down) / (2 * eps)
            out.append(g)
    return grads_W, grads_b


@register
class MLP(nn.Module):
    """A multi-layer perceptron from torch tensor ops: ``x → f(x W₁ + b₁) → … → x W_L + b_L``.

    Weights are plain ``nn.Parameter`` matrices (no ``nn.Linear``); autograd does backprop.
    Default: 784-800-10 with ReLU, the network of Simard, Steinkraus & Platt (2003). ``dropout``
    drops hidden units and ``input_dropout`` input pixels while training (Hinton et al. 2012).
    """

    MODEL_INFO = ModelInfo(
        name="MLP",
        key_innovations=(
            "the same backpropagation, now by autograd, trained with mini-batches on real digits",
            "ReLU units and dropout (2010s) make wide MLPs train fast and generalise",
        ),
        limitations=(
            "ignores the 2-D structure of images: a shifted digit is a new input",
            "parameters grow with input size (784 x 800 weights in the first layer alone)",
        ),
        paper_result=(
            "MNIST: 784-800-10, 1.6% test error (Simard, Steinkraus & Platt 2003); 784-800-800-10 "
            "with dropout, about 1.1-1.3% (Hinton et al. 2012)"
        ),
        **_PAPER,
    )

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (800,),
        num_classes: int = 10,
        activation: str = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(acts)}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} is a probability in [0, 1), got {p}")
        self.act, self.dropout, self.input_dropout = acts[activation], dropout, input_dropout
        sizes = [in_features, *hidden, num_classes]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            gain = 2.0 if activation == "relu" else 1.0  # He (relu) or Xavier-style (tanh/sigmoid)
            self.weights.append(
                nn.Parameter(torch.randn(fan_in, fan_out) * math.sqrt(gain / fan_in))
            )
            self.biases.append(nn.Parameter(torch.zeros(fan_out)))

    @classmethod
    def for_data(cls, bundle: Any, **kwargs: Any) -> MLP:
        return cls(int(np.prod(bundle.x_train.shape[1:])), num_classes=bundle.num_classes, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.input_dropout and self.training:
            x = nn.functional.dropout(x, self.input_dropout, training=True)  # drop input pixels
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ W + b  # z = x W + b
            if i < last:
                x = self.act(x)  # a = f(z)
                if self.dropout and self.training:
                    x = nn.functional.dropout(x, self.dropout, training=True)
        return x  # logits; the loss applies softmax
