"""Tokenizers: exact round trips on real text, BPE merges against a hand-worked example, JSON
save/load (never pickle), and clear errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlib.data.text import (
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    apply_bpe,
    learn_bpe,
    load_tokenizer,
    pre_tokenize,
)


@pytest.fixture(scope="module")
def corpus() -> str:
    """Real English text that ships with Python: the first topics of pydoc's bundled docs."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics)[:6])


def test_pre_tokenize_keeps_every_character(corpus: str) -> None:
    pieces = pre_tokenize(corpus)
    assert "".join(pieces) == corpus
    assert pre_tokenize("Hello,  world! It's 2024.\n\n") == [
        "Hello", ",", " ", " world", "!", " It", "'s", " 2024", ".", "\n\n"
    ]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_pre_tokenize_round_trips_any_text(text: str) -> None:
    assert "".join(pre_tokenize(text)) == text


def test_char_tokenizer_round_trip_and_specials(corpus: str) -> None:
    tok = CharTokenizer.fit(corpus)
    assert tok.decode(tok.encode(corpus)) == corpus
    assert tok.vocab_size == len(set(corpus))
    assert tok.itos == sorted(set(corpus))  # ids in character order
    s = CharTokenizer.fit(["2013-12-25", "Dec"], specials=("<pad>", "<bos>", "<eos>"))
    assert (s.pad_id, s.bos_id, s.eos_id) == (0, 1, 2)
    ids = [s.bos_id, *s.encode("Dec 25".replace(" ", "-")), s.eos_id, s.pad_id]
    assert s.decode(ids, skip_specials=True) == "Dec-25"
    with pytest.raises(ValueError, match=r"characters \['x'\] are not in the vocabulary"):
        s.encode("Dex")
    with pytest.raises(KeyError, match="no <bos> token"):
        _ = tok.bos_id
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_word_tokenizer_round_trip_and_unknown_words(corpus: str) -> None:
    tok = WordTokenizer.fit(corpus)
    assert tok.decode(tok.encode(corpus)) == corpus
    small = WordTokenizer.fit(corpus, max_vocab=50)
    assert small.vocab_size == 50
    ids = small.encode(corpus)
    assert small.unk_id in ids  # rare words are cut ...
    frequent = max(set(pre_tokenize(corpus)), key=pre_tokenize(corpus).count)
    assert small.encode(frequent) != [small.unk_id]  # ... the most frequent one is kept
    assert small.encode("zyzzyva") == [small.unk_id]


def test_learn_bpe_on_the_hand_worked_example() -> None:
    """Sennrich et al. (2016)'s toy dictionary, with end-of-word markers. Pair counts, weighted by
    word frequency: (e,s) = (s,t) = (t,</w>) = 6 + 3 = 9 lead; ties go to the pair that sorts first.
      1. e s      -> es         9 (newest 6, widest 3)
      2. es t     -> est        9
      3. est </w> -> est</w>    9
      4. l o      -> lo         7 (low 5, lower 2)
      5. lo w     -> low        7
    These five are the paper's own first five merges. Then (e,w), (n,e) and (w,est</w>) tie at 6
    (newest); by our tie rule (e,w) goes first, and so on."""
    words = {
        ("l", "o", "w", "</w>"): 5,
        ("l", "o", "w", "e", "r", "</w>"): 2,
        ("n", "e", "w", "e", "s", "t", "</w>"): 6,
        ("w", "i", "d", "e", "s", "t", "</w>"): 3,
    }
    merges = learn_bpe(words, 10)
    assert merges[:5] == [("e", "s"), ("es", "t"), ("est", "</w>"), ("l", "o"), ("lo", "w")]
    assert merges[5:] == [
        ("e", "w"),  # 6: n-e-w-est</w>; (e,w) < (n,e) < (w,est</w>)
        ("ew", "est</w>"),  # 6: n-ewest</w> is next; (ew,est</w>) < (n,ew)
        ("n", "ewest</w>"),  # 6: newest is one symbol
        ("low", "</w>"),  # 5
        ("d", "est</w>"),  # 3: (d,est</w>) < (i,d) < (w,i)
    ]
    ranks = {m: r for r, m in enumerate(merges)}
    assert apply_bpe(("l", "o", "w", "e", "s", "t", "</w>"), ranks) == [
        "low",
        "est</w>",
    ]  # unseen word
    every = learn_bpe(words, 100)  # runs until no pair is left: each word becomes one symbol
    assert every[:10] == merges
    all_ranks = {m: r for r, m in enumerate(every)}
    assert all(len(apply_bpe(w, all_ranks)) == 1 for w in words)
    assert learn_bpe({("a", "b"): 1}, 5) == []  # min_count=2: a pair seen once is not merged
    assert learn_bpe({("a", "b"): 1}, 5, min_count=1) == [("a", "b")]


def test_bpe_round_trip_and_segments_frequent_words_whole(corpus: str) -> None:
    tok = BPETokenizer.train(corpus, vocab_size=len(set(corpus)) + 120)
    assert tok.vocab_size == len(set(corpus)) + 120
    ids = tok.encode(corpus)
    assert tok.decode(ids) == corpus
    assert len(ids) < 0.6 * len(corpus)  # merges compress: fewer tokens than characters
    assert tok.encode_word(" the") == [" the"]  # the commonest word is one token
    with pytest.raises(ValueError, match="not in the BPE alphabet"):
        tok.encode("☃")
    with pytest.raises(ValueError, match="ask for at least"):
        BPETokenizer.train(corpus, vocab_size=10)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_save_and_load_as_json(tmp_path, corpus: str, kind: str) -> None:
    tok = {
        "char": lambda: CharTokenizer.fit(corpus, specials=("<pad>",)),
        "word": lambda: WordTokenizer.fit(corpus, max_vocab=300, specials=("<bos>",)),
        "bpe": lambda: BPETokenizer.train(corpus, len(set(corpus)) + 40, specials=("<eos>",)),
    }[kind]()
    path = tok.save(tmp_path / f"{kind}.json")
    state = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, readable
    assert state["type"] == kind
    back = load_tokenizer(path)
    assert type(back) is type(tok) and back.itos == tok.itos and back.specials == tok.specials
    text = corpus[:500]
    assert back.encode(text) == tok.encode(text)
    assert type(tok).load(path).vocab_size == tok.vocab_size


def test_load_rejects_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"type": "sentencepiece"}))
    with pytest.raises(ValueError, match="unknown tokenizer type 'sentencepiece'"):
        load_tokenizer(bad)
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    CharTokenizer.fit("ab").save(bad)
    with pytest.raises(ValueError, match="holds a 'char' tokenizer, not 'bpe'"):
        BPETokenizer.load(bad)
