"""The synthetic sequence tasks are what they claim: deterministic by seed, the right targets,
and the baselines the notebooks compare against."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from scratchlib.data.sequence_tasks import (
    DATE_FORMATS,
    IGNORE_INDEX,
    adding_problem,
    copy_task,
    date_pairs,
    reversal_pairs,
    temporal_xor,
)


def test_temporal_xor_every_third_bit_is_the_xor_of_the_two_before() -> None:
    task = temporal_xor(n_sequences=20, n_triples=7, seed=3)
    assert task.x.shape == task.y.shape == (20, 20, 1) and task.x.dtype == np.float32
    stream = np.concatenate([task.x[:, :1, 0], task.y[..., 0]], axis=1).astype(int)
    assert np.array_equal(stream[:, 2::3], stream[:, 0::3] ^ stream[:, 1::3])
    np.testing.assert_array_equal(task.x[:, 1:], task.y[:, :-1])  # y is x shifted by one
    # the mask marks exactly the predictable targets: y_t at stream position t+1 ≡ 2 (mod 3)
    assert np.array_equal(np.where(task.mask[0])[0], np.arange(1, 20, 3))
    assert 0.4 < task.x.mean() < 0.6 and task.baseline == 0.25
    np.testing.assert_array_equal(temporal_xor(20, 7, seed=3).x, task.x)
    assert not np.array_equal(temporal_xor(20, 7, seed=4).x, task.x)


def test_adding_problem_targets_and_mean_baseline() -> None:
    task = adding_problem(n=20_000, length=30, seed=0)
    x, y = task.x, task.y
    assert x.shape == (20_000, 30, 2) and y.shape == (20_000, 1)
    markers = x[..., 1]
    assert np.all(markers.sum(1) == 2)
    assert np.all(markers[:, :15].sum(1) == 1) and np.all(
        markers[:, 15:].sum(1) == 1
    )  # one per half
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(1), rtol=1e-6)
    # predicting the mean: MSE = Var(U1 + U2) = 2/12 ≈ 0.167, the baseline the paper's task implies
    assert task.baseline == pytest.approx(1 / 6)
    assert float(((y - y.mean()) ** 2).mean()) == pytest.approx(1 / 6, abs=0.005)
    assert float(((y - 1.0) ** 2).mean()) == pytest.approx(1 / 6, abs=0.005)
    np.testing.assert_array_equal(
        adding_problem(50, 10, seed=1).x, adding_problem(50, 10, seed=1).x
    )
    with pytest.raises(ValueError, match="length >= 2"):
        adding_problem(10, length=1)


def test_copy_task_recalls_the_symbols_after_the_lag() -> None:
    task = copy_task(n=64, seq_len=4, lag=9, n_symbols=6, seed=2)
    tokens, total = task.info["tokens"], 2 * 4 + 9
    assert task.x.shape == (64, total, 8) and task.y.shape == (64, total)
    np.testing.assert_array_equal(task.x.argmax(-1), tokens)  # one-hot of the tokens
    np.testing.assert_array_equal(task.y[:, -4:], tokens[:, :4])  # write back what was read
    assert np.all(task.y[:, :-4] == IGNORE_INDEX) and np.array_equal(
        task.mask, task.y != IGNORE_INDEX
    )
    assert np.all(tokens[:, 4 + 9 - 1] == 7)  # the "go" marker, lag steps after the last symbol
    assert np.all(tokens[:, 4:-4][:, :-1] == 6)  # blanks while waiting (all but the go marker)
    assert tokens[:, :4].max() < 6
    assert task.baseline == pytest.approx(np.log(6))
    with pytest.raises(ValueError, match="lag must be at least 1"):
        copy_task(lag=0)


def _parse(human: str) -> dt.date:
    """An independent reading of the human side: strip ordinals, then try each strftime format."""
    s = re.sub(r"^the (\d+)(st|nd|rd|th) of ", r"\1 ", human)
    for fmt in [f for f in DATE_FORMATS if f != "ordinal"]:
        try:
            return dt.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise AssertionError(f"{human!r} parses with no known format")


def test_date_pairs_parse_back_to_the_same_date() -> None:
    pairs = date_pairs(n=400, seed=0)
    for human, iso in pairs:
        assert _parse(human) == dt.date.fromisoformat(iso), human
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso)
    humans = [h for h, _ in pairs]
    assert any(h.islower() for h in humans) and any(h[0].isupper() for h in humans)
    assert any(h.startswith("the ") for h in humans) and any("/" in h for h in humans)
    assert len({len(h) for h in humans}) > 8  # varied lengths: accuracy against length is testable
    assert date_pairs(5, seed=1) == date_pairs(5, seed=1) != date_pairs(5, seed=2)
    with pytest.raises(ValueError, match="strftime patterns"):
        date_pairs(3, formats=("dd/mm",))


def test_reversal_pairs() -> None:
    pairs = reversal_pairs(n=100, min_len=2, max_len=6, alphabet="abc", seed=0)
    assert all(out == src[::-1] for src, out in pairs)
    assert {len(s) for s, _ in pairs} == {2, 3, 4, 5, 6}
    assert set("".join(s for s, _ in pairs)) == set("abc")
    assert reversal_pairs(10, seed=5) == reversal_pairs(10, seed=5)
    with pytest.raises(ValueError, match="max_len 1 is below min_len 3"):
        reversal_pairs(5, min_len=3, max_len=1)
