"""Module 4's from-scratch blocks equal torch's: RNN/LSTM/GRU cells and layers (outputs, final
states, gradients), attention (F.scaled_dot_product_attention, nn.MultiheadAttention) with causal
and padding masks, and the positional encodings. Compared in float64 so equality is tight."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from scratchlib import nn as snn


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


OURS = {"rnn": snn.RNN, "lstm": snn.LSTM, "gru": snn.GRU}
CELLS = {
    "rnn": (snn.RNNCell, nn.RNNCell),
    "lstm": (snn.LSTMCell, nn.LSTMCell),
    "gru": (snn.GRUCell, nn.GRUCell),
}


def _grads(tensors):
    return [t.grad.clone() for t in tensors]


def _backward(out, state, seed: int = 1) -> None:
    """A random projection of every output and final state, so each gradient path is exercised."""
    g = torch.Generator().manual_seed(seed)
    parts = [out, *(state if isinstance(state, tuple) else (state,))]
    sum((p * torch.randn(p.shape, generator=g)).sum() for p in parts).backward()


# --- recurrent layers ----------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    mode=st.sampled_from(["rnn", "lstm", "gru"]),
    b=st.integers(1, 3),
    t=st.integers(1, 5),
    i=st.integers(1, 4),
    h=st.integers(1, 5),
    layers=st.integers(1, 3),
    bias=st.booleans(),
    batch_first=st.booleans(),
    with_state=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_recurrent_layer_equals_torch(
    mode, b, t, i, h, layers, bias, batch_first, with_state, seed
) -> None:
    torch.manual_seed(seed)
    ref = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[mode](
        i, h, layers, bias=bias, batch_first=batch_first
    )
    ours = OURS[mode].from_torch(ref)
    x = torch.randn((b, t, i) if batch_first else (t, b, i), requires_grad=True)
    h0 = torch.randn(layers, b, h, requires_grad=True) if with_state else None
    c0 = torch.randn(layers, b, h, requires_grad=True) if with_state else None
    state = ((h0, c0) if mode == "lstm" else h0) if with_state else None
    leaves = [x] + ([h0] + ([c0] if mode == "lstm" else []) if with_state else [])

    out_r, st_r = ref(x, state)
    _backward(out_r, st_r)
    g_ref = _grads(leaves) + _grads(ref.parameters())
    for p in [*leaves, *ref.parameters()]:
        p.grad = None

    out, st_ = ours(x, state)
    torch.testing.assert_close(out, out_r)
    if mode == "lstm":
        torch.testing.assert_close(st_[0], st_r[0])
        torch.testing.assert_close(st_[1], st_r[1])
    else:
        torch.testing.assert_close(st_, st_r)
    _backward(out, st_)
    for a, r in zip(_grads(leaves) + _grads(ours.parameters()), g_ref, strict=True):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_padded_sequences_equal_torch_packed(mode: str) -> None:
    """With lengths, ours holds the state past each end like nn.LSTM on a packed sequence."""
    torch.manual_seed(3)
    ours = OURS[mode](3, 4, num_layers=2)
    ref = ours.to_torch()
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 4, 1])
    out, state = snn.run_recurrent(ours, x, lengths=lengths)
    out_r, state_r = snn.run_recurrent(ref, x, lengths=lengths)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(state, state_r)
    assert out[1, 2:].abs().max() == 0  # nothing past the end of the length-2 sequence
    # the final state of a short sequence is its state at its own end, not after the padding
    alone, st_alone = ours(x[1:2, :2])
    torch.testing.assert_close(out[1:2, :2], alone)
    h_n = state[0] if mode == "lstm" else state
    torch.testing.assert_close(h_n[:, 1:2], st_alone[0] if mode == "lstm" else st_alone)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_cells_equal_torch(mode: str) -> None:
    ours_cls, ref_cls = CELLS[mode]
    torch.manual_seed(0)
    ref = ref_cls(3, 5)
    ours = ours_cls(3, 5)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, requires_grad=True)
    h = torch.randn(4, 5)
    state = (h, torch.randn(4, 5)) if mode == "lstm" else h
    out_r, out = ref(x, state), ours(x, state)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(ours(x), ref(x))  # zero initial state by default
    _backward(out_r[0] if mode == "lstm" else out_r, out_r[1] if mode == "lstm" else ())
    g = x.grad.clone()
    x.grad = None
    _backward(out[0] if mode == "lstm" else out, out[1] if mode == "lstm" else ())
    torch.testing.assert_close(x.grad, g)


def test_relu_rnn_dropout_and_round_trip_to_torch() -> None:
    torch.manual_seed(1)
    ours = snn.RNN(2, 3, num_layers=2, nonlinearity="relu", dropout=0.5)
    ref = ours.to_torch()
    assert isinstance(ref, nn.RNN) and ref.nonlinearity == "relu" and ref.dropout == 0.5
    x = torch.randn(2, 5, 2)
    ours.eval(), ref.eval()  # dropout is off in eval: the same function
    torch.testing.assert_close(ours(x)[0], ref(x)[0])
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.allclose(a, b)  # dropout between the layers is really applied in training


def test_bad_input_names_the_fix() -> None:
    lstm = snn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"\(batch, time, features\) with 3 features"):
        lstm(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"initial state must have shape \(2, 2, 4\)"):
        lstm(torch.randn(2, 5, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="pair"):
        lstm(torch.randn(2, 5, 3), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        snn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="wants an LSTM"):
        snn.LSTM.from_torch(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="bidirectional"):
        snn.GRU.from_torch(nn.GRU(3, 4, bidirectional=True))


def test_input_gradient_norms_vanish_with_small_recurrent_weights() -> None:
    """The measurement the RNN notebook plots: ‖∂L/∂x_t‖ per step, here against autograd on a
    slice, and shrinking geometrically with the lag for a contracting recurrent matrix."""
    torch.manual_seed(0)
    rnn = snn.RNN(2, 8)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.3 / torch.linalg.matrix_norm(rnn.weight_hh_l0, ord=2))
    x = torch.randn(4, 12, 2)

    def loss_fn(inp):
        return rnn(inp)[0][:, -1].pow(2).sum()

    norms = snn.input_gradient_norms(loss_fn, x)
    assert norms.shape == (12,)
    xr = x.clone().requires_grad_(True)
    loss_fn(xr).backward()
    torch.testing.assert_close(norms, xr.grad.norm(dim=-1).mean(0))
    assert norms[0] < 1e-4 * norms[-1]  # ‖W_hh‖ = 0.3: 11 steps back the gradient is ≤ 0.3^11
    with pytest.raises(ValueError, match="scalar"):
        snn.input_gradient_norms(lambda inp: rnn(inp)[0], x)


# --- attention -----------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    b=st.integers(1, 3),
    heads=st.integers(1, 3),
    tq=st.integers(1, 6),
    tk=st.integers(1, 6),
    d=st.integers(1, 8),
    kind=st.sampled_from(["none", "causal", "bool", "float"]),
    seed=st.integers(0, 10_000),
)
def test_sdpa_equals_torch(b, heads, tq, tk, d, kind, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, heads, tq, d, generator=g, requires_grad=True)
    k = torch.randn(b, heads, tk, d, generator=g, requires_grad=True)
    v = torch.randn(b, heads, tk, d + 1, generator=g, requires_grad=True)
    mask, causal = None, kind == "causal"
    if kind == "bool":
        mask = torch.rand(b, 1, tq, tk, generator=g) > 0.4
        mask[..., 0] = True  # every query sees at least one key
    elif kind == "float":
        mask = torch.randn(tq, tk, generator=g)
    if causal and tk < tq:
        return  # torch aligns causal masks top-left: rows past T_k would see nothing
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    out = snn.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=causal)
    torch.testing.assert_close(out, ref)
    up = torch.randn(ref.shape, generator=g)
    g_ref = torch.autograd.grad((ref * up).sum(), (q, k, v))
    g_ours = torch.autograd.grad((out * up).sum(), (q, k, v))
    for a, r in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, r)


def test_sdpa_weights_are_a_distribution_and_causal() -> None:
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    _, w = snn.scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert torch.all(w.triu(1) == 0)  # nothing from the future
    with pytest.raises(ValueError, match="shapes do not fit"):
        snn.scaled_dot_product_attention(q, torch.randn(2, 5, 3), v)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_multihead_attention_equals_torch(bias: bool, masks: str) -> None:
    torch.manual_seed(7)
    e, heads, b, tq, tk = 12, 3, 3, 5, 6
    ref = nn.MultiheadAttention(e, heads, bias=bias, batch_first=True)
    ours = snn.MultiHeadAttention.from_torch(ref)
    q = torch.randn(b, tq, e, requires_grad=True)
    kv = torch.randn(b, tk, e, requires_grad=True)
    key_mask = torch.ones(b, tk, dtype=torch.bool)
    key_mask[1, 4:] = False  # the second sequence has two padding tokens
    key_mask[2, 2:] = False
    allowed = snn.causal_mask(tq, tk)
    km = key_mask if masks in ("padding", "both") else None
    am = allowed if masks in ("causal", "both") else None
    out_r, w_r = ref(
        q,
        kv,
        kv,
        key_padding_mask=None if km is None else ~km,  # torch: True = ignore
        attn_mask=None if am is None else ~am,
        average_attn_weights=False,
    )
    out, w = ours(q, kv, kv, key_mask=km, mask=am, average_attn_weights=False)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(w, w_r)
    if km is not None:
        assert w[1, :, :, 4:].abs().max() == 0  # padding gets no weight
    up = torch.randn(out.shape)
    g_ref = torch.autograd.grad((out_r * up).sum(), (q, kv, *ref.parameters()))
    g_ours = torch.autograd.grad((out * up).sum(), (q, kv, *ours.parameters()))
    for a, r in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, r)


def test_multihead_self_attention_causal_flag_and_shapes() -> None:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = snn.MultiHeadAttention.from_torch(ref)
    x = torch.randn(2, 4, 8)
    out, w = ours(x, is_causal=True)
    out_r, w_r = ref(x, x, x, attn_mask=~snn.causal_mask(4))
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(w, w_r)
    assert ours(x, need_weights=False)[1] is None
    with pytest.raises(ValueError, match="divisible"):
        snn.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"key_mask must be \(B, T_k\)"):
        ours(x, key_mask=torch.ones(2, 3, dtype=torch.bool))


def test_additive_attention_matches_its_equation() -> None:
    torch.manual_seed(0)
    att = snn.AdditiveAttention(query_dim=3, key_dim=4, hidden_dim=5)
    s, h = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    ctx, alpha = att(s, h, key_mask=mask)
    W, U, v = att.w_q.weight, att.w_k.weight, att.v.weight[0]
    for b in range(2):  # e_j = vᵀ tanh(W s + U h_j + b), one j at a time, as written in the paper
        n = int(mask[b].sum())
        e = torch.stack([v @ torch.tanh(W @ s[b] + U @ h[b, j] + att.w_k.bias) for j in range(n)])
        a = torch.softmax(e, 0)
        torch.testing.assert_close(alpha[b, :n], a)
        torch.testing.assert_close(ctx[b], (a[:, None] * h[b, :n]).sum(0))
    assert alpha[1, 3:].abs().max() == 0
    ctx2, _ = att(s, h, key_mask=mask, projected_keys=att.project_keys(h))
    torch.testing.assert_close(ctx2, ctx)


def test_positional_encodings() -> None:
    pe = snn.sinusoidal_positions(50, 16)
    pos, i = 7, 3  # PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
    assert math.isclose(pe[pos, 2 * i].item(), math.sin(pos / 10000 ** (2 * i / 16)), rel_tol=1e-6)
    assert math.isclose(
        pe[pos, 2 * i + 1].item(), math.cos(pos / 10000 ** (2 * i / 16)), rel_tol=1e-6
    )
    x = torch.zeros(2, 10, 16)
    torch.testing.assert_close(snn.SinusoidalPositionalEncoding(16, 50)(x)[1], pe[:10])
    learned = snn.LearnedPositionalEmbedding(10, 16)
    assert learned(x).shape == (2, 10, 16) and learned.weight.requires_grad
    with pytest.raises(ValueError, match="longer than the 10 learned positions"):
        learned(torch.zeros(1, 11, 16))
    with pytest.raises(ValueError, match="even"):
        snn.sinusoidal_positions(4, 5)


@pytest.mark.parametrize("fused", [False, True])
def test_init_forget_bias_opens_the_forget_gate(fused: bool) -> None:
    layer = snn.make_recurrent("lstm", 3, 4, num_layers=2, fused=fused)
    snn.init_forget_bias(layer, 2.0)
    for k in range(2):
        b = getattr(layer, f"bias_ih_l{k}") + getattr(layer, f"bias_hh_l{k}")
        assert torch.all(b[4:8] == 2.0)  # the forget slice, in torch's gate order i, f, g, o
    # with all other inputs at zero the forget gate reads sigmoid(2): the cell keeps 88% per step
    x = torch.zeros(1, 1, 3)
    c0 = torch.ones(2, 1, 4)
    with torch.no_grad():
        for k in range(2):
            getattr(layer, f"weight_ih_l{k}").zero_()
            getattr(layer, f"bias_ih_l{k}")[:4].fill_(-1e9)  # input gate shut: nothing added
            getattr(layer, f"bias_hh_l{k}")[:4].zero_()
        _, (_, c1) = layer(x, (torch.zeros(2, 1, 4), c0))
    torch.testing.assert_close(c1, c0 * torch.sigmoid(torch.tensor(2.0)))
    with pytest.raises(TypeError, match="wants an LSTM"):
        snn.init_forget_bias(snn.GRU(3, 4))
