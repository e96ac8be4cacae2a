"""Attention from tensor ops, and the positions a Transformer adds to its inputs.

- Bahdanau, Cho & Bengio (2015), "Neural machine translation by jointly learning to align and
  translate": additive attention, ``e_ij = vᵀ tanh(W s_{i−1} + U h_j)``, lets a decoder look back
  at every encoder state instead of one fixed-size summary.
- Vaswani et al. (2017), "Attention is all you need": scaled dot-product attention
  ``softmax(QKᵀ/√d_k) V``, several heads in parallel, and sinusoidal positions.

One mask convention throughout, the one ``F.scaled_dot_product_attention`` and our data use:
**True = may attend** (a real token, or an allowed position). ``nn.MultiheadAttention`` uses the
opposite (True = masked out); to compare, pass it ``key_padding_mask=~key_mask`` and
``attn_mask=~mask``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "causal_mask",
    "scaled_dot_product_attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "sinusoidal_positions",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
]

Tensor = torch.Tensor


def causal_mask(
    t_q: int, t_k: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Bool (t_q, t_k), True on and below the diagonal: position i may attend to j <= i."""
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``softmax(QKᵀ / √d_k) V`` (Vaswani et al. 2017, eq. 1), equal to ``F.scaled_dot_product_attention``.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v). mask: broadcastable to
    (..., T_q, T_k), bool (True = may attend) or float (added to the scores). is_causal: position
    i sees keys j <= i only. Returns (..., T_q, d_v), and the weights (..., T_q, T_k) if asked.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
            "want q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v)"
        )
    if is_causal and mask is not None:
        raise ValueError(
            "give either is_causal=True or a mask, not both (fold the causal part into the mask)"
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # QKᵀ / √d_k : (..., T_q, T_k)
    if is_causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))  # no weight where a key is hidden
        else:
            scores = scores + mask
    weights = torch.softmax(scores, dim=-1)  # each query's weights over the keys sum to 1
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    out = weights @ v  # a weighted average of the values
    return (out, weights) if return_weights else out


class AdditiveAttention(nn.Module):
    """Bahdanau attention: ``e_j = vᵀ tanh(W_q q + W_k k_j)``, ``α = softmax(e)``, ``c = Σ_j α_j v_j``.

    forward(query (B, D_q), keys (B, S, D_k), values=keys, key_mask (B, S) True = real token)
    returns the context (B, D_v) and the weights α (B, S). ``project_keys`` lets a decoder compute
    ``W_k k_j`` once per source sentence rather than once per output step.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w_q = nn.Linear(
            query_dim, hidden_dim, bias=False
        )  # W in the paper (applied to s_{i-1})
        self.w_k = nn.Linear(key_dim, hidden_dim)  # U in the paper (applied to h_j)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.w_k(keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        key_mask: Tensor | None = None,
        projected_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if query.dim() != 2 or keys.dim() != 3 or query.shape[0] != keys.shape[0]:
            raise ValueError(
                f"AdditiveAttention wants query (B, D_q) and keys (B, S, D_k); got {tuple(query.shape)} "
                f"and {tuple(keys.shape)}"
            )
        values = keys if values is None else values
        uk = self.w_k(keys) if projected_keys is None else projected_keys
        e = self.v(torch.tanh(self.w_q(query)[:, None, :] + uk)).squeeze(
            -1
        )  # e_ij = vᵀ tanh(W s + U h_j)
        if key_mask is not None:
            e = e.masked_fill(~key_mask, float("-inf"))  # padding gets no weight
        alpha = torch.softmax(e, dim=-1)  # α_ij = exp(e_ij) / Σ_k exp(e_ik)
        context = (alpha[:, :, None] * values).sum(1)  # c_i = Σ_j α_ij h_j
        return context, alpha


class MultiHeadAttention(nn.Module):
    """``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O``, ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``.

    Equal to ``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)`` with the same
    parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so state dicts load
    either way. Masks follow this file's convention (True = may attend):
    ``key_mask`` (B, T_k) marks real tokens, ``mask`` (T_q, T_k) or (B·heads, T_q, T_k) allowed pairs.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))  # W^Q; W^K; W^V
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O
        nn.init.xavier_uniform_(self.in_proj_weight)  # torch's initialisation
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Ours with the weights of ``module`` (which must have equal query, key and value sizes)."""
        if not module._qkv_same_embed_dim or module.bias_k is not None:
            raise ValueError("only equal q/k/v sizes and no add_bias_kv are supported")
        p = module.in_proj_weight
        ours = cls(
            module.embed_dim,
            module.num_heads,
            module.dropout,
            module.in_proj_bias is not None,
            module.batch_first,
        ).to(device=p.device, dtype=p.dtype)
        ours.load_state_dict(module.state_dict())
        return ours

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, E) -> (B, heads, T, head_dim)
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        key_mask: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = True,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns ``(output, weights)`` like torch: output (B, T_q, E); weights (B, T_q, T_k)
        averaged over heads (or (B, heads, T_q, T_k)), None unless ``need_weights``."""
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(f"{name} must be (B, T, {self.embed_dim}); got {tuple(t.shape)}")
        b, t_q, t_k = query.shape[0], query.shape[1], key.shape[1]
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        q = self._heads(F.linear(query, w_q, b_q))  # Q W^Q, split into heads
        k = self._heads(F.linear(key, w_k, b_k))
        v = self._heads(F.linear(value, w_v, b_v))
        allowed = None  # (B or 1, heads or 1, T_q, T_k), True = may attend
        if is_causal:
            allowed = causal_mask(t_q, t_k, query.device)
        if mask is not None:
            m = mask if mask.dim() == 2 else mask.view(b, self.num_heads, t_q, t_k)
            allowed = m if allowed is None else allowed & m
        if key_mask is not None:
            if tuple(key_mask.shape) != (b, t_k):
                raise ValueError(
                    f"key_mask must be (B, T_k) = {(b, t_k)}; got {tuple(key_mask.shape)}"
                )
            km = key_mask[:, None, None, :]
            allowed = km if allowed is None else allowed & km
        p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, allowed, p, return_weights=True)
        out = out.transpose(1, 2).reshape(b, t_q, self.embed_dim)  # Concat(head_1, ..., head_h)
        out = self.out_proj(out)  # · W^O
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Vaswani et al.'s table (length, dim): PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dimension; got {dim}")
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(
        -math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim
    )  # 1/10000^(2i/d)
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to x (B, T, D): no parameters, any length up to ``max_len``."""

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.pe.shape[0]:
            raise ValueError(f"sequence of {t} steps is longer than max_len={self.pe.shape[0]}")
        return x + self.pe[:t].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position to x (B, T, D) (GPT's ``wpe``); at most ``max_len`` steps."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"sequence of {t} steps is longer than the {self.max_len} learned positions"
            )
        return x + self.weight[:t]
