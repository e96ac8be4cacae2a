"""Recurrent cells and layers from tensor ops: Elman RNN, LSTM and GRU.

- Elman (1990), "Finding structure in time": a hidden state fed back as input at the next step.
- Hochreiter & Schmidhuber (1997), "Long short-term memory": a cell state changed only by gated
  addition, so error can flow back over long lags (the forget gate is Gers et al., 2000).
- Cho et al. (2014), "Learning phrase representations using RNN encoder-decoder": the GRU, two
  gates and no separate cell state.

Each layer keeps ``torch.nn``'s parameter names and gate order (``weight_ih_l0``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``, ...), so a state dict moves between ours and ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU`` unchanged (:meth:`RNN.from_torch`, :meth:`RNN.to_torch`) and the tests can
prove outputs, final states and gradients equal. The input projection of every time step is one
matrix multiply before the loop; only the recurrent part runs step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "make_recurrent",
    "swap_fused",
    "init_forget_bias",
    "run_recurrent",
    "input_gradient_norms",
    "compare_with_torch",
]

Tensor = torch.Tensor
LSTMState = tuple[Tensor, Tensor]


# --- one time step -----------------------------------------------------------------------------


def rnn_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """Elman's step: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (or ReLU). x: (B, I), h: (B, H)."""
    return _rnn_step(F.linear(x, w_ih, b_ih), h, w_hh, b_hh, _activation(nonlinearity))


def lstm_cell(
    x: Tensor,
    state: LSTMState,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> LSTMState:
    """One LSTM step; gates in torch's order (input, forget, cell candidate, output). Returns (h', c')."""
    return _lstm_step(F.linear(x, w_ih, b_ih), state, w_hh, b_hh)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step; gates in torch's order (reset, update, new). x: (B, I), h: (B, H)."""
    return _gru_step(F.linear(x, w_ih, b_ih), h, w_hh, b_hh)


# The steps below take the input part ``W_ih x_t + b_ih`` already computed (``gx``): the layers
# compute it for every time step in one matrix multiply.


def _rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, act) -> Tensor:
    return act(gx + F.linear(h, w_hh, b_hh))  # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)


def _lstm_step(gx: Tensor, state: LSTMState, w_hh: Tensor, b_hh: Tensor | None) -> LSTMState:
    h, c = state
    i, f, g, o = (gx + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # input, forget, output gates
    g = torch.tanh(g)  # candidate g_t = tanh(W_ig x_t + W_hg h_{t-1} + b)
    c = f * c + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t : the additive path error flows along
    h = o * torch.tanh(c)  # h_t = o_t ⊙ tanh(c_t)
    return h, c


def _gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # reset gate r_t
    z = torch.sigmoid(x_z + h_z)  # update gate z_t
    n = torch.tanh(x_n + r * h_n)  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
    return (1 - z) * n + z * h  # h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}


def _activation(nonlinearity: str) -> Callable[[Tensor], Tensor]:
    if nonlinearity == "tanh":
        return torch.tanh
    if nonlinearity == "relu":
        return torch.relu
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}; use 'tanh' or 'relu'")


# --- cells: one step, as modules ---------------------------------------------------------------

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class _CellBase(nn.Module):
    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = _GATES[self.mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(g)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)  # torch's default: every weight ~ U(−1/√H, 1/√H)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} wants x of shape (batch, {self.input_size}); got {tuple(x.shape)}"
            )


