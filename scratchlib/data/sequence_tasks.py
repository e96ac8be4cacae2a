"""Synthetic sequence tasks, generated from a seed: each isolates one thing memory must do.

- :func:`temporal_xor` — Elman (1990), "Finding structure in time": a bit stream in which every
  third bit is the XOR of the two before it; only those bits can be predicted.
- :func:`adding_problem` — Hochreiter & Schmidhuber (1997), experiment 4, in the form later papers
  use (Le, Jaitly & Hinton 2015): add the two marked numbers of a long sequence. Predicting the
  mean scores MSE = Var(U₁ + U₂) = 1/6 ≈ 0.167, the baseline a net without memory stays at.
- :func:`copy_task` — Hochreiter & Schmidhuber (1997), Arjovsky et al. (2016): read a few symbols,
  wait ``lag`` steps, write them back.
- :func:`date_pairs`, :func:`reversal_pairs` — string-to-string tasks with a known alignment for
  the encoder-decoder notebook: human-written dates to ISO 8601, and reversing a string.

Arrays are NumPy (float32 inputs ``(N, T, D)``); :class:`SequenceTask` holds them with the
baseline loss an input-blind guess gets, so a notebook can state "the net beat the baseline".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SequenceTask",
    "temporal_xor",
    "adding_problem",
    "copy_task",
    "date_pairs",
    "reversal_pairs",
    "DATE_FORMATS",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100  # targets the loss skips (F.cross_entropy's default ignore_index)


@dataclass
class SequenceTask:
    """One generated task: inputs ``x`` (N, T, D) float32, targets ``y``, and what to expect.

    y: float (N, 1) for a regression read at the last step, float (N, T, 1) or long (N, T) for a
    target at every step (``IGNORE_INDEX`` where nothing is scored). mask: (N, T) bool, the steps
    that carry information (for analysis; the loss already skips ignored targets). baseline: the
    loss of the best guess that ignores the input (MSE or cross-entropy in nats).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None
    baseline: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y

    def __repr__(self) -> str:
        return (
            f"SequenceTask({self.name!r}, x {self.x.shape} {self.x.dtype}, y {self.y.shape} "
            f"{self.y.dtype}, baseline {self.baseline:.4f})"
        )


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _positive(**kw: int) -> None:
    for k, v in kw.items():
        if int(v) < 1:
            raise ValueError(f"{k} must be at least 1; got {v}")


def temporal_xor(n_sequences: int = 100, n_triples: int = 10, seed: int = 0) -> SequenceTask:
    """Elman's temporal XOR: bits ``a, b, a⊕b, c, d, c⊕d, ...``; predict the next bit at each step.

    x: (N, 3K − 1, 1), the stream without its last bit; y: (N, 3K − 1, 1), the stream shifted by
    one. mask marks the steps whose target is an XOR bit (predictable); the others are coin flips.
    Baseline: MSE 0.25 from always answering 0.5.
    """
    _positive(n_sequences=n_sequences, n_triples=n_triples)
    g = _rng(seed)
    ab = g.integers(0, 2, size=(n_sequences, n_triples, 2))
    stream = np.concatenate([ab, ab[..., :1] ^ ab[..., 1:]], axis=-1)  # (N, K, 3): a, b, a XOR b
    stream = stream.reshape(n_sequences, 3 * n_triples).astype(np.float32)
    x, y = stream[:, :-1, None], stream[:, 1:, None]
    t = np.arange(3 * n_triples - 1)
    mask = np.broadcast_to((t + 1) % 3 == 2, (n_sequences, t.size)).copy()  # target is a⊕b
    return SequenceTask("temporal_xor", x, y, mask, 0.25, {"n_triples": n_triples})


def adding_problem(n: int = 1000, length: int = 50, seed: int = 0) -> SequenceTask:
    """The adding problem: x (N, T, 2) holds a value ~ U(0, 1) and a marker (0/1) per step; the
    target (N, 1) is the sum of the two marked values. One marker falls in the first half, the
    other in the second half, so the net must hold a number for up to ``length`` steps.

    Baseline: always answering E[sum] = 1 gives MSE = 2 · Var(U(0,1)) = 1/6 ≈ 0.167.
    """
    _positive(n=n)
    if length < 2:
        raise ValueError(
            f"the adding problem needs length >= 2 (one marker per half); got {length}"
        )
    g = _rng(seed)
    values = g.random((n, length)).astype(np.float32)
    half = length // 2
    first = g.integers(0, half, size=n)
    second = g.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    info = {"length": length, "first": first, "second": second, "lag": length - first}
    return SequenceTask("adding_problem", x, y, markers.astype(bool), 1.0 / 6.0, info)


