"""Sequence-model speed: our GPT against a plain-PyTorch GPT, our LSTM against nn.LSTM.

1. Training throughput (tokens/s, forward + backward + AdamW step) of ``scratchlib.models.GPT``
   (``flash=True``) over an equal GPT built only from PyTorch's own modules (``nn.Embedding``,
   ``nn.TransformerEncoderLayer`` pre-norm with a causal mask, tied output layer), with the same
   weights, proven equal before timing. On CUDA both run under bf16 autocast (``--compile`` adds
   ``torch.compile``). Goal: >= 0.95.
2. Our from-scratch LSTM (a Python loop over time) over ``nn.LSTM`` (one fused C++ / cuDNN kernel),
   forward + backward. Not a goal, a lesson: the notebooks prove ours equal, then train fused.
3. Our from-scratch attention over ``F.scaled_dot_product_attention`` (flash attention on a GPU).

Measurements alternate between contenders and report medians, so a noisy machine affects both.

    python benchmarks/bench_sequence.py [--device auto|cpu|cuda] [--quick] [--full-size] [--compile] [--repeats 5]

On a CPU the GPT is nanoGPT's CPU model unless --full-size; on CUDA, nanoGPT's shakespeare-char model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.models.gpt import GPT, GPTConfig
from scratchlib.nn import LSTM, scaled_dot_product_attention
from scratchlib.utils import choose_device, describe_device, seed_everything


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PlainGPT(nn.Module):
    """The same GPT from PyTorch's stock modules: what a learner would write without scratchlib."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        layer = nn.TransformerEncoderLayer(
            cfg.n_embd,
            cfg.n_head,
            dim_feedforward=4 * cfg.n_embd,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
        x = self.blocks(x, mask=mask, is_causal=True)
        return self.lm_head(self.ln_f(x))

    @classmethod
    def from_ours(cls, ours: GPT) -> PlainGPT:
        """A PlainGPT with the weights of ``ours`` (which must have ``bias=True``: torch's layers
        always have biases)."""
        cfg = ours.config
        if not cfg.bias or not cfg.tie_weights:
            raise ValueError("PlainGPT mirrors a GPT with bias=True and tie_weights=True")
        ref = cls(cfg)
        sd = {"wte.weight": ours.wte.weight, "wpe.weight": ours.wpe.weight}
        for i, b in enumerate(ours.blocks):
            p = f"blocks.layers.{i}."
            sd.update(
                {
                    p + "self_attn.in_proj_weight": b.attn.qkv.weight,
                    p + "self_attn.in_proj_bias": b.attn.qkv.bias,
                    p + "self_attn.out_proj.weight": b.attn.proj.weight,
                    p + "self_attn.out_proj.bias": b.attn.proj.bias,
                    p + "linear1.weight": b.mlp.fc.weight,
                    p + "linear1.bias": b.mlp.fc.bias,
                    p + "linear2.weight": b.mlp.proj.weight,
                    p + "linear2.bias": b.mlp.proj.bias,
                    p + "norm1.weight": b.ln_1.weight,
                    p + "norm1.bias": b.ln_1.bias,
                    p + "norm2.weight": b.ln_2.weight,
                    p + "norm2.bias": b.ln_2.bias,
                }
            )
        sd.update({"ln_f.weight": ours.ln_f.weight, "ln_f.bias": ours.ln_f.bias})
        sd["lm_head.weight"] = ours.lm_head.weight
        ref.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
        return ref.to(ours.wte.weight.device)


