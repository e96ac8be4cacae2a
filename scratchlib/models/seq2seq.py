"""Encoder-decoder with (or without) attention — Bahdanau, Cho & Bengio (2015), "Neural machine
translation by jointly learning to align and translate", ICLR; the plain encoder-decoder is
Sutskever, Vinyals & Le (2014) and Cho et al. (2014).

Without attention the encoder squeezes the whole source into its final state, and the decoder
starts from it: one fixed-size vector, however long the sentence. With attention, each output step
i looks back at every encoder state h_j through weights α_ij (additive attention on the previous
decoder state s_{i−1}), and feeds the context c_i = Σ_j α_ij h_j into the decoder. The weights are
returned: plotted as a matrix they show the alignment the model learned.

Batches are dicts (docs/seams.md, "padded sequence pairs"): ``src`` (B, S), ``src_mask`` (B, S)
True on real tokens, ``tgt_in`` (B, T) = BOS + target, ``tgt_out`` (B, T) = target + EOS,
``tgt_mask`` (B, T).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn.attention import AdditiveAttention
from scratchlib.nn.rnn import make_recurrent, run_recurrent, swap_fused

from . import ModelInfo, register

__all__ = ["Seq2Seq"]


def _top(state: Any) -> torch.Tensor:
    """The top layer's hidden state s (B, H) of an RNN/GRU state or an LSTM (h, c) pair."""
    return state[0][-1] if isinstance(state, tuple) else state[-1]


@register
class Seq2Seq(nn.Module):
    """Recurrent encoder-decoder; ``attention=True`` is Bahdanau et al.'s RNNsearch, ``False`` the
    fixed-vector encoder-decoder it was compared with."""

    MODEL_INFO = ModelInfo(
        name="RNN encoder-decoder with attention",
        paper="Neural machine translation by jointly learning to align and translate",
        authors="Dzmitry Bahdanau, Kyunghyun Cho and Yoshua Bengio",
        year=2015,
        module="04-Sequence-Models",
        category="rnn",
        key_innovations=(
            "encoder-decoder: read a sequence into a state, write another from it (Sutskever et al. 2014)",
            "additive attention: each output step takes a weighted look at every input position",
            "the attention weights are a soft alignment between input and output, learned unsupervised",
        ),
        limitations=(
            "still recurrent: encoder and decoder run step by step",
            "attention costs source length x target length per sentence",
        ),
        paper_result=(
            "WMT'14 En-Fr BLEU 26.75 (RNNsearch-50) vs 17.82 without attention; "
            "with attention the score no longer falls as sentences grow past 30 words"
        ),
        url="https://arxiv.org/abs/1409.0473",
    )

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        embed_dim: int = 32,
        hidden_size: int = 64,
        num_layers: int = 1,
        attention: bool = True,
        cell: str = "lstm",
        dropout: float = 0.0,
        fused: bool = False,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.use_attention, self.fused = attention, fused
        h = hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = make_recurrent(cell, embed_dim, h, num_layers, dropout, fused)
        # with attention the decoder reads [y_{i-1}; c_i] and the output layer sees [s_i; c_i]
        ctx = h if attention else 0
        self.decoder = make_recurrent(cell, embed_dim + ctx, h, num_layers, dropout, fused)
        self.attention = AdditiveAttention(h, h, h) if attention else None
        self.out = nn.Linear(h + ctx, tgt_vocab_size)

    def set_fused(self, fused: bool = True) -> Seq2Seq:
        """Swap encoder and decoder for torch's fused layers (or back), keeping the weights."""
        self.encoder = swap_fused(self.encoder, fused)
        self.decoder = swap_fused(self.decoder, fused)
        self.fused = fused
        return self

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Encoder states h_j (B, S, H) and the final state at each source's true end."""
        if src.dim() != 2 or src_mask.shape != src.shape:
            raise ValueError(
                f"src and src_mask must both be (B, S); got {tuple(src.shape)} and {tuple(src_mask.shape)}"
            )
        lengths = src_mask.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError(
                "every source needs at least one real token (a row of src_mask is all False)"
            )
        return run_recurrent(self.encoder, self.src_embed(src), lengths=lengths)

    def _decode_step(self, y_prev, state, enc, keys, src_mask):
        """One output step: (logits (B, V), new state, α (B, S) or None)."""
        emb = self.tgt_embed(y_prev)  # (B, E)
        if self.attention is None:
            out, state = self.decoder(emb[:, None], state)
            return self.out(out[:, 0]), state, None
        c, alpha = self.attention(
            _top(state), enc, key_mask=src_mask, projected_keys=keys
        )  # c_i from s_{i-1}
        out, state = self.decoder(
            torch.cat([emb, c], -1)[:, None], state
        )  # s_i = f(s_{i-1}, y_{i-1}, c_i)
        return self.out(torch.cat([out[:, 0], c], -1)), state, alpha

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced decoding: logits (B, T, V) and the attention weights (B, T, S) (None
        without attention)."""
        enc, state = self.encode(src, src_mask)
        if self.attention is None:  # the whole target in one call: the decoder never looks back
            out, _ = self.decoder(self.tgt_embed(tgt_in), state)
            return self.out(out), None
        keys = self.attention.project_keys(enc)  # U h_j, once per source
        logits, alphas = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, alpha = self._decode_step(tgt_in[:, t], state, enc, keys, src_mask)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def translate(
        self, src: torch.Tensor, src_mask: torch.Tensor, max_len: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy decoding: tokens (B, max_len) — each row ends with EOS then ``pad_id`` — and the
        attention weights (B, max_len, S) (None without attention)."""
        was_training = self.training
        self.eval()
        try:
            enc, state = self.encode(src, src_mask)
            keys = self.attention.project_keys(enc) if self.attention is not None else None
            y = torch.full((src.shape[0],), self.bos_id, dtype=torch.long, device=src.device)
            done = torch.zeros_like(y, dtype=torch.bool)
            tokens, alphas = [], []
            for _ in range(max_len):
                logits, state, alpha = self._decode_step(y, state, enc, keys, src_mask)
                y = logits.argmax(-1)
                tokens.append(torch.where(done, torch.full_like(y, self.pad_id), y))
                alphas.append(alpha)
                done |= y == self.eos_id
            weights = None if self.attention is None else torch.stack(alphas, 1)
            return torch.stack(tokens, 1), weights
        finally:
            self.train(was_training)

    def _loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, _ = self(batch["src"], batch["src_mask"], batch["tgt_in"])
        target = batch["tgt_out"].masked_fill(~batch["tgt_mask"], -100)  # padding is not scored
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100)
        hit = (logits.argmax(-1) == batch["tgt_out"]) & batch["tgt_mask"]
        return {"loss": loss, "correct": hit.sum(), "count": batch["tgt_mask"].sum()}

    def training_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss and token accuracy, and ``seq_accuracy``: the share of greedy
        translations right at every position up to and including EOS."""
        out = self._loss(batch)
        pred, _ = self.translate(batch["src"], batch["src_mask"], max_len=batch["tgt_out"].shape[1])
        ok = (pred == batch["tgt_out"]) | ~batch["tgt_mask"]
        out["seq_accuracy"] = ok.all(1).float().mean()
        return out
