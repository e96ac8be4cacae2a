"""Text to integers and back: character, word and byte-pair-encoding tokenizers, written out.

- :class:`CharTokenizer`: one id per character (Karpathy's char-rnn, nanoGPT's shakespeare_char).
- :class:`WordTokenizer`: one id per word or punctuation run, each carrying its leading space
  (GPT-2's pre-tokenisation), so ``decode(encode(text)) == text``; rare words become ``<unk>``.
- :class:`BPETokenizer`: Sennrich, Haddow & Birch (2016), "Neural machine translation of rare
  words with subword units": start from characters and repeatedly merge the most frequent adjacent
  pair of symbols (:func:`learn_bpe`). Frequent words end up one token, rare ones a few pieces, and
  no word is ever unknown.

Every tokenizer saves to and loads from JSON (never pickle): :func:`load_tokenizer` reads any of them.

Corpora by name, as token streams (:class:`TextData`, docs/seams.md): ``data.load("tinyshakespeare")``
reads ``data/tinyshakespeare/input.txt``, downloads it once from Karpathy's char-rnn repository
when it can, and otherwise says so and falls back to real English text that ships with Python
itself (pydoc's help topics, recorded as ``fallback:python-docs``).
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from scratchlib.utils import atomic_write_bytes, atomic_write_text

from .core import DataUnavailableError, Request, dataset
from .fetch import Fallback, fetch
from .modules import TokenStreamData

__all__ = [
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "learn_bpe",
    "apply_bpe",
    "pre_tokenize",
    "load_tokenizer",
    "WORD_PATTERN",
    "TextData",
    "text_module",
    "python_docs_text",
    "download_text",
    "TINY_SHAKESPEARE_URL",
]

# GPT-2's pre-tokeniser, with Python's classes: contractions, letters, digits, other symbols — each
# with an optional leading space — and whitespace runs. Every character matches one alternative, so
# joining the pieces gives the text back exactly.
WORD_PATTERN = r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?_+| ?[^\s\w]+|\s+(?!\S)|\s+"
_WORD_RE = re.compile(WORD_PATTERN)
FORMAT_VERSION = 1


def pre_tokenize(text: str) -> list[str]:
    """Split text into words, numbers, punctuation runs and spaces; ``"".join`` gives it back."""
    return _WORD_RE.findall(text)


class _Tokenizer:
    """Shared: an id → token list, its inverse, special tokens, JSON save/load."""

    kind = "base"

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = ()) -> None:
        self.specials = list(specials)
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [s for s, n in Counter(self.itos).items() if n > 1]
            raise ValueError(f"{type(self).__name__}: duplicate tokens {dup[:5]}")
        missing = [s for s in self.specials if s not in self.stoi]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the vocabulary")

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def token_to_id(self, token: str) -> int:
        try:
            return self.stoi[token]
        except KeyError:
            raise KeyError(
                f"{token!r} is not in the vocabulary of {self.vocab_size} tokens"
            ) from None

    def _special(self, name: str) -> int:
        if name not in self.stoi:
            raise KeyError(
                f"this tokenizer has no {name} token; build it with specials=('<pad>', '<bos>', '<eos>')"
            )
        return self.stoi[name]

    @property
    def pad_id(self) -> int:
        return self._special("<pad>")

    @property
    def bos_id(self) -> int:
        return self._special("<bos>")

    @property
    def eos_id(self) -> int:
        return self._special("<eos>")

    def decode(self, ids: Iterable[int], skip_specials: bool = False) -> str:
        """Tokens joined back into text (``skip_specials`` drops ``<pad>``, ``<bos>``, ...)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"token id {i} is outside the vocabulary 0..{len(self.itos) - 1}")
            tok = self.itos[i]
            if not (skip_specials and tok in self.specials):
                out.append(tok)
        return "".join(out)

    def _state(self) -> dict[str, Any]:
        return {"tokens": self.itos}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tokenizer as JSON (atomically); :func:`load_tokenizer` reads it back."""
        state = {"type": self.kind, "version": FORMAT_VERSION, "specials": self.specials}
        state.update(self._state())
        path = Path(path)
        atomic_write_text(path, json.dumps(state, ensure_ascii=False, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> _Tokenizer:
        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {tok.kind!r} tokenizer, not {cls.kind!r}")
        return tok

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class CharTokenizer(_Tokenizer):
    """One id per character. ``fit(text)`` takes the sorted set of characters in the text."""

    kind = "char"

    @classmethod
    def fit(cls, text: str | Iterable[str], specials: Sequence[str] = ()) -> CharTokenizer:
        chars = sorted(set(text if isinstance(text, str) else "".join(text)))
        return cls(list(specials) + [c for c in chars if c not in specials], specials)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unseen = sorted({c for c in text if c not in self.stoi})
            raise ValueError(
                f"characters {unseen[:10]} are not in the vocabulary; fit the tokenizer on text that has them"
            ) from None


class WordTokenizer(_Tokenizer):
    """Words (with their leading space), numbers, punctuation and whitespace runs as tokens.

    ``fit(text, max_vocab, min_freq)`` keeps the most frequent ones; the rest encode to ``<unk>``.
    """

    kind = "word"
    UNK = "<unk>"

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = ()) -> None:
        specials = list(specials) + ([self.UNK] if self.UNK not in specials else [])
        tokens = list(tokens) if self.UNK in tokens else [self.UNK, *tokens]
        super().__init__(tokens, specials)
        self.unk_id = self.stoi[self.UNK]

    @classmethod
    def fit(
        cls,
        text: str,
        max_vocab: int | None = None,
        min_freq: int = 1,
        specials: Sequence[str] = (),
    ) -> WordTokenizer:
        counts = Counter(pre_tokenize(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # frequent first, then A-Z
        words = [w for w, n in ranked if n >= min_freq and w not in specials and w != cls.UNK]
        if max_vocab is not None:
            words = words[: max(0, max_vocab - len(specials) - 1)]
        return cls([*specials, cls.UNK, *words], specials)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in pre_tokenize(text)]

    def _state(self) -> dict[str, Any]:
        return {"tokens": self.itos}


# --- byte-pair encoding ----------------------------------------------------------------------------

Pair = tuple[str, str]


def learn_bpe(
    word_freqs: dict[tuple[str, ...], int] | dict[str, int], num_merges: int, min_count: int = 2
) -> list[Pair]:
    """Sennrich et al. (2016), Algorithm 1: merge the most frequent adjacent pair, ``num_merges`` times.

    word_freqs: each word as a tuple of symbols (a string is split into characters) → its count.
    Pairs are counted once per occurrence, weighted by word frequency; ties go to the pair that
    sorts first, so the result is deterministic. Stops early when no pair occurs ``min_count`` times.
    Returns the merges in order. Counts are updated only for the words a merge touches.
    """
    words = [list(w) for w in word_freqs]
    freqs = list(word_freqs.values())
    counts: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> the words that (may) contain it
    for i, (w, f) in enumerate(zip(words, freqs, strict=True)):
        for p in pairwise(w):
            counts[p] += f
            where[p].add(i)
    heap = [(-n, p) for p, n in counts.items()]  # max-heap by count, then smallest pair
    heapq.heapify(heap)
    merges: list[Pair] = []
    while len(merges) < num_merges and heap:
        neg, best = heapq.heappop(heap)
        if counts.get(best, 0) != -neg:  # a stale entry: the count changed since it was pushed
            continue
        if -neg < min_count:
            break
        merges.append(best)
        a, b = best
        touched: set[Pair] = set()
        for i in where.pop(best, ()):
            w, f = words[i], freqs[i]
            if not any(x == a and y == b for x, y in pairwise(w)):
                continue
            for p in pairwise(w):  # take the word's old pairs out ...
                counts[p] -= f
                touched.add(p)
            words[i] = w = _merge(w, a, b)
            for p in pairwise(w):  # ... and put its new ones in
                counts[p] += f
                where[p].add(i)
                touched.add(p)
        for p in touched:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                counts.pop(p, None)
    return merges


def _merge(symbols: list[str], a: str, b: str) -> list[str]:
    """Replace every adjacent (a, b), left to right, by the one symbol a+b."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def apply_bpe(word: str | Sequence[str], ranks: dict[Pair, int]) -> list[str]:
    """Segment one word: apply the learned merges in the order they were learned (lowest rank first)."""
    symbols = list(word)
    while len(symbols) > 1:
        rank, pair = min((ranks.get(p, len(ranks)), p) for p in pairwise(symbols))
        if rank == len(ranks):  # no learned merge applies any more
            break
        symbols = _merge(symbols, *pair)
    return symbols


