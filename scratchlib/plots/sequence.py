"""Plots for sequence models: attention heat maps, alignment matrices, gradient norm against lag,
accuracy against length, and sampled text beside the loss it came from (collected during training
by the :class:`TextSamples` callback).

Each follows :mod:`scratchlib.plots.basic`: saved as ``figures/<name>.png`` in the active run (or
``run``), shown in a notebook, and returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from scratchlib.train.callbacks import Callback

from .core import finish, to_numpy

__all__ = [
    "attention_heatmap",
    "alignment_matrix",
    "gradient_norms",
    "accuracy_by_length",
    "samples_beside_loss",
    "TextSamples",
]

_MAX_TICKS = 48  # above this many positions, token labels are unreadable: show indices


def _labels(tokens: Sequence[Any] | None, n: int, what: str) -> list[str] | None:
    if tokens is None:
        return None
    visible = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # whitespace tokens would be blank tick labels
    toks = [
        "".join(visible.get(c, c) for c in str(t)) if str(t).isspace() else str(t) for t in tokens
    ]
    if len(toks) < n:
        raise ValueError(
            f"{len(toks)} {what} labels for {n} positions; give one label per position"
        )
    return toks[:n]


def _heat(ax, w: np.ndarray, xlabels, ylabels, cmap: str) -> Any:
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(float(w.max()), 1e-9), aspect="auto")
    if xlabels is not None and len(xlabels) <= _MAX_TICKS:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=7)
    if ylabels is not None and len(ylabels) <= _MAX_TICKS:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
    return im


def attention_heatmap(
    weights: Any,
    queries: Sequence[Any] | None = None,
    keys: Sequence[Any] | None = None,
    run: Any = None,
    title: str | None = None,
    name: str = "attention",
    max_heads: int = 8,
    show: bool = True,
):
    """Attention weights as heat maps: one (T_q, T_k) matrix, or one panel per head for
    (heads, T_q, T_k). Rows are queries (who looks), columns keys (what is looked at); ``queries`` /
    ``keys`` label them with tokens. A batch dimension must be indexed away first."""
    w = to_numpy(weights).astype(float)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(
            f"attention_heatmap wants (T_q, T_k) or (heads, T_q, T_k) weights; got shape {w.shape} "
            "(pick one example of a batch: weights[0])"
        )
    w = w[:max_heads]
    h, tq, tk = w.shape
    xl, yl = _labels(keys, tk, "key"), _labels(queries, tq, "query")
    side = 2.2 + 0.12 * max(tq, tk) if max(tq, tk) <= _MAX_TICKS else 4.0
    fig, axes = plt.subplots(1, h, figsize=(side * h + 0.8, side), squeeze=False)
    for i, ax in enumerate(axes[0]):
        im = _heat(ax, w[i], xl, yl if i == 0 else None, "viridis")
        if i > 0:
            ax.set_yticks([])
        ax.set(xlabel="key", title=f"head {i}" if h > 1 else None)
    axes[0, 0].set_ylabel("query")
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03)
    if title:
        fig.suptitle(title)
    return finish(fig, name, run, show=show)


def alignment_matrix(
    weights: Any,
    source: Sequence[Any],
    output: Sequence[Any],
    run: Any = None,
    title: str | None = None,
    name: str = "alignment",
    show: bool = True,
):
    """Bahdanau et al.'s Figure 3: the weight α_ij each output token i (rows) put on each source
    token j (columns), white = 1, black = 0. ``weights`` (T_out, S) is cut to the tokens given."""
    w = to_numpy(weights).astype(float)
    if w.ndim != 2:
        raise ValueError(
            f"alignment_matrix wants (T_out, S) weights for one example; got {w.shape}"
        )
    n_out, n_src = min(len(output), w.shape[0]), min(len(source), w.shape[1])
    if n_out == 0 or n_src == 0:
        raise ValueError("alignment_matrix: give at least one source and one output token")
    w = w[:n_out, :n_src]
    fig, ax = plt.subplots(figsize=(1.5 + 0.28 * n_src, 1.2 + 0.28 * n_out))
    _heat(ax, w, _labels(source, n_src, "source"), _labels(output, n_out, "output"), "gray")
    ax.xaxis.tick_top()
    ax.set(xlabel="source", ylabel="output")
    ax.xaxis.set_label_position("top")
    if title:
        ax.set_title(title, pad=24)
    fig.tight_layout()
    return finish(fig, name, run, show=show)


def gradient_norms(
    norms: Any,
    run: Any = None,
    title: str | None = None,
    name: str = "gradient_norms",
    logy: bool = True,
    ylabel: str = "‖∂L/∂x_t‖",
    show: bool = True,
):
    """Gradient norm against lag: ``norms`` is one (T,) array of per-step norms (as from
    :func:`scratchlib.nn.input_gradient_norms`, step t) or a dict label -> array. The x axis is
    the lag T − 1 − t, how far back the input is; log scale shows vanishing as a straight line."""
    series = dict(norms) if isinstance(norms, Mapping) else {"": norms}
    if not series:
        raise ValueError("gradient_norms: nothing to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, v in series.items():
        v = to_numpy(v).astype(float).ravel()
        lag = np.arange(len(v))[::-1]  # step t is T-1-t steps before the loss
        ax.plot(lag, v, marker="o" if len(v) <= 40 else None, ms=3, label=str(label) or None)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="lag (steps between input and loss)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    if len(series) > 1 or next(iter(series)):
        ax.legend()
    fig.tight_layout()
    return finish(fig, name, run, show=show)


def accuracy_by_length(
    lengths: Any,
    results: Mapping[str, Any],
    run: Any = None,
    title: str | None = None,
    name: str = "accuracy_by_length",
    ylabel: str = "sequence accuracy",
    show: bool = True,
):
    """One line per model: a score (e.g. exact-match accuracy) against the input length, as in
    Bahdanau et al.'s Figure 2. ``results`` maps a label to scores, one per entry of ``lengths``."""
    x = to_numpy(lengths).astype(float).ravel()
    if not results:
        raise ValueError("accuracy_by_length: give at least one model's results")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, v in results.items():
        v = to_numpy(v).astype(float).ravel()
        if v.shape != x.shape:
            raise ValueError(f"{label!r}: {v.size} scores for {x.size} lengths")
        ax.plot(x, v, marker="o", ms=4, label=str(label))
    ax.set(xlabel="input length", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return finish(fig, name, run, show=show)


def samples_beside_loss(
    steps: Any,
    losses: Any,
    samples: Mapping[int, str] | Sequence[tuple[int, str]],
    run: Any = None,
    title: str | None = None,
    name: str = "samples",
    max_chars: int = 240,
    xlabel: str = "step",
    show: bool = True,
    max_lines: int = 5,
):
    """Sampled text next to the loss curve it came from: the curve on the left with a marker at
    each sampling step, and on the right each sample headed by its step and the loss there (each
    cut to ``max_chars`` characters and ``max_lines`` lines of at most 80, so none overlaps)."""
    x, y = to_numpy(steps).astype(float).ravel(), to_numpy(losses).astype(float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(
            f"steps and losses must be equal-length 1-D sequences; got {x.shape} and {y.shape}"
        )
    items = sorted(samples.items() if isinstance(samples, Mapping) else samples)
    if not items:
        raise ValueError("samples_beside_loss: no samples given (a dict step -> text)")
    bodies = []
    for _, text in items:
        body = text if len(text) <= max_chars else text[:max_chars] + "…"
        lines = [ln[:80] for ln in body.splitlines()][:max_lines]
        bodies.append("\n".join(lines))
    heights = [b.count("\n") + 3 for b in bodies]  # heading + body + a blank line
    fig, (ax, tx) = plt.subplots(
        1,
        2,
        figsize=(11, max(3.2, 0.16 * sum(heights) + 0.8)),
        gridspec_kw={"width_ratios": [1, 1.4]},
    )
    ax.plot(x, y, color="C0")
    ax.set(xlabel=xlabel, ylabel="loss", title=title or "loss and samples")
    ax.grid(alpha=0.3)
    tx.axis("off")
    for k, (step, _) in enumerate(items):
        loss_here = float(np.interp(step, x, y))
        ax.plot([step], [loss_here], "o", color=f"C{k % 9 + 1}")
        ax.annotate(str(k + 1), (step, loss_here), textcoords="offset points", xytext=(4, 4))
        tx.text(
            0.0,
            1.0 - sum(heights[:k]) / sum(heights),
            f"[{k + 1}] {xlabel} {step:g}, loss {loss_here:.3f}\n{bodies[k]}",
            va="top",
            family="monospace",
            fontsize=7.5,
            color=f"C{k % 9 + 1}",
            transform=tx.transAxes,
        )
    fig.tight_layout()
    return finish(fig, name, run, show=show)


class TextSamples(Callback):
    """A Trainer callback: at every ``every``-th validation, continue ``prompt`` (token ids, 1-D or
    (1, T)) with ``model.generate`` from a fixed seed, and keep ``samples`` ``{step: text}`` and
    ``losses`` ``{step: validation loss}`` — what :func:`samples_beside_loss` draws.

    decode: ids -> text (e.g. ``data.decode``). Sampling uses its own generator, so the training
    run's random numbers are untouched.
    """

    def __init__(
        self,
        prompt: Any,
        decode: Any,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        every: int = 1,
        seed: int = 0,
    ) -> None:
        prompt = torch.as_tensor(prompt, dtype=torch.long)
        if prompt.dim() == 1:
            prompt = prompt[None]
        if prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be token ids (T,) or (1, T); got {tuple(prompt.shape)}")
        if every < 1:
            raise ValueError(f"every must be at least 1; got {every}")
        self.prompt, self.decode, self.max_new_tokens = prompt, decode, max_new_tokens
        self.temperature, self.top_k, self.every, self.seed = temperature, top_k, every, seed
        self.samples: dict[int, str] = {}
        self.losses: dict[int, float] = {}
        self._seen = 0

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        if not callable(getattr(model, "generate", None)):
            raise TypeError(
                f"TextSamples needs {type(model).__name__}.generate(idx, max_new_tokens)"
            )

    def on_validation_end(self, trainer: Any, model: Any, metrics: dict) -> None:
        self._seen += 1
        if (self._seen - 1) % self.every == 0:
            step = int(trainer.global_step)
            self.samples[step] = self.sample(model)
            self.losses[step] = float(metrics.get("loss", float("nan")))

    @torch.no_grad()
    def sample(self, model: Any) -> str:
        """One continuation of the prompt, from the fixed seed (the prompt itself left out)."""
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed)
        idx = model.generate(
            self.prompt.to(device), self.max_new_tokens, self.temperature, self.top_k, generator=g
        )
        return self.decode(idx[0, self.prompt.shape[1] :].cpu())