def copy_task(
    n: int = 1000, seq_len: int = 5, lag: int = 20, n_symbols: int = 8, seed: int = 0
) -> SequenceTask:
    """Remember ``seq_len`` symbols over a ``lag``-step wait, then write them out.

    Input alphabet: symbols ``0..n_symbols−1``, ``blank`` = n_symbols, ``go`` = n_symbols + 1
    (one-hot, D = n_symbols + 2). Steps: the symbols, ``lag − 1`` blanks, ``go``, then ``seq_len``
    blanks while the net writes; T = 2·seq_len + lag. y (N, T) long: the symbols on the last
    ``seq_len`` steps, ``IGNORE_INDEX`` elsewhere. Baseline: cross-entropy ln(n_symbols) per written
    symbol (a uniform guess); ``info["tokens"]`` holds the input as integers.
    """
    _positive(n=n, seq_len=seq_len, lag=lag, n_symbols=n_symbols)
    g = _rng(seed)
    blank, go = n_symbols, n_symbols + 1
    total = 2 * seq_len + lag
    symbols = g.integers(0, n_symbols, size=(n, seq_len))
    tokens = np.full((n, total), blank, dtype=np.int64)
    tokens[:, :seq_len] = symbols
    tokens[:, seq_len + lag - 1] = go  # "now write": the last step before the answer
    y = np.full((n, total), IGNORE_INDEX, dtype=np.int64)
    y[:, -seq_len:] = symbols
    x = np.eye(n_symbols + 2, dtype=np.float32)[tokens]
    info = {"seq_len": seq_len, "lag": lag, "n_symbols": n_symbols, "tokens": tokens}
    return SequenceTask("copy_task", x, y, y != IGNORE_INDEX, float(np.log(n_symbols)), info)


# --- string-to-string tasks (encoder-decoder) ----------------------------------------------------

# strftime patterns of the human-written side; %-style names are parsed back by the tests.
DATE_FORMATS = (
    "%d %B %Y",  # 25 December 2013
    "%d %b %Y",  # 25 Dec 2013
    "%B %d, %Y",  # December 25, 2013
    "%b %d, %Y",  # Dec 25, 2013
    "%A, %B %d, %Y",  # Wednesday, December 25, 2013
    "%a %d %b %Y",  # Wed 25 Dec 2013
    "%m/%d/%Y",  # 12/25/2013 (US order)
    "%d.%m.%Y",  # 25.12.2013
    "%Y %b %d",  # 2013 Dec 25
    "%d-%b-%Y",  # 25-Dec-2013
    "ordinal",  # the 25th of December 2013 (no strftime code for ordinals)
)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _human(date: dt.date, fmt: str, case: int) -> str:
    if fmt == "ordinal":
        s = f"the {_ordinal(date.day)} of {date.strftime('%B %Y')}"
    else:
        s = date.strftime(fmt)
    if fmt.startswith(("%d", "%m")):
        s = s.lstrip("0") if case == 2 else s  # "5 May" as often as "05 May"
    return s.lower() if case == 1 else s


def date_pairs(
    n: int = 1000,
    seed: int = 0,
    start: dt.date = dt.date(1950, 1, 1),
    end: dt.date = dt.date(2049, 12, 31),
    formats: tuple[str, ...] = DATE_FORMATS,
) -> list[tuple[str, str]]:
    """``n`` pairs (human-written date, ISO 8601 date), e.g. ``("Dec 25, 2013", "2013-12-25")``.

    Dates are uniform in [start, end]; formats (English month and weekday names, US month/day
    order for slashes) and lower case vary at random. The alignment is known: the ISO year comes
    from the year digits, the month from the month name or number, the day from the day digits.
    """
    _positive(n=n)
    unknown = [f for f in formats if f != "ordinal" and "%" not in f]
    if unknown or not formats:
        raise ValueError(
            f"formats must be strftime patterns or 'ordinal'; got {unknown or formats}"
        )
    g = _rng(seed)
    span = (end - start).days
    if span < 0:
        raise ValueError(f"end {end} is before start {start}")
    days = g.integers(0, span + 1, size=n)
    which = g.integers(0, len(formats), size=n)
    case = g.integers(0, 3, size=n)  # 0 as written, 1 lower case, 2 no leading zero
    out = []
    for d, f, c in zip(days, which, case, strict=True):
        date = start + dt.timedelta(days=int(d))
        out.append((_human(date, formats[int(f)], int(c)), date.isoformat()))
    return out


def reversal_pairs(
    n: int = 1000,
    min_len: int = 3,
    max_len: int = 12,
    alphabet: str = "abcdefghij",
    seed: int = 0,
) -> list[tuple[str, str]]:
    """``n`` pairs (s, s reversed) of random strings over ``alphabet`` with lengths in
    [min_len, max_len]: output position i aligns with input position len − 1 − i."""
    _positive(n=n, min_len=min_len)
    if max_len < min_len:
        raise ValueError(f"max_len {max_len} is below min_len {min_len}")
    if not alphabet:
        raise ValueError("alphabet is empty")
    g = _rng(seed)
    lengths = g.integers(min_len, max_len + 1, size=n)
    chars = np.array(list(alphabet))
    out = []
    for length in lengths:
        s = "".join(chars[g.integers(0, len(alphabet), size=int(length))])
        out.append((s, s[::-1]))
    return out