class RNNCell(_CellBase):
    """Drop-in for ``nn.RNNCell``: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"
    ) -> None:
        _activation(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        self._check(x)
        h = self._zeros(x) if h is None else h
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return rnn_cell(x, h, *w, self.nonlinearity)


class LSTMCell(_CellBase):
    """Drop-in for ``nn.LSTMCell``: returns ``(h', c')``."""

    mode = "lstm"

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        self._check(x)
        state = (self._zeros(x), self._zeros(x)) if state is None else state
        return lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_CellBase):
    """Drop-in for ``nn.GRUCell``."""

    mode = "gru"

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        self._check(x)
        h = self._zeros(x) if h is None else h
        return gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


# --- layers: a whole sequence, several layers ----------------------------------------------------


class _RecurrentBase(nn.Module):
    """Shared by :class:`RNN`, :class:`LSTM` and :class:`GRU` (the loop over layers and time)."""

    mode = "rnn"
    torch_class: type[nn.Module] = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1; got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1); got {dropout}")
        self._act = _activation(nonlinearity)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.nonlinearity = nonlinearity
        g = _GATES[self.mode] * hidden_size
        for layer in range(num_layers):
            i = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", nn.Parameter(torch.empty(g, i)))
            setattr(self, f"weight_hh_l{layer}", nn.Parameter(torch.empty(g, hidden_size)))
            if bias:
                setattr(self, f"bias_ih_l{layer}", nn.Parameter(torch.empty(g)))
                setattr(self, f"bias_hh_l{layer}", nn.Parameter(torch.empty(g)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)  # as torch: U(−1/√H, 1/√H) for every tensor
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of one layer."""
        return (
            getattr(self, f"weight_ih_l{layer}"),
            getattr(self, f"weight_hh_l{layer}"),
            getattr(self, f"bias_ih_l{layer}", None),
            getattr(self, f"bias_hh_l{layer}", None),
        )

    # torch interchange: the same names, so a state dict loads either way.
    @classmethod
    def from_torch(cls, module: nn.Module) -> _RecurrentBase:
        """Ours, with the weights of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` ``module`` (copied)."""
        if not isinstance(module, cls.torch_class):
            raise TypeError(f"{cls.__name__}.from_torch wants an {cls.torch_class.__name__}")
        if module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError("bidirectional layers and LSTM projections are not supported")
        kw = {"nonlinearity": module.nonlinearity} if cls.mode == "rnn" else {}
        ours = cls(
            module.input_size,
            module.hidden_size,
            module.num_layers,
            module.bias,
            module.batch_first,
            module.dropout,
            **kw,
        )
        p = next(module.parameters())
        ours = ours.to(device=p.device, dtype=p.dtype)
        ours.load_state_dict(module.state_dict())
        return ours

    def to_torch(self) -> nn.Module:
        """The equal ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (fused kernels: cuDNN on a GPU), weights copied."""
        kw = {"nonlinearity": self.nonlinearity} if self.mode == "rnn" else {}
        ref = self.torch_class(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=self.dropout,
            **kw,
        )
        p = next(self.parameters())
        ref = ref.to(device=p.device, dtype=p.dtype)
        ref.load_state_dict(self.state_dict())
        return ref

    def _initial(self, x: Tensor, hx, layer: int):
        if hx is None:
            z = x.new_zeros(x.shape[0], self.hidden_size)
            return (z, z) if self.mode == "lstm" else z
        if self.mode == "lstm":
            return hx[0][layer], hx[1][layer]
        return hx[layer]

    def _check(self, x: Tensor, hx, lengths: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            order = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
            raise ValueError(
                f"{type(self).__name__} wants x of shape {order} with {self.input_size} features; "
                f"got {tuple(x.shape)}"
            )
        b = x.shape[0] if self.batch_first else x.shape[1]
        want = (self.num_layers, b, self.hidden_size)
        if (
            self.mode == "lstm"
            and hx is not None
            and not (isinstance(hx, (tuple, list)) and len(hx) == 2)
        ):
            raise ValueError("LSTM's initial state is a pair (h_0, c_0) of (layers, B, H) tensors")
        states = [] if hx is None else (list(hx) if self.mode == "lstm" else [hx])
        for s in states:
            if tuple(s.shape) != want:
                raise ValueError(f"initial state must have shape {want}; got {tuple(s.shape)}")
        if lengths is not None and tuple(lengths.shape) != (b,):
            raise ValueError(f"lengths must have shape ({b},); got {tuple(lengths.shape)}")

    def forward(self, x: Tensor, hx=None, lengths: Tensor | None = None):
        """Run the sequence through every layer.

        x: (B, T, I) if ``batch_first`` else (T, B, I). hx: initial state, (num_layers, B, H)
        (for the LSTM a pair ``(h_0, c_0)``), zeros if None. lengths: (B,) true lengths of
        right-padded sequences: the state stops changing after each sequence's end and outputs
        there are zero — what ``nn.LSTM`` gives on a ``pack_padded_sequence`` input.
        Returns ``(output, h_n)`` — ``(output, (h_n, c_n))`` for the LSTM — as torch does:
        output (B, T, H) holds the last layer's state at every step, h_n (num_layers, B, H).
        """
        self._check(x, hx, lengths)
        if not self.batch_first:
            x = x.transpose(0, 1)
        steps = x.shape[1]
        keep = None
        if lengths is not None:  # keep[t]: (B, 1) True while step t is inside the sequence
            keep = torch.arange(steps, device=x.device)[:, None, None] < lengths.to(x.device)[
                None, :, None
            ].clamp(max=steps)
        finals = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer)
            gx = F.linear(x, w_ih, b_ih)  # W_ih x_t + b_ih for every t at once: (B, T, G·H)
            state = self._initial(x, hx, layer)
            outs = []
            for t in range(steps):
                new = self._step(gx[:, t], state, w_hh, b_hh)
                if keep is not None:  # past a sequence's end: hold the state, output zeros
                    new = _where(keep[t], new, state)
                state = new
                h = state[0] if self.mode == "lstm" else state
                outs.append(h if keep is None else h * keep[t])
            x = torch.stack(outs, dim=1)
            finals.append(state)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # between layers, as torch
        out = x if self.batch_first else x.transpose(0, 1)
        if self.mode == "lstm":
            return out, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        return out, torch.stack(finals)

    def _step(self, gx: Tensor, state, w_hh: Tensor, b_hh: Tensor | None):
        return _rnn_step(gx, state, w_hh, b_hh, self._act)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}"
        )