class BPETokenizer(_Tokenizer):
    """Byte-pair encoding over characters, trained from scratch with :func:`learn_bpe`.

    Words come from :func:`pre_tokenize` (with their leading space), so merges never cross a word
    boundary and ``decode(encode(text)) == text`` for any text over the training alphabet.
    """

    kind = "bpe"

    def __init__(
        self, alphabet: Sequence[str], merges: Sequence[Pair], specials: Sequence[str] = ()
    ) -> None:
        self.alphabet = list(alphabet)
        self.merges = [(str(a), str(b)) for a, b in merges]
        self.ranks = {p: r for r, p in enumerate(self.merges)}
        tokens = list(specials) + self.alphabet
        seen = set(tokens)
        for a, b in self.merges:
            if a + b not in seen:  # two merges can build the same string: one id for it
                tokens.append(a + b)
                seen.add(a + b)
        super().__init__(tokens, specials)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls, text: str, vocab_size: int, specials: Sequence[str] = (), min_count: int = 2
    ) -> BPETokenizer:
        """Learn merges on ``text`` until the vocabulary (characters + merges + specials) has
        ``vocab_size`` tokens, or no pair occurs ``min_count`` times."""
        alphabet = sorted(set(text))
        if vocab_size < len(alphabet) + len(specials):
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the {len(alphabet)} characters "
                f"(+{len(specials)} specials) of the text; ask for at least {len(alphabet) + len(specials)}"
            )
        freqs = Counter(pre_tokenize(text))
        word_freqs = {tuple(w): n for w, n in freqs.items()}
        # a merge may rebuild an existing token; learn a few spare merges and stop at the size
        merges = learn_bpe(word_freqs, vocab_size - len(alphabet) - len(specials), min_count)
        tok = cls(alphabet, merges, specials)
        while tok.vocab_size < vocab_size:
            more = learn_bpe(word_freqs, len(merges) + vocab_size - tok.vocab_size, min_count)
            if len(more) == len(merges):
                break
            merges = more
            tok = cls(alphabet, merges, specials)
        return tok

    def encode_word(self, word: str) -> list[str]:
        """The BPE pieces of one pre-tokenised word."""
        return apply_bpe(word, self.ranks)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for w in pre_tokenize(text):
            cached = self._cache.get(w)
            if cached is None:
                unseen = [c for c in w if c not in self.stoi]
                if unseen:
                    raise ValueError(
                        f"characters {sorted(set(unseen))[:10]} are not in the BPE alphabet; "
                        "train the tokenizer on text that has them"
                    )
                cached = self._cache[w] = [self.stoi[s] for s in self.encode_word(w)]
            ids.extend(cached)
        return ids

    def _state(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "merges": [list(m) for m in self.merges]}