def time_steps(step: Callable[[], object], steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def race(
    contenders: dict[str, Callable[[], object]], steps: int, repeats: int, warmup: int, device
) -> dict[str, float]:
    """Median seconds per step of each contender, measured alternately."""
    for step in contenders.values():
        time_steps(step, warmup, device)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, step in contenders.items():
            times[name].append(time_steps(step, steps, device) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def gpt_train_step(
    model: nn.Module, x, y, device: torch.device, compile_: bool
) -> Callable[[], object]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda" or None)
    fwd = torch.compile(model) if compile_ else model
    amp = device.type == "cuda"

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = fwd(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def bench_gpt(args, device: torch.device) -> float:
    if args.quick:
        cfg = GPTConfig(
            vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0, bias=True
        )
        batch, steps = 8, 3
    elif device.type == "cpu" and not args.full_size:  # nanoGPT's CPU model, as in 05_transformer
        cfg = GPTConfig(
            vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=True
        )
        batch, steps = 12, 10
    else:  # nanoGPT's shakespeare_char model (without dropout, so both do the same arithmetic)
        cfg = GPTConfig(
            vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=True
        )
        batch, steps = args.batch, args.steps
    seed_everything(0)
    ours = GPT(cfg).to(device)
    ref = PlainGPT.from_ours(ours)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    with torch.no_grad():  # same weights, same input: the same function
        ours.eval(), ref.eval()
        diff = (ours(x) - ref(x)).abs().max().item()
        ours.train(), ref.train()
    if diff > 1e-3:
        raise SystemExit(f"our GPT and the plain PyTorch GPT disagree by {diff:.2e}")
    sec = race(
        {
            "ours": gpt_train_step(ours, x, y, device, args.compile),
            "plain": gpt_train_step(ref, x, y, device, args.compile),
        },
        steps,
        args.repeats,
        2 if args.quick else 5,
        device,
    )
    tps = {k: batch * cfg.block_size / v for k, v in sec.items()}
    ratio = tps["ours"] / tps["plain"]
    print(
        f"GPT training, {cfg.n_layer} layers x {cfg.n_head} heads x {cfg.n_embd}, batch {batch} x {cfg.block_size} tokens"
        f"{', bf16' if device.type == 'cuda' else ''}{', compiled' if args.compile else ''}:"
    )
    print(
        f"  ours {tps['ours']:,.0f} tok/s, plain PyTorch {tps['plain']:,.0f} tok/s, "
        f"ratio {ratio:.3f} (goal >= 0.95)"
    )
    return ratio


def bench_lstm(args, device: torch.device) -> float:
    b, t, i, h, layers = (8, 32, 32, 64, 1) if args.quick else (64, 128, 128, 256, 2)
    steps = 2 if args.quick else 5
    seed_everything(0)
    ours = LSTM(i, h, layers).to(device)
    ref = ours.to_torch()
    x = torch.randn(b, t, i, device=device)
    with torch.no_grad():
        diff = (ours(x)[0] - ref(x)[0]).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"our LSTM and nn.LSTM disagree by {diff:.2e}")

    def run(layer: nn.Module) -> Callable[[], object]:
        return lambda: layer(x)[0].sum().backward()

    sec = race({"ours": run(ours), "nn.LSTM": run(ref)}, steps, args.repeats, 1, device)
    ratio = sec["nn.LSTM"] / sec["ours"]  # throughput ratio: ours over nn.LSTM
    print(f"LSTM {layers} layer(s), batch {b} x {t} steps, {i} -> {h}, forward + backward:")
    print(
        f"  ours {sec['ours'] * 1e3:.1f} ms, nn.LSTM {sec['nn.LSTM'] * 1e3:.1f} ms, "
        f"throughput ratio {ratio:.3f} (nn.LSTM is {1 / ratio:.1f}x faster)"
    )
    return ratio


def bench_attention(args, device: torch.device) -> float:
    b, heads, t, d = (4, 2, 64, 32) if args.quick else (64, 6, 256, 64)
    steps = 3 if args.quick else (5 if device.type == "cpu" else 20)
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(b, heads, t, d, generator=g).to(device).requires_grad_() for _ in range(3)
    )

    def run(fn) -> Callable[[], object]:
        return lambda: fn(q, k, v, is_causal=True).sum().backward()

    sec = race(
        {"ours": run(scaled_dot_product_attention), "sdpa": run(F.scaled_dot_product_attention)},
        steps,
        args.repeats,
        1,
        device,
    )
    ratio = sec["sdpa"] / sec["ours"]
    print(f"causal attention, {b} x {heads} heads x {t} x {d}, forward + backward:")
    print(
        f"  ours {sec['ours'] * 1e3:.2f} ms, F.scaled_dot_product_attention {sec['sdpa'] * 1e3:.2f} ms, "
        f"throughput ratio {ratio:.3f}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile both GPTs")
    p.add_argument(
        "--full-size",
        action="store_true",
        help="on a CPU too, time nanoGPT's shakespeare-char GPT (6 x 6 x 384; many minutes); "
        "the CPU default is nanoGPT's CPU model (4 x 4 x 128)",
    )
    p.add_argument("--batch", type=int, default=64, help="GPT batch size (not --quick)")
    p.add_argument("--steps", type=int, default=20, help="timed GPT steps per repeat (not --quick)")
    p.add_argument(
        "--repeats", type=int, default=None, help="alternating repeats (default 5, --quick 3)"
    )
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    bench_gpt(args, device)
    bench_lstm(args, device)
    bench_attention(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
