"""Recurrent networks: Elman RNN, LSTM and GRU, as sequence nets and as language models.

Two shapes of model, each with the three cells (one registered class per cell and shape, so each
carries its own paper in ``MODEL_INFO``):

- ``ElmanNet`` / ``LSTMNet`` / ``GRUNet`` (:class:`SequenceNet`): a float sequence (B, T, D) in,
  an output at the last step (the adding problem) or at every step (temporal XOR, the copy task).
  Float targets train with mean squared error, integer targets with cross-entropy.
- ``ElmanLM`` / ``LSTMLM`` / ``GRULM`` (:class:`RecurrentLM`): tokens (B, T) in, next-token logits
  (B, T, V) out, and ``generate`` to sample text.

``fused=False`` runs our recurrent layers (:mod:`scratchlib.nn.rnn`, a Python loop over time);
``fused=True`` runs torch's ``nn.LSTM`` etc. (one C++/cuDNN kernel). The parameters are the same,
under the same names, so ``set_fused`` swaps the layer in place and the tests prove both equal.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.metrics import sample_next
from scratchlib.nn.rnn import make_recurrent, swap_fused

from . import ModelInfo, register

__all__ = [
    "SequenceNet",
    "RecurrentLM",
    "ElmanNet",
    "LSTMNet",
    "GRUNet",
    "ElmanLM",
    "LSTMLM",
    "GRULM",
    "CELL_INFO",
]

_MODULE = "04-Sequence-Models"

CELL_INFO = {
    "rnn": ModelInfo(
        name="Elman RNN",
        paper="Finding structure in time",
        authors="Jeffrey L. Elman",
        year=1990,
        module=_MODULE,
        category="rnn",
        key_innovations=(
            "a hidden state fed back as input: memory of the past in a loop",
            "time represented implicitly by its effect on processing, not as a spatial dimension",
        ),
        limitations=(
            "gradients vanish or explode over long lags (Bengio, Simard & Frasconi 1994)",
            "steps run one after another: no parallelism over time",
        ),
        paper_result="temporal XOR: prediction error low on every third (XOR) bit, chance elsewhere",
        url="https://doi.org/10.1207/s15516709cog1402_1",
    ),
    "lstm": ModelInfo(
        name="LSTM",
        paper="Long short-term memory",
        authors="Sepp Hochreiter and Jürgen Schmidhuber",
        year=1997,
        module=_MODULE,
        category="rnn",
        key_innovations=(
            "a cell state changed only by gated addition: the constant error carousel",
            "input and output gates (forget gate: Gers, Schmidhuber & Cummins 2000)",
            "learns dependencies over 1000+ steps where plain RNNs fail",
        ),
        limitations=(
            "four gate matrices: about four times an RNN's parameters and compute",
            "still sequential over time; long contexts are slow to train",
        ),
        paper_result="adding problem solved at T = 100-1000 (Exp. 4); plain RNNs stay at the baseline",
        url="https://doi.org/10.1162/neco.1997.9.8.1735",
    ),
    "gru": ModelInfo(
        name="GRU",
        paper="Learning phrase representations using RNN encoder-decoder for statistical machine translation",
        authors="Kyunghyun Cho, Bart van Merriënboer, Caglar Gulcehre, Dzmitry Bahdanau, Fethi Bougares, Holger Schwenk and Yoshua Bengio",
        year=2014,
        module=_MODULE,
        category="rnn",
        key_innovations=(
            "reset and update gates: the LSTM's idea with no separate cell state",
            "three gate matrices instead of four: fewer parameters, similar results",
        ),
        limitations=(
            "no output gate: the whole state is always exposed",
            "neither clearly better nor worse than the LSTM (Chung et al. 2014)",
        ),
        paper_result="comparable to the LSTM on music and speech modelling (Chung et al. 2014)",
        url="https://arxiv.org/abs/1406.1078",
    ),
}


class _Recurrent(nn.Module):
    """What both shapes share: the cell, the recurrent layer, the fused switch."""

    CELL = "lstm"

    def set_fused(self, fused: bool = True) -> _Recurrent:
        """Swap the recurrent layer for torch's fused one (or back to ours), keeping the weights.
        Build the optimizer after this: the parameters are new tensors."""
        self.rnn = swap_fused(self.rnn, fused)
        self.fused = fused
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SequenceNet(_Recurrent):
    """Recurrent layers and a linear read-out: x (B, T, input_size) ->
    (B, output_size) when ``readout="last"``, (B, T, output_size) when ``readout="all"``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        output_size: int = 1,
        num_layers: int = 1,
        readout: str = "last",
        dropout: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if readout not in ("last", "all"):
            raise ValueError(
                f"readout must be 'last' (one output) or 'all' (one per step); got {readout!r}"
            )
        self.readout, self.fused = readout, fused
        self.rnn = make_recurrent(self.CELL, input_size, hidden_size, num_layers, dropout, fused)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} wants x of shape (B, T, features); got {tuple(x.shape)}"
            )
        h, _ = self.rnn(x)  # h_t of the top layer at every step: (B, T, H)
        return self.head(h[:, -1] if self.readout == "last" else h)

    def _loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        out = self(x)
        if y.is_floating_point():  # regression: mean squared error
            if out.shape != y.shape:
                raise ValueError(f"outputs {tuple(out.shape)} and targets {tuple(y.shape)} differ")
            return {"loss": F.mse_loss(out.float(), y.float())}
        # classification: cross-entropy over the classes, skipping targets of -100
        loss = F.cross_entropy(out.flatten(0, -2).float(), y.flatten(), ignore_index=-100)
        keep = y != -100
        hit = (out.argmax(-1) == y) & keep
        res = {"loss": loss, "correct": hit.sum(), "count": keep.sum()}
        if y.dim() == 2:  # a target per step: the share of sequences right at every scored step
            res["seq_accuracy"] = (hit | ~keep).all(1).float().mean()
        return res

    def training_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)