def load_tokenizer(path: str | os.PathLike[str]) -> CharTokenizer | WordTokenizer | BPETokenizer:
    """Read a tokenizer saved with ``.save(path)`` (JSON: never executes anything from the file)."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        kind = state["type"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no tokenizer file at {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a tokenizer file written by .save() ({exc})") from None
    specials = state.get("specials", [])
    if kind == "char":
        return CharTokenizer(state["tokens"], specials)
    if kind == "word":
        return WordTokenizer(state["tokens"], [s for s in specials if s != WordTokenizer.UNK])
    if kind == "bpe":
        return BPETokenizer(state["alphabet"], [tuple(m) for m in state["merges"]], specials)
    raise ValueError(f"{path}: unknown tokenizer type {kind!r}; expected 'char', 'word' or 'bpe'")


# --- corpora by name: data.load("tinyshakespeare") ---------------------------------------------------

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


class TextData(TokenStreamData):
    """A text corpus as a token stream (docs/seams.md: ``(x, y)`` long ``(B, T)`` windows, ``y``
    shifted by one), with the tokenizer that made it: ``decode`` turns ids back into text.

    Splits are contiguous ranges of the text, in order: train, val, test. Through ``data.load``
    the test split is the last ``test_fraction`` (default 5 %) of the text and val the
    ``val_fraction`` (default 10 %) of what comes before it: 85.5 % / 9.5 % / 5 %. (nanoGPT trains
    on the first 90 % and validates on the last 10 %: our val and test lie inside that tenth.)
    """

    def __init__(
        self, text: str, tokenizer: CharTokenizer | WordTokenizer | BPETokenizer, **kwargs: Any
    ) -> None:
        self.tokenizer = tokenizer
        self.n_chars = len(text)
        ids = tokenizer.encode(text)
        super().__init__(
            torch.tensor(ids, dtype=torch.long), vocab_size=tokenizer.vocab_size, **kwargs
        )
        self.chars_per_token = len(text) / max(1, len(ids))

    def encode(self, text: str) -> torch.Tensor:
        """Text -> a long tensor of ids (1-D)."""
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

    def decode(self, ids: Any) -> str:
        """Ids (a list or a 1-D tensor) -> text."""
        return self.tokenizer.decode(ids.tolist() if isinstance(ids, torch.Tensor) else ids)

    def text(self, split: str = "train", n: int | None = None) -> str:
        """The text of one split (its first ``n`` tokens)."""
        ids = self.split(split)
        return self.decode(ids if n is None else ids[:n])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={b - a:,}" for k, (a, b) in self.ranges.items())
        return (
            f"TextData({self.name!r}, source={self.source!r}, {self.tokenizer.kind} tokens, "
            f"vocab {self.vocab_size}: {sizes})"
        )

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            "tokenizer": self.tokenizer.kind,
            "n_chars": self.n_chars,
            "chars_per_token": round(self.chars_per_token, 4),
        }


def python_docs_text(path: str | os.PathLike[str] | None = None) -> str:
    """Real English prose that ships with Python itself: the help topics of ``pydoc`` (the
    language reference's chapters, ``pydoc_data/topics.py``, or ``path``), joined in name order.

    The file is read as text and its ``topics`` dictionary parsed with ``ast.literal_eval``:
    nothing in it is executed."""
    import ast
    import importlib.util

    if path is None:
        spec = importlib.util.find_spec("pydoc_data")
        path = Path(spec.origin).parent / "topics.py" if spec and spec.origin else None
    if path is None or not Path(path).exists():
        raise DataUnavailableError(
            "this Python has no pydoc_data/topics.py (some distributions strip it), so the "
            "offline stand-in for the text corpus is missing. Put Tiny Shakespeare's input.txt "
            "into data/tinyshakespeare/ (see README: Data)."
        )
    path = Path(path)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "topics" for t in targets):
            try:
                topics = ast.literal_eval(node.value)
            except ValueError as exc:
                raise DataUnavailableError(
                    f"{path}: `topics` is not a plain dictionary of strings ({exc})"
                ) from None
            if not isinstance(topics, dict) or not all(isinstance(v, str) for v in topics.values()):
                raise DataUnavailableError(f"{path}: `topics` is not a dictionary of strings")
            return "\n\n".join(topics[k] for k in sorted(topics))
    raise DataUnavailableError(f"{path} holds no `topics = {{...}}` dictionary")


def _read_text(path: Path, min_chars: int = 1000) -> str | None:
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataUnavailableError(
            f"{path} is not readable UTF-8 text ({exc}); delete it and load again"
        ) from exc
    if len(text) < min_chars:
        raise DataUnavailableError(
            f"{path} holds only {len(text)} characters (an interrupted download?); delete it and "
            "load again"
        )
    return text


def download_text(url: str, path: Path, timeout: float = 30.0) -> None:
    """Download ``url`` into ``path`` (atomically: a half-finished file never looks complete)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URL
        body = response.read()
    body.decode("utf-8")  # refuse anything that is not text before it lands in the cache
    atomic_write_bytes(path, body)


def text_module(
    text: str, name: str, source: str, req: Request, default_block: int = 64
) -> TextData:
    """A character-level :class:`TextData` over ``text`` with the options of ``req``:
    ``block_size``, ``batch_size``, ``steps_per_epoch``, ``eval_steps``, ``test_fraction``
    (and ``load``'s ``val_fraction`` / ``n_val``)."""
    o = dict(req.options)
    known = {"block_size", "batch_size", "steps_per_epoch", "eval_steps", "test_fraction"}
    unknown = sorted(set(o) - known)
    if unknown:
        raise TypeError(f"unknown options {unknown} for {name}; choose from {sorted(known)}")
    return TextData(
        text,
        CharTokenizer.fit(text),
        block_size=int(o.get("block_size", default_block)),
        batch_size=int(o.get("batch_size", 32)),
        steps_per_epoch=o.get("steps_per_epoch"),
        eval_steps=o.get("eval_steps"),
        val_fraction=req.val_fraction,
        n_val=req.n_val,
        test_fraction=float(o.get("test_fraction", 0.05)),
        name=name,
        source=source,
    )


@dataset(
    "tinyshakespeare",
    "Tiny Shakespeare (Karpathy 2015): 1.1M characters of Shakespeare's plays, for character models",
)
def _tinyshakespeare(req: Request) -> TextData:
    path = Path(req.root) / "tinyshakespeare" / "input.txt"

    def read() -> TextData | None:
        text = _read_text(path)
        return None if text is None else text_module(text, "tinyshakespeare", "real", req)

    return fetch(
        "tinyshakespeare",
        req,
        read=read,
        download=lambda: download_text(TINY_SHAKESPEARE_URL, path),
        urls=(TINY_SHAKESPEARE_URL,),
        fallback=Fallback(
            "fallback:python-docs",
            "real English text that ships with Python itself: the help topics of pydoc "
            "(pydoc_data/topics.py, about 465,000 characters of the language reference)",
            lambda: text_module(python_docs_text(), "tinyshakespeare", "fallback:python-docs", req),
        ),
        fix=f"For Tiny Shakespeare itself, go online once or put its input.txt into {path.parent}/.",
    )
