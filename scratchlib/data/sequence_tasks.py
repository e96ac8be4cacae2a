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

By name, as DataModules (docs/seams.md): ``data.load("temporal-xor")``, ``"adding-problem"``
(option ``length``), ``"copy-task"`` (a :class:`SequenceTaskData` each: float inputs, float or
``-100``-padded integer targets, a fresh test set from its own seed, ``info["baseline"]``) and
``"dates"``, ``"reversal"`` (a :class:`PairData` each: padded pairs with character tokenizers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import DataModule, Request, choose, dataset, split_size, to_tensor
from .loaders import TensorLoader
from .modules import SequencePairData
from .text import CharTokenizer

__all__ = [
    "SequenceTask",
    "temporal_xor",
    "adding_problem",
    "copy_task",
    "date_pairs",
    "reversal_pairs",
    "DATE_FORMATS",
    "IGNORE_INDEX",
    "PairData",
    "SequenceTaskData",
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


# --- the tasks by name, as DataModules: data.load("adding-problem", length=100) ---------------------


def _options(req: Request, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(req.options) - set(defaults))
    if unknown:
        raise TypeError(f"unknown options {unknown} for {name}; choose from {sorted(defaults)}")
    return {**defaults, **req.options}


class SequenceTaskData(DataModule):
    """A generated sequence task in three splits (docs/seams.md): batches ``(x, y)`` with ``x``
    float ``(B, T, D)`` and ``y`` float — ``(B, 1)`` read at the last step, ``(B, T, 1)`` at every
    step — or long ``(B, T)`` with ``IGNORE_INDEX`` where nothing is scored.

    ``val`` is carved (seeded) from the training sequences; ``test`` is generated from a seed of its
    own, so no test sequence was trained on. ``info["baseline"]`` is the loss of the best guess that
    ignores the input. The arrays are ``x_train``, ``y_train``, ``x_val``, ... as in ``DataBundle``.
    """

    def __init__(
        self,
        train: SequenceTask,
        test: SequenceTask,
        *,
        val_fraction: float = 0.1,
        n_val: int | None = None,
        seed: int = 0,
        batch_size: int = 50,
        description: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        if train.x.shape[1:] != test.x.shape[1:] or train.y.shape[1:] != test.y.shape[1:]:
            raise ValueError(
                f"train and test shapes differ: x {train.x.shape[1:]} vs {test.x.shape[1:]}, "
                f"y {train.y.shape[1:]} vs {test.y.shape[1:]}"
            )
        val, keep = choose(len(train), split_size(len(train), val_fraction, n_val, "val"), seed)
        self.x_train, self.y_train = train.x[keep], train.y[keep]
        self.x_val, self.y_val = train.x[val], train.y[val]
        self.x_test, self.y_test = test.x, test.y
        self.name, self.source, self.description = (
            train.name.replace("_", "-"),
            "synthetic",
            description,
        )
        self.batch_size = batch_size
        self.info = {"baseline": train.baseline, **(info or {})}

    @property
    def classification(self) -> bool:
        """True when the targets are classes (long, ``IGNORE_INDEX`` where not scored)."""
        return np.issubdtype(self.y_train.dtype, np.integer)

    @property
    def num_classes(self) -> int:
        if not self.classification:
            raise ValueError(f"{self.name} has float targets (regression): it has no classes")
        return int(self.info.get("n_symbols", self.y_train.max() + 1))

    def _loader(
        self,
        split: str,
        batch_size: int | None,
        shuffle: bool,
        device: Any,
        seed: int,
        rank: int,
        world_size: int,
    ) -> TensorLoader:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        return TensorLoader(
            to_tensor(x, device),
            to_tensor(y, device),
            batch_size or self.batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader:
        """Shuffled (seeded) batches of the training sequences."""
        return self._loader("train", batch_size, True, device, seed, rank, world_size)

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader:
        return self._loader("val", batch_size, False, device, 0, rank, world_size)

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader:
        return self._loader("test", batch_size, False, device, 0, rank, world_size)

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            "n_train": len(self.x_train),
            "n_val": len(self.x_val),
            "n_test": len(self.x_test),
            "input_shape": list(self.x_train.shape[1:]),
            "target": "classes" if self.classification else "regression",
            "baseline": self.info["baseline"],
        }

    def __repr__(self) -> str:
        return (
            f"SequenceTaskData({self.name!r}, source={self.source!r}, train={self.x_train.shape}, "
            f"val={self.x_val.shape}, test={self.x_test.shape}, baseline {self.info['baseline']:.4f})"
        )


def _task(
    req: Request, train: SequenceTask, test: SequenceTask, description: str, batch_size: int, **info
) -> SequenceTaskData:
    return SequenceTaskData(
        train,
        test,
        val_fraction=req.val_fraction,
        n_val=req.n_val,
        seed=req.seed,
        batch_size=batch_size,
        description=description,
        info=info,
    )


# Test sets are generated with a seed of their own: fresh sequences, never the training ones.
_TEST_SEED = 1_000_003


@dataset("temporal-xor", "Elman's temporal XOR: every third bit is the XOR of the two before it")
def _temporal_xor_data(req: Request) -> SequenceTaskData:
    o = _options(
        req,
        "temporal-xor",
        {"n": 500 if req.smoke else 2000, "n_test": 500, "n_triples": 10, "batch_size": 32},
    )
    train = temporal_xor(o["n"], o["n_triples"], seed=req.seed)
    test = temporal_xor(o["n_test"], o["n_triples"], seed=req.seed + _TEST_SEED)
    return _task(
        req,
        train,
        test,
        f"{o['n_triples']} triples (a, b, a XOR b) per sequence; predict the next bit",
        o["batch_size"],
        xor_steps=train.mask[0].tolist(),  # the steps whose target is an XOR bit
        n_triples=o["n_triples"],
    )


@dataset(
    "adding-problem", "The adding problem (Hochreiter & Schmidhuber 1997): add two marked numbers"
)
def _adding_data(req: Request) -> SequenceTaskData:
    o = _options(
        req,
        "adding-problem",
        {"n": 1000 if req.smoke else 10000, "n_test": 1000, "length": 100, "batch_size": 50},
    )
    train = adding_problem(o["n"], o["length"], seed=req.seed)
    test = adding_problem(o["n_test"], o["length"], seed=req.seed + _TEST_SEED)
    return _task(
        req,
        train,
        test,
        f"{o['length']} steps of (value, marker); target: the sum of the two marked values",
        o["batch_size"],
        length=o["length"],
    )


@dataset("copy-task", "The copy task: read a few symbols, wait, write them back")
def _copy_data(req: Request) -> SequenceTaskData:
    o = _options(
        req,
        "copy-task",
        {
            "n": 1000 if req.smoke else 10000,
            "n_test": 1000,
            "seq_len": 5,
            "lag": 20,
            "n_symbols": 8,
            "batch_size": 50,
        },
    )
    kw = {k: o[k] for k in ("seq_len", "lag", "n_symbols")}
    train = copy_task(o["n"], seed=req.seed, **kw)
    test = copy_task(o["n_test"], seed=req.seed + _TEST_SEED, **kw)
    return _task(
        req,
        train,
        test,
        f"copy {o['seq_len']} of {o['n_symbols']} symbols after {o['lag']} steps",
        o["batch_size"],
        **kw,
    )


class PairData(SequencePairData):
    """String pairs as padded id sequences (docs/seams.md, "padded sequence pairs"), with a
    character tokenizer per side: ``src_tokenizer`` and ``tgt_tokenizer`` (``<pad>`` = 0,
    ``<bos>`` = 1, ``<eos>`` = 2 on both sides). ``pairs(split)`` gives a split's strings,
    ``encode_src`` batches new inputs for ``translate`` and ``decode_tgt`` reads outputs back."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        src_tokenizer: CharTokenizer,
        tgt_tokenizer: CharTokenizer,
        **kwargs: Any,
    ) -> None:
        self.raw = list(pairs)
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        if src_tokenizer.pad_id != tgt_tokenizer.pad_id:
            raise ValueError("source and target tokenizers must share the <pad> id")
        super().__init__(
            [src_tokenizer.encode(s) for s, _ in self.raw],
            [tgt_tokenizer.encode(t) for _, t in self.raw],
            pad_id=tgt_tokenizer.pad_id,
            bos_id=tgt_tokenizer.bos_id,
            eos_id=tgt_tokenizer.eos_id,
            **kwargs,
        )

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]], **kwargs: Any) -> PairData:
        """Character tokenizers fitted on the pairs (specials ``<pad>``, ``<bos>``, ``<eos>``)."""
        specials = ("<pad>", "<bos>", "<eos>")
        src = CharTokenizer.fit([s for s, _ in pairs], specials=specials)
        tgt = CharTokenizer.fit([t for _, t in pairs], specials=specials)
        return cls(pairs, src, tgt, **kwargs)

    def pairs(self, split: str = "test") -> list[tuple[str, str]]:
        """The (source, target) strings of one split."""
        return [self.raw[i] for i in self.splits[split]]

    def encode_src(self, texts: list[str], device: Any = None) -> tuple[Any, Any]:
        """``(src, src_mask)`` for a list of source strings, right-padded."""
        import torch

        from .loaders import pad_sequences

        ids, lengths = pad_sequences([self.src_tokenizer.encode(t) for t in texts], self.pad_id)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        return ids.to(device), mask.to(device)

    def decode_tgt(self, ids: Any) -> list[str]:
        """Output rows (B, T) of ids -> strings, each cut at its first ``<eos>``."""
        out = []
        for row in ids.tolist() if hasattr(ids, "tolist") else ids:
            row = list(row)
            row = row[: row.index(self.eos_id)] if self.eos_id in row else row
            out.append(self.tgt_tokenizer.decode(row, skip_specials=True))
        return out

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            "src_vocab_size": self.src_tokenizer.vocab_size,
            "tgt_vocab_size": self.tgt_tokenizer.vocab_size,
        }


def _pair_data(
    req: Request, name: str, pairs: list[tuple[str, str]], o: dict[str, Any]
) -> PairData:
    return PairData.from_pairs(
        pairs,
        val_fraction=req.val_fraction,
        n_val=req.n_val,
        test_fraction=o["test_fraction"],
        seed=req.seed,
        batch_size=o["batch_size"],
        name=name,
        source="synthetic",
    )


@dataset("dates", "Human-written dates to ISO 8601 (generated): a translation task with alignment")
def _dates_data(req: Request) -> PairData:
    o = _options(
        req, "dates", {"n": 2000 if req.smoke else 20000, "test_fraction": 0.1, "batch_size": 64}
    )
    return _pair_data(req, "dates", date_pairs(o["n"], seed=req.seed), o)


@dataset("reversal", "Reverse a random string: output i aligns with input length - 1 - i")
def _reversal_data(req: Request) -> PairData:
    o = _options(
        req,
        "reversal",
        {
            "n": 2000 if req.smoke else 20000,
            "test_fraction": 0.1,
            "batch_size": 64,
            "min_len": 3,
            "max_len": 12,
            "alphabet": "abcdefghij",
        },
    )
    pairs = reversal_pairs(o["n"], o["min_len"], o["max_len"], o["alphabet"], seed=req.seed)
    return _pair_data(req, "reversal", pairs, o)