class RecurrentLM(_Recurrent):
    """A recurrent language model: embedding -> recurrent layers -> linear to the vocabulary.

    tokens (B, T) -> next-token logits (B, T, V). ``tie_weights`` shares the embedding and the
    output matrix (Press & Wolf 2017; needs ``embed_dim == hidden_size``).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 256,
        num_layers: int = 2,
        embed_dim: int | None = None,
        dropout: float = 0.0,
        fused: bool = False,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        embed_dim = embed_dim or hidden_size
        if tie_weights and embed_dim != hidden_size:
            raise ValueError(
                f"tie_weights needs embed_dim == hidden_size; got {embed_dim} and {hidden_size}"
            )
        self.vocab_size, self.fused = vocab_size, fused
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_recurrent(self.CELL, embed_dim, hidden_size, num_layers, dropout, fused)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embed.weight

    @classmethod
    def count_params(
        cls,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 2,
        embed_dim: int | None = None,
        tie_weights: bool = False,
    ) -> int:
        """The parameters such a model would have, without building it (to size one to a budget):
        embedding + gates x (input + hidden + 2 biases) per layer + output layer."""
        e, h, g = embed_dim or hidden_size, hidden_size, {"rnn": 1, "gru": 3, "lstm": 4}[cls.CELL]
        layers = sum(g * h * ((e if k == 0 else h) + h + 2) for k in range(num_layers))
        head = h * vocab_size + vocab_size
        return vocab_size * e + layers + (head - h * vocab_size if tie_weights else head)

    @classmethod
    def sized_to(cls, vocab_size: int, params: int, num_layers: int = 2, **kw: Any) -> RecurrentLM:
        """The model of ``num_layers`` layers whose parameter count is closest to ``params``
        (equal-parameter comparisons); other arguments as the constructor's."""
        best = min(
            range(1, 8193), key=lambda h: abs(cls.count_params(vocab_size, h, num_layers) - params)
        )
        return cls(vocab_size, best, num_layers, **kw)

    def step(self, idx: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Logits for tokens ``idx`` (B, T) starting from ``state``, and the state after them."""
        if idx.dim() != 2:
            raise ValueError(
                f"{type(self).__name__} wants token ids of shape (B, T); got {tuple(idx.shape)}"
            )
        h, state = self.rnn(self.drop(self.embed(idx)), state)
        return self.head(self.drop(h)), state

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.step(idx)[0]

    def _loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        return {"loss": F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())}

    def training_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue the prompts ``idx`` (B, T) by ``max_new_tokens`` sampled tokens: (B, T + new).
        The state carries over, so each new token costs one step (no re-reading of the prompt)."""
        was_training = self.training
        self.eval()
        try:
            logits, state = self.step(idx)
            out = [idx]
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
                out.append(nxt)
                logits, state = self.step(nxt, state)
            return torch.cat(out, dim=1)
        finally:
            self.train(was_training)


# One registered class per cell and shape: the cell decides the paper in MODEL_INFO.


@register
class ElmanNet(SequenceNet):
    """Elman's simple recurrent network on a float sequence (temporal XOR, adding problem)."""

    CELL, MODEL_INFO = "rnn", CELL_INFO["rnn"]


@register
class LSTMNet(SequenceNet):
    """An LSTM on a float sequence (the adding problem, the copy task)."""

    CELL, MODEL_INFO = "lstm", CELL_INFO["lstm"]


@register
class GRUNet(SequenceNet):
    """A GRU on a float sequence."""

    CELL, MODEL_INFO = "gru", CELL_INFO["gru"]


@register
class ElmanLM(RecurrentLM):
    """A character / word language model on Elman's recurrence."""

    CELL, MODEL_INFO = "rnn", CELL_INFO["rnn"]


@register
class LSTMLM(RecurrentLM):
    """A character / word language model on the LSTM (Karpathy's char-rnn, Zaremba et al. 2014)."""

    CELL, MODEL_INFO = "lstm", CELL_INFO["lstm"]


@register
class GRULM(RecurrentLM):
    """A character / word language model on the GRU."""

    CELL, MODEL_INFO = "gru", CELL_INFO["gru"]
