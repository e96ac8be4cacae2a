"""A small GPT: a decoder-only Transformer trained to predict the next token.

Vaswani et al. (2017), "Attention is all you need" (the Transformer; 28.4 BLEU on WMT'14 En-De);
Radford et al. (2018, 2019), GPT and GPT-2 (decoder only, pre-norm blocks, learned positions,
tied input and output embeddings). Written in the spirit of Karpathy's nanoGPT: one config, one
class per concept, ``forward`` in the paper's order:

    x = token embedding + position embedding
    for each block:  x = x + attention(LayerNorm(x));  x = x + MLP(LayerNorm(x))
    logits = LayerNorm(x) · W_embᵀ

``flash=True`` computes attention with ``F.scaled_dot_product_attention`` (fused kernels: flash
attention on a GPU); ``flash=False`` with our from-scratch :func:`scratchlib.nn.attention.
scaled_dot_product_attention`. Same weights, same function: the tests prove it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.metrics import sample_next
from scratchlib.nn.attention import LearnedPositionalEmbedding, scaled_dot_product_attention
from scratchlib.train.callbacks import Callback

from . import ModelInfo, register

__all__ = ["GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT", "warmup_cosine", "TimeBudget"]


@dataclass(frozen=True)
class GPTConfig:
    """Everything that shapes a GPT. Defaults: nanoGPT's character-level Shakespeare model."""

    vocab_size: int = 65
    block_size: int = 256  # the longest context the model sees
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.2
    bias: bool = False  # biases in the linear layers and layer norms (GPT-2 has them)
    flash: bool = True  # fused F.scaled_dot_product_attention; False: our attention from scratch
    tie_weights: bool = True  # the output layer reuses the token embedding (Press & Wolf 2017)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} must be divisible by n_head {self.n_head}")
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head) < 1:
            raise ValueError("vocab_size, block_size, n_layer and n_head must be at least 1")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.flash, self.dropout = cfg.n_head, cfg.flash, cfg.dropout
        self.qkv = nn.Linear(
            cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias
        )  # W^Q, W^K, W^V of every head
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # W^O
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> Any:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        weights = None
        if self.flash and not return_weights:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:  # softmax(QKᵀ/√d_k + causal mask) V, from tensor ops
            y, weights = scaled_dot_product_attention(
                q, k, v, dropout_p=p, is_causal=True, return_weights=True
            )
        y = y.transpose(1, 2).reshape(b, t, c)  # Concat(head_1, ..., head_h)
        y = self.resid_drop(self.proj(y))
        return (y, weights) if return_weights else y


