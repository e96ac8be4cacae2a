"""Module 4's models: shapes, fused == scratch, GPT == a plain PyTorch GPT, a loss that falls on a
tiny task, generation; plus the sequence metrics, sampling and plots."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlib import metrics, models, plots, track
from scratchlib.data.sequence_tasks import adding_problem, copy_task, reversal_pairs
from scratchlib.models.gpt import GPT, GPTConfig
from scratchlib.models.recurrent import GRULM, LSTMLM, ElmanLM, ElmanNet, GRUNet, LSTMNet
from scratchlib.models.seq2seq import Seq2Seq
from scratchlib.nn import LSTM

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def _train(model, batch, steps: int, lr: float = 1e-2) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for i in range(steps):
        loss = model.training_step(batch, i)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# --- recurrent nets and language models --------------------------------------------------------


@pytest.mark.parametrize("cls", [ElmanNet, LSTMNet, GRUNet])
def test_sequence_net_shapes_and_fused_equals_scratch(cls) -> None:
    torch.manual_seed(0)
    net = cls(input_size=3, hidden_size=8, output_size=2, num_layers=2, readout="all")
    x = torch.randn(4, 6, 3)
    out = net(x)
    assert out.shape == (4, 6, 2)
    fused = cls(input_size=3, hidden_size=8, output_size=2, num_layers=2, readout="all", fused=True)
    assert isinstance(fused.rnn, torch.nn.RNNBase) and not isinstance(net.rnn, torch.nn.RNNBase)
    fused.load_state_dict(net.state_dict())  # the same parameter names either way
    torch.testing.assert_close(fused(x), out, atol=1e-5, rtol=1e-5)
    last = cls(input_size=3, hidden_size=8, output_size=1)
    assert last(x).shape == (4, 1)
    assert cls.MODEL_INFO.module == "04-Sequence-Models" and models.get(cls.__name__) is cls


def test_lm_fused_switch_keeps_function_and_gradients() -> None:
    torch.manual_seed(0)
    lm = LSTMLM(vocab_size=11, hidden_size=12, num_layers=2)
    x, y = torch.randint(0, 11, (3, 7)), torch.randint(0, 11, (3, 7))
    loss = lm.training_step((x, y), 0)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in lm.named_parameters()}
    lm.zero_grad()
    lm.set_fused(True)
    assert isinstance(lm.rnn, torch.nn.LSTM)
    fused_loss = lm.training_step((x, y), 0)["loss"]
    fused_loss.backward()
    torch.testing.assert_close(fused_loss, loss)
    for n, p in lm.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-6, rtol=1e-5)
    assert isinstance(lm.set_fused(False).rnn, LSTM)


@pytest.mark.parametrize("cls", [ElmanLM, LSTMLM, GRULM])
def test_lm_shapes_generate_and_state_carry(cls) -> None:
    torch.manual_seed(0)
    lm = cls(vocab_size=9, hidden_size=8, num_layers=1, tie_weights=True)
    assert lm.head.weight is lm.embed.weight
    idx = torch.randint(0, 9, (2, 5))
    assert lm(idx).shape == (2, 5, 9)
    out = lm.generate(idx, 6, temperature=0)  # greedy
    assert out.shape == (2, 11) and torch.equal(out[:, :5], idx)
    # generating with the carried state equals re-reading the whole sequence each time
    full = lm(out[:, :-1])
    assert torch.equal(full[:, 4:].argmax(-1), out[:, 5:])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(lm.generate(idx, 4, generator=g1), lm.generate(idx, 4, generator=g2))
    assert lm.training  # generate restores the mode it found


def test_lstm_learns_a_short_adding_problem(one_torch_thread) -> None:
    task = adding_problem(n=256, length=6, seed=0)
    batch = (torch.from_numpy(task.x), torch.from_numpy(task.y))
    torch.manual_seed(0)
    net = LSTMNet(input_size=2, hidden_size=16, fused=True)
    losses = _train(net, batch, 120, lr=3e-2)
    assert losses[-1] < 0.25 * task.baseline < losses[0]  # far below predicting the mean


def test_copy_task_classification_step_reports_accuracy(one_torch_thread) -> None:
    task = copy_task(n=32, seq_len=3, lag=4, n_symbols=4, seed=0)
    batch = (torch.from_numpy(task.x), torch.from_numpy(task.y))
    net = GRUNet(input_size=6, hidden_size=16, output_size=4, readout="all", fused=True)
    out = net.validation_step(batch, 0)
    assert out["count"] == 32 * 3 and 0 <= out["correct"] <= out["count"]
    assert 0 <= out["seq_accuracy"] <= 1
    assert abs(out["loss"].item() - task.baseline) < 0.5  # untrained: near a uniform guess
    losses = _train(net, batch, 40)
    assert losses[-1] < losses[0] - 0.3


def test_bad_inputs_name_the_fix() -> None:
    with pytest.raises(ValueError, match="readout must be 'last'"):
        LSTMNet(3, readout="mean")
    with pytest.raises(ValueError, match=r"\(B, T, features\)"):
        LSTMNet(3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="tie_weights needs embed_dim == hidden_size"):
        LSTMLM(10, hidden_size=8, embed_dim=4, tie_weights=True)
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T\)"):
        GRULM(10, hidden_size=8)(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="outputs .* and targets .* differ"):
        LSTMNet(2).training_step((torch.randn(2, 3, 2), torch.randn(2, 3)), 0)


# --- seq2seq -----------------------------------------------------------------------------------


def _reversal_batch(n: int = 32):
    """Padded pairs over the alphabet ids 3.. (0 = pad, 1 = BOS, 2 = EOS), as the loaders give."""
    pairs = reversal_pairs(n, min_len=2, max_len=5, alphabet="abcd", seed=0)
    s_len, t_len = 5, 6
    src = torch.zeros(n, s_len, dtype=torch.long)
    tgt_in, tgt_out = (
        torch.zeros(n, t_len, dtype=torch.long),
        torch.zeros(n, t_len, dtype=torch.long),
    )
    for i, (a, b) in enumerate(pairs):
        ids_a, ids_b = [3 + "abcd".index(c) for c in a], [3 + "abcd".index(c) for c in b]
        src[i, : len(a)] = torch.tensor(ids_a)
        tgt_in[i, : len(b) + 1] = torch.tensor([1, *ids_b])
        tgt_out[i, : len(b) + 1] = torch.tensor([*ids_b, 2])
    return {
        "src": src,
        "src_mask": src != 0,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "tgt_mask": tgt_out != 0,
    }


@pytest.mark.parametrize("attention", [True, False])
def test_seq2seq_shapes_loss_falls_and_translate(attention: bool, one_torch_thread) -> None:
    torch.manual_seed(0)
    batch = _reversal_batch()
    model = Seq2Seq(7, 7, embed_dim=8, hidden_size=16, attention=attention, fused=True)
    logits, weights = model(batch["src"], batch["src_mask"], batch["tgt_in"])
    assert logits.shape == (32, 6, 7)
    if attention:
        assert weights.shape == (32, 6, 5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(32, 6))
        assert (
            weights.masked_select(~batch["src_mask"][:, None, :]).abs().max() == 0
        )  # no weight on padding
    else:
        assert weights is None
    losses = _train(model, batch, 40)
    assert losses[-1] < 0.7 * losses[0]
    tokens, w = model.translate(batch["src"], batch["src_mask"], max_len=6)
    assert tokens.shape == (32, 6) and (w is None) != attention
    after_eos = (tokens == 2).int().cumsum(1) - (tokens == 2).int()  # positions after the first EOS
    assert torch.all(tokens[after_eos > 0] == 0)  # are padding
    out = model.validation_step(batch, 0)
    assert 0 <= out["seq_accuracy"] <= 1 and out["count"] == batch["tgt_mask"].sum()


def test_seq2seq_scratch_equals_fused_with_padding() -> None:
    """Our encoder masks padded steps; nn.LSTM gets a packed sequence: the same states."""
    torch.manual_seed(0)
    batch = _reversal_batch(8)
    model = Seq2Seq(7, 7, embed_dim=8, hidden_size=16, attention=True, fused=False)
    logits, w = model(batch["src"], batch["src_mask"], batch["tgt_in"])
    model.set_fused(True)
    logits_f, w_f = model(batch["src"], batch["src_mask"], batch["tgt_in"])
    torch.testing.assert_close(logits_f, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_f, w, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one real token"):
        model.encode(batch["src"], torch.zeros_like(batch["src_mask"]))


# --- GPT ---------------------------------------------------------------------------------------


def test_gpt_flash_equals_scratch_attention_values_and_gradients() -> None:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        flash = GPT(**TINY, flash=True)
        scratch = GPT(**TINY, flash=False)
        scratch.load_state_dict(flash.state_dict())
        x, y = torch.randint(0, 13, (3, 16)), torch.randint(0, 13, (3, 16))
        lf, ls = flash.training_step((x, y), 0)["loss"], scratch.training_step((x, y), 0)["loss"]
        torch.testing.assert_close(ls, lf)
        lf.backward(), ls.backward()
        for (n, a), b in zip(flash.named_parameters(), scratch.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, msg=n)
    finally:
        torch.set_default_dtype(old)


def _plain_gpt():
    spec = importlib.util.spec_from_file_location(
        "bench_sequence", ROOT / "benchmarks" / "bench_sequence.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PlainGPT


def test_gpt_equals_a_gpt_built_from_torch_modules() -> None:
    """Ours (bias=True) against nn.Embedding + pre-norm nn.TransformerEncoderLayer + tied head,
    the reference the benchmark races; weights copied."""
    torch.manual_seed(0)
    ours = GPT(**TINY, bias=True).eval()
    ref = _plain_gpt().from_ours(ours).eval()
    x = torch.randint(0, 13, (2, 16))
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-4)


def test_gpt_structure_generate_and_optimizer_groups() -> None:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**TINY))
    assert gpt.lm_head.weight is gpt.wte.weight  # tied
    assert gpt.hparams == {**TINY, "bias": False, "flash": True, "tie_weights": True}
    n_total = sum(p.numel() for p in gpt.parameters())
    assert gpt.num_params(non_embedding=False) == n_total
    assert gpt.num_params() == n_total - 16 * 16  # the position table is not counted
    x = torch.randint(0, 13, (2, 10))
    assert gpt(x).shape == (2, 10, 13)
    out = gpt.generate(x, 12, top_k=3)  # longer than block_size: the context is cropped
    assert out.shape == (2, 22) and torch.equal(out[:, :10], x)
    greedy = gpt.generate(x, 3, temperature=0)
    assert torch.equal(greedy, gpt.generate(x, 3, top_k=1))
    maps = gpt.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 10, 10)
    assert torch.all(maps[0].triu(1) == 0)  # causal
    with pytest.raises(ValueError, match="longer than block_size=16"):
        gpt(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="unknown GPT settings"):
        GPT(n_layers=2)
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=10, n_head=3)

    conf = gpt.set_recipe(
        lr=1e-3, warmup_steps=10, max_steps=110, min_lr=1e-4
    ).configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(
        p.dim() < 2 for p in no_decay["params"]
    )
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n_total
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[9] < 1e-3 and lrs[10] == pytest.approx(1e-3)  # warm-up
    assert lrs[60] == pytest.approx(
        1e-4 + 0.5 * (1e-3 - 1e-4), rel=1e-6
    )  # half way down the cosine
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    with pytest.raises(TypeError, match="unknown recipe settings"):
        gpt.set_recipe(learning_rate=1)


def test_gpt_loss_falls_on_a_repeating_text(one_torch_thread) -> None:
    torch.manual_seed(0)
    seq = torch.arange(40) % 5  # a cycle: each next token is predictable from the last
    x, y = (
        torch.stack([seq[i : i + 16] for i in range(8)]),
        torch.stack([seq[i + 1 : i + 17] for i in range(8)]),
    )
    gpt = GPT(**TINY)
    losses = _train(gpt, (x, y), 40, lr=1e-2)
    assert losses[0] > 2.0 and losses[-1] < 0.1 * losses[0]  # ln 13 ≈ 2.56 down to nearly 0


# --- metrics and sampling ------------------------------------------------------------------------


def test_lm_metrics() -> None:
    assert metrics.perplexity(math.log(65)) == pytest.approx(65)  # a uniform guess over 65 chars
    assert metrics.bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert metrics.bits_per_char(math.log(4), chars_per_token=2.0) == pytest.approx(1.0)
    y = np.array([[1, 2, 3], [1, 2, -100], [4, 4, 4]])
    pred = np.array([[1, 2, 3], [1, 2, 9], [4, 0, 4]])
    assert metrics.token_accuracy(y, pred) == pytest.approx(7 / 8)  # the -100 is not scored
    assert metrics.sequence_accuracy(y, pred) == pytest.approx(2 / 3)
    scores = np.eye(10)[pred]  # (N, T, V) scores: their argmax is pred
    assert metrics.sequence_accuracy(y, scores) == pytest.approx(2 / 3)
    assert metrics.sequence_accuracy(["2013-12-25", "a"], ["2013-12-25", "b"]) == 0.5
    with pytest.raises(ValueError, match="differ"):
        metrics.sequence_accuracy(y, pred[:, :2])


def test_sampling_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top2 = metrics.filter_logits(logits, top_k=2)
    assert torch.isinf(top2[0, 2:]).all() and torch.isfinite(top2[0, :2]).all()
    nucleus = metrics.filter_logits(logits, top_p=0.8)  # 0.5 + 0.3 reaches 0.8: two tokens
    assert torch.isfinite(nucleus[0, :2]).all() and torch.isinf(nucleus[0, 2:]).all()
    assert torch.isfinite(metrics.filter_logits(logits, top_p=0.81)[0, :3]).all()
    assert torch.isfinite(metrics.filter_logits(logits, top_p=0.1)).sum() == 1  # the top one stays
    shuffled = logits[:, [2, 0, 3, 1]]  # order in the vocabulary does not matter
    assert torch.equal(
        torch.isfinite(metrics.filter_logits(shuffled, top_p=0.8)),
        torch.tensor([[False, True, False, True]]),
    )
    g = torch.Generator().manual_seed(0)
    many = metrics.sample_next(logits.expand(4000, 4), temperature=1.0, generator=g)
    freq = torch.bincount(many[:, 0], minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03, rtol=0)
    cold = metrics.sample_next(logits.expand(500, 4), temperature=0.2, generator=g)
    assert (cold == 0).float().mean() > 0.9  # low temperature: nearly always the favourite
    assert metrics.sample_next(logits, temperature=0).item() == 0
    with pytest.raises(ValueError, match="top_p is a probability"):
        metrics.filter_logits(logits, top_p=1.5)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        metrics.sample_next(logits[0])


# --- plots ---------------------------------------------------------------------------------------


def test_sequence_plots_are_saved_into_the_run(tmp_path) -> None:
    run = track.start("gpt", experiment="plots", root=tmp_path)
    w = torch.softmax(torch.randn(2, 5, 5), -1)
    plots.attention_heatmap(w, queries=list("hello"), keys=list("hello"), title="heads")
    plots.alignment_matrix(w[0, :4], source=list("12/25"), output=list("2013"))
    plots.gradient_norms({"RNN": np.logspace(-6, 0, 20), "LSTM": np.ones(20)})
    plots.accuracy_by_length([5, 10, 20], {"attention": [1, 0.9, 0.8], "none": [1, 0.5, 0.1]})
    plots.samples_beside_loss([0, 100, 200], [4.2, 2.5, 1.9], {0: "xq#z", 200: "ROMEO:\nI am"})
    figs = sorted(p.name for p in run.dir.glob("figures/*.png"))
    assert figs == sorted(
        f"{n}.png"
        for n in ("attention", "alignment", "gradient_norms", "accuracy_by_length", "samples")
    )
    assert all((run.dir / "figures" / f).stat().st_size > 1000 for f in figs)
    with pytest.raises(ValueError, match="pick one example"):
        plots.attention_heatmap(torch.rand(2, 2, 3, 3))
    with pytest.raises(ValueError, match="one label per position"):
        plots.attention_heatmap(w[0], queries=list("hi"))
    with pytest.raises(ValueError, match="no samples"):
        plots.samples_beside_loss([0, 1], [1.0, 0.5], {})