def _where(keep: Tensor, new, old):
    if isinstance(new, tuple):
        return tuple(torch.where(keep, n, o) for n, o in zip(new, old, strict=True))
    return torch.where(keep, new, old)


class RNN(_RecurrentBase):
    """Elman's recurrent layer, equal to ``nn.RNN`` (batch-first by default)."""

    mode = "rnn"
    torch_class = nn.RNN


class LSTM(_RecurrentBase):
    """The LSTM layer, equal to ``nn.LSTM`` (batch-first by default)."""

    mode = "lstm"
    torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)

    def _step(self, gx, state, w_hh, b_hh):
        return _lstm_step(gx, state, w_hh, b_hh)


class GRU(_RecurrentBase):
    """The GRU layer, equal to ``nn.GRU`` (batch-first by default)."""

    mode = "gru"
    torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)

    def _step(self, gx, state, w_hh, b_hh):
        return _gru_step(gx, state, w_hh, b_hh)


# --- helpers the notebooks use -------------------------------------------------------------------


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    fused: bool = False,
) -> nn.Module:
    """A batch-first recurrent layer: ours (``fused=False``) or torch's ``nn.RNN`` / ``nn.LSTM`` /
    ``nn.GRU`` (``fused=True``: one C++/cuDNN kernel, far faster). Same parameters, same names, same
    function: a state dict moves between the two."""
    layers = {"rnn": (RNN, nn.RNN), "lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}
    if cell not in layers:
        raise ValueError(f"unknown cell {cell!r}; use 'rnn', 'lstm' or 'gru'")
    cls = layers[cell][1 if fused else 0]
    return cls(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)


def swap_fused(layer: nn.Module, fused: bool) -> nn.Module:
    """``layer`` as ours or as torch's fused layer, weights kept (itself if already that kind)."""
    torch_kinds = (nn.RNN, nn.LSTM, nn.GRU)
    if isinstance(layer, torch_kinds) == fused:
        return layer
    if fused:
        return layer.to_torch()
    return {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU}[type(layer)].from_torch(layer)


def init_forget_bias(layer: nn.Module, value: float = 1.0) -> nn.Module:
    """Start an LSTM's forget gates open: forget-gate bias ``value`` (in ``bias_ih``; ``bias_hh``'s
    forget part zeroed), so the cell keeps its contents from the first step (Gers et al. 2000;
    Jozefowicz, Zaremba & Sutskever 2015). Works on ours and on ``nn.LSTM``; returns the layer."""
    if not isinstance(layer, (LSTM, nn.LSTM)):
        raise TypeError(f"init_forget_bias wants an LSTM layer; got {type(layer).__name__}")
    if not layer.bias:
        raise ValueError("this LSTM has no biases (bias=False): there is no forget bias to set")
    h = layer.hidden_size
    with torch.no_grad():
        for k in range(layer.num_layers):
            getattr(layer, f"bias_ih_l{k}")[h : 2 * h].fill_(
                value
            )  # gates: input, FORGET, cell, output
            getattr(layer, f"bias_hh_l{k}")[h : 2 * h].zero_()
    return layer


def run_recurrent(layer: nn.Module, x: Tensor, hx=None, lengths: Tensor | None = None):
    """Call ours or torch's recurrent layer the same way, right-padded sequences included.

    With ``lengths`` ours masks the steps past each end; torch's gets a packed sequence (its fused
    kernels need that), and both return zero outputs past the end and the state at each true end.
    """
    if lengths is None or not isinstance(layer, (nn.RNN, nn.LSTM, nn.GRU)):
        return layer(x, hx) if lengths is None else layer(x, hx, lengths=lengths)
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    total = x.shape[1] if layer.batch_first else x.shape[0]
    packed = pack_padded_sequence(
        x, lengths.cpu(), batch_first=layer.batch_first, enforce_sorted=False
    )
    out, state = layer(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=layer.batch_first, total_length=total)
    return out, state


def input_gradient_norms(loss_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``‖∂L/∂x_t‖`` for every time step t, averaged over the batch: (T,) for x of shape (B, T, D).

    How much the loss still depends on the input t steps back: plotted against the lag ``T − t``
    it shows gradients vanishing (or exploding) in a plain RNN and surviving in an LSTM
    (Hochreiter 1991; Bengio, Simard & Frasconi 1994). ``loss_fn(x)`` returns a scalar.
    """
    if x.dim() != 3:
        raise ValueError(f"input_gradient_norms wants x of shape (B, T, D); got {tuple(x.shape)}")
    x = x.detach().clone().requires_grad_(True)
    loss = loss_fn(x)
    if loss.dim() != 0:
        raise ValueError("loss_fn must return a scalar (reduce the loss with .mean() or .sum())")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.norm(dim=-1).mean(0).detach()


def compare_with_torch(ours: nn.Module, x: Tensor, hx=None, seed: int = 0) -> dict[str, float]:
    """Prove one of our layers equal to torch's: the largest absolute differences between ``ours``
    and ``ours.to_torch()`` (the same weights) in outputs, final states, the gradient with respect
    to the input and the gradients of every weight, for input ``x`` and initial state ``hx``.

    The backward pass starts from the same random upstream gradient on the outputs and the final
    states, so every path through time is checked."""
    ref = ours.to_torch()
    g = torch.Generator().manual_seed(seed)
    results = []
    for layer in (ours, ref):
        xi = x.detach().clone().requires_grad_(True)
        out, state = layer(xi, hx)
        states = list(state) if isinstance(state, tuple) else [state]
        g.manual_seed(seed)
        loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
        for st in states:
            loss = (
                loss + (st * torch.randn(st.shape, generator=g, dtype=st.dtype).to(st.device)).sum()
            )
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad(loss, [xi, *params.values()])
        results.append((out, states, grads[0], dict(zip(params, grads[1:], strict=True))))
    (o1, s1, gx1, gw1), (o2, s2, gx2, gw2) = results

    def diff(a: Tensor, b: Tensor) -> float:
        return float((a - b).detach().abs().max())

    return {
        "output": diff(o1, o2),
        "final state": max(diff(a, b) for a, b in zip(s1, s2, strict=True)),
        "input gradient": diff(gx1, gx2),
        "weight gradients": max(diff(gw1[k], gw2[k]) for k in gw1),
    }