class MLP(nn.Module):
    """The position-wise feed-forward net: ``FFN(x) = W_2 GELU(W_1 x)``, 4x wider inside."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """A pre-norm decoder block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (GPT-2's order)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # communicate: each token gathers from the ones before it
        x = x + self.mlp(self.ln_2(x))  # compute: each token on its own
        return x


@register
class GPT(nn.Module):
    """A decoder-only Transformer language model: tokens (B, T) -> next-token logits (B, T, V).

    ``GPT(GPTConfig(...))`` or ``GPT(vocab_size=65, n_layer=4, ...)`` (fields of :class:`GPTConfig`).
    """

    MODEL_INFO = ModelInfo(
        name="Transformer (GPT)",
        paper="Attention is all you need",
        authors="Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. Gomez, Łukasz Kaiser and Illia Polosukhin",
        year=2017,
        module="04-Sequence-Models",
        category="transformer",
        key_innovations=(
            "self-attention replaces recurrence: every position sees every earlier one in one step",
            "multi-head scaled dot-product attention, positions added to the embeddings",
            "decoder-only language model with pre-norm residual blocks (GPT, GPT-2)",
        ),
        limitations=(
            "attention costs T² in time and memory: the context has a fixed maximum length",
            "knows order only through the position embeddings it was trained with",
        ),
        paper_result=(
            "WMT'14 En-De BLEU 28.4; nanoGPT's char-level Tiny Shakespeare: val loss 1.4697"
        ),
        url="https://arxiv.org/abs/1706.03762",
    )

    def __init__(self, config: GPTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        unknown = sorted(set(overrides) - set(GPTConfig.__dataclass_fields__))
        if unknown:
            raise TypeError(
                f"unknown GPT settings {unknown}; GPTConfig has {sorted(GPTConfig.__dataclass_fields__)}"
            )
        self.config = cfg = replace(config or GPTConfig(), **overrides)
        self.hparams = asdict(cfg)  # the whole config, for resume to compare
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # token embedding
        self.wpe = LearnedPositionalEmbedding(cfg.block_size, cfg.n_embd)  # + position embedding
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by 1/√(2L)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        self.recipe = dict(
            lr=1e-3,
            weight_decay=0.1,
            betas=(0.9, 0.99),
            warmup_steps=100,
            max_steps=None,
            min_lr=1e-4,
            max_seconds=None,
        )

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters (tied weights once); without the position table by default, as nanoGPT counts."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"GPT wants token ids of shape (B, T); got {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"a sequence of {idx.shape[1]} tokens is longer than block_size={self.config.block_size}; crop it"
            )
        x = self.drop(self.wpe(self.wte(idx)))  # token embedding + position embedding
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # logits over the vocabulary

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer, (B, n_head, T, T) each, for plotting."""
        was_training = self.training
        self.eval()
        try:
            x, maps = self.wpe(self.wte(idx)), []
            for block in self.blocks:  # Block.forward, keeping the weights
                a, w = block.attn(block.ln_1(x), return_weights=True)
                x = x + a
                x = x + block.mlp(block.ln_2(x))
                maps.append(w)
            return maps
        finally:
            self.train(was_training)

    # --- training: the Trainer's hooks (docs/seams.md) -------------------------------------------
    def _loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        return {"loss": F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())}

    def training_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def set_recipe(self, **kw: Any) -> GPT:
        """Change the optimizer recipe ``configure_optimizers`` uses: ``lr``, ``weight_decay``,
        ``betas``, ``warmup_steps``, ``max_steps`` (None: constant lr after warm-up), ``min_lr``,
        ``max_seconds`` (the cosine runs over that much wall time instead: a time-budgeted run,
        with :class:`TimeBudget` to end it)."""
        unknown = sorted(set(kw) - set(self.recipe))
        if unknown:
            raise TypeError(f"unknown recipe settings {unknown}; choose from {sorted(self.recipe)}")
        self.recipe.update(kw)
        return self

    def configure_optimizers(self) -> Any:
        """AdamW, nanoGPT's way: weight decay on the matrices (linear and embedding weights) only,
        never on biases and layer-norm gains; linear warm-up, then cosine decay to ``min_lr`` over
        ``max_steps`` steps or ``max_seconds`` of wall time (:func:`warmup_cosine`)."""
        r = self.recipe
        params = list(self.parameters())  # tied weights appear once
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": r["weight_decay"]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = all(p.is_cuda for p in params)
        opt = torch.optim.AdamW(groups, lr=r["lr"], betas=tuple(r["betas"]), fused=fused or None)
        if r["warmup_steps"] == 0 and r["max_steps"] is None and r["max_seconds"] is None:
            return opt
        sched = warmup_cosine(
            opt, r["warmup_steps"], r["max_steps"], r["min_lr"] / r["lr"], r["max_seconds"]
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, feeding each back in (the
        context cropped to the last ``block_size`` tokens): (B, T + new)."""
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):  # forward, not self(...): eager even when compiled
                logits = self.forward(idx[:, -self.config.block_size :])[:, -1]
                idx = torch.cat([idx, sample_next(logits, temperature, top_k, top_p, generator)], 1)
            return idx
        finally:
            self.train(was_training)


# --- the schedule, by steps or by seconds --------------------------------------------------------


def _now() -> float:
    """The wall clock the time-budgeted schedule and :class:`TimeBudget` read (tests replace it)."""
    return time.perf_counter()


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int = 100,
    max_steps: int | None = None,
    min_factor: float = 0.1,
    max_seconds: float | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """nanoGPT's learning-rate schedule as a factor of the base rate, stepped every optimizer step:
    linear warm-up over ``warmup_steps``, then a cosine from 1 down to ``min_factor`` — over
    ``max_steps`` steps, or over ``max_seconds`` of wall time counted from when the scheduler is
    made (the start of training), for runs given a time budget rather than a number of steps.
    With neither, the rate stays constant after warm-up."""
    if max_steps is not None and max_seconds is not None:
        raise ValueError("give max_steps or max_seconds, not both")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive; got {max_seconds}")
    start = _now()

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if max_seconds is not None:
            progress = (_now() - start) / max_seconds
        elif max_steps is not None:
            progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        else:
            return 1.0
        progress = min(1.0, max(0.0, progress))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TimeBudget(Callback):
    """End a Trainer run after ``seconds`` of wall time from the start of ``fit`` (compilation and
    validation included): after the first optimizer step past the budget, the run validates once
    more and stops. ``steps`` and ``seconds`` say where it stopped."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a time budget must be positive; got {seconds}")
        self.budget = float(seconds)
        self.steps: int | None = None
        self.seconds: float | None = None

    def on_fit_start(self, trainer: Any, model: nn.Module) -> None:
        self._t0 = _now()

    def on_train_batch_end(
        self, trainer: Any, model: nn.Module, outputs: dict, batch: Any, batch_idx: int
    ) -> None:
        elapsed = _now() - self._t0
        if trainer.stepped and elapsed >= self.budget and self.steps is None:
            self.steps, self.seconds = trainer.global_step, elapsed
            trainer.max_steps = trainer.global_step  # the Trainer ends the period, validates, stops
