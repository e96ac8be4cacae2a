"""What Module 4's notebooks train with, beyond the models: samples collected during training, the
time-budgeted schedule and stop, equal-parameter sizing of recurrent models, and the equality
check against torch's recurrent layers (which must catch a difference)."""

from __future__ import annotations

import math

import pytest
import torch

from scratchlib.data.text import CharTokenizer, TextData
from scratchlib.models import gpt as gpt_module
from scratchlib.models.gpt import GPT, TimeBudget, warmup_cosine
from scratchlib.models.recurrent import GRULM, LSTMLM, ElmanLM
from scratchlib.nn.rnn import GRU, LSTM, RNN, compare_with_torch
from scratchlib.plots import TextSamples
from scratchlib.train import Trainer

TEXT = "to be or not to be, that is the question. " * 30


def _text_data() -> TextData:
    return TextData(TEXT, CharTokenizer.fit(TEXT), block_size=8, batch_size=4, eval_steps=2)


def _gpt(vocab: int) -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=vocab, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1)


def test_text_samples_are_collected_and_leave_training_untouched(one_torch_thread) -> None:
    ds = _text_data()
    cb = TextSamples(ds.encode("to be"), ds.decode, max_new_tokens=12, every=2, seed=5)
    with_cb = Trainer(max_steps=12, val_every_n_steps=3, progress=False, callbacks=[cb])
    h1 = with_cb.fit(_gpt(ds.vocab_size), ds)
    h2 = Trainer(max_steps=12, val_every_n_steps=3, progress=False).fit(_gpt(ds.vocab_size), ds)
    assert h1["train_loss"] == h2["train_loss"], "sampling must not change training's randomness"
    assert sorted(cb.samples) == [3, 9]  # every second validation
    assert all(len(s) == 12 and set(s) <= set(TEXT) for s in cb.samples.values())
    assert cb.losses == {s: pytest.approx(h1["val_loss"][i]) for i, s in ((0, 3), (2, 9))}
    model = with_cb.model
    assert cb.sample(model) == cb.sample(model)  # a fixed seed: the same continuation


def test_text_samples_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"prompt must be token ids \(T,\) or \(1, T\)"):
        TextSamples(torch.zeros(2, 3, dtype=torch.long), str)
    with pytest.raises(ValueError, match="every must be at least 1"):
        TextSamples([1, 2], str, every=0)
    with pytest.raises(TypeError, match="needs Linear.generate"):
        TextSamples([1], str).on_fit_start(None, torch.nn.Linear(2, 2))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_warmup_cosine_by_seconds_and_by_steps(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(gpt_module, "_now", clock)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=2, min_factor=0.1, max_seconds=10.0)
    f = sched.lr_lambdas[0]
    assert f(0) == pytest.approx(1 / 3) and f(1) == pytest.approx(2 / 3)  # warm-up by steps
    assert f(5) == pytest.approx(1.0)  # no time has passed yet
    clock.t += 5.0
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)  # half the budget: half way down the cosine
    clock.t += 50.0
    assert f(9) == pytest.approx(0.1)  # past the budget: the floor, never back up
    by_steps = warmup_cosine(opt, 0, max_steps=10, min_factor=0.0).lr_lambdas[0]
    assert by_steps(5) == pytest.approx(0.5) and by_steps(10) == pytest.approx(0.0)
    assert warmup_cosine(opt, 0).lr_lambdas[0](1000) == 1.0
    with pytest.raises(ValueError, match="max_steps or max_seconds, not both"):
        warmup_cosine(opt, 0, max_steps=5, max_seconds=5)


def test_time_budget_ends_the_run_after_its_seconds(monkeypatch, one_torch_thread) -> None:
    clock = Clock()
    monkeypatch.setattr(gpt_module, "_now", clock)
    ds = _text_data()

    class Tick(TimeBudget):  # every optimizer step takes one "second"
        def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx) -> None:
            clock.t += 1.0
            super().on_train_batch_end(trainer, model, outputs, batch, batch_idx)

    budget = Tick(7.5)
    history = Trainer(max_steps=10**6, val_every_n_steps=5, progress=False, callbacks=[budget]).fit(
        _gpt(ds.vocab_size), ds
    )
    assert budget.steps == 8 and budget.seconds == pytest.approx(8.0)
    assert history["step"] == [5, 8]  # validated at its period, then once more where it stopped
    with pytest.raises(ValueError, match="must be positive"):
        TimeBudget(0)


def test_gpt_recipe_with_a_time_budget(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(gpt_module, "_now", clock)
    gpt = _gpt(10).set_recipe(lr=1e-3, warmup_steps=0, min_lr=1e-4, max_seconds=4.0)
    sched = gpt.configure_optimizers()["lr_scheduler"]["scheduler"]
    clock.t += 4.0
    assert sched.lr_lambdas[0](3) == pytest.approx(0.1)


@pytest.mark.parametrize("cls", [ElmanLM, LSTMLM, GRULM])
def test_count_params_and_sized_to(cls) -> None:
    for hidden, layers, embed, tie in ((7, 1, None, False), (12, 3, 5, False), (9, 2, None, True)):
        model = cls(17, hidden, layers, embed_dim=embed, tie_weights=tie)
        assert model.num_params() == cls.count_params(17, hidden, layers, embed, tie)
    target = 50_000
    model = cls.sized_to(17, target, 2)
    h = model.rnn.hidden_size
    n = model.num_params()
    assert abs(n - target) <= min(abs(cls.count_params(17, k, 2) - target) for k in (h - 1, h + 1))


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_compare_with_torch_is_zero_when_equal_and_catches_a_difference(cls, monkeypatch) -> None:
    torch.manual_seed(0)
    layer = cls(3, 5, num_layers=2).double()
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    same = compare_with_torch(layer, x)
    assert set(same) == {"output", "final state", "input gradient", "weight gradients"}
    assert max(same.values()) < 1e-12
    honest = cls.to_torch

    def off_by_a_little(self):
        ref = honest(self)
        with torch.no_grad():
            ref.weight_hh_l1.add_(1e-3)  # the top layer's recurrent weights differ
        return ref

    monkeypatch.setattr(cls, "to_torch", off_by_a_little)
    diff = compare_with_torch(layer, x)
    assert all(v > 1e-6 for v in diff.values()), diff
    assert math.isfinite(sum(diff.values()))
