"""CNN speed: our ResNet-18 against torchvision's, and our im2col conv2d against F.conv2d.

1. Training throughput (images/s, forward + backward + SGD step) of ``scratchlib.models.ResNet(18)``
   over ``torchvision.models.resnet18`` on the same input with the same initial weights. On CUDA
   both run channels-last with bf16 autocast (``--compile`` adds ``torch.compile``). Goal: >= 0.95.
2. Our from-scratch ``scratchlib.nn.conv2d`` (unfold + one matmul) over ``F.conv2d`` (cuDNN /
   oneDNN), forward + backward on a typical 3x3 layer. Not a goal, a lesson: the notebooks prove
   our conv equal and then train with the fast one.

Measurements alternate between the two contenders and report medians, so a noisy machine
affects both alike.

    python benchmarks/bench_cnn.py [--device auto|cpu|cuda] [--quick] [--compile] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from scratchlib.models.resnet import ResNet
from scratchlib.nn import conv2d
from scratchlib.utils import choose_device, describe_device, seed_everything


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy tensors in order: our ResNet and torchvision's list them in the same order."""
    a, b = src.state_dict(), dst.state_dict()
    if len(a) != len(b):
        raise ValueError(f"state dicts differ in length: {len(a)} vs {len(b)}")
    new = {}
    for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
        if va.shape != vb.shape:
            raise ValueError(f"{ka} {tuple(va.shape)} does not fit {kb} {tuple(vb.shape)}")
        new[kb] = va.clone()
    dst.load_state_dict(new)


def train_step_fn(model: nn.Module, device: torch.device, compile_: bool) -> Callable:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fwd = torch.compile(model) if compile_ else model
    amp = device.type == "cuda"

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def time_steps(step: Callable, x, y, steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    _sync(device)
    return time.perf_counter() - t0


def bench_resnet(args, device: torch.device) -> float:
    batch, size = (8, 32) if args.quick else (args.batch, 224)
    steps = 3 if args.quick else args.steps
    seed_everything(0)
    ours, ref = ResNet(18), torchvision.models.resnet18(weights=None)
    copy_weights(ref, ours)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    ours = ours.to(device, memory_format=fmt).train()
    ref = ref.to(device, memory_format=fmt).train()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    with torch.no_grad():  # same weights, same input: the same function
        ours.eval(), ref.eval()
        diff = (ours(x) - ref(x)).abs().max().item()
        ours.train(), ref.train()
    if diff > 1e-3:
        raise SystemExit(f"our ResNet-18 and torchvision's disagree by {diff:.2e}")
    contenders = {
        "ours": train_step_fn(ours, device, args.compile),
        "torchvision": train_step_fn(ref, device, args.compile),
    }
    for step in contenders.values():  # warm-up: cuDNN autotuning, compilation
        time_steps(step, x, y, 2 if args.quick else 5, device)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, step in contenders.items():
            times[name].append(time_steps(step, x, y, steps, device))
    ips = {k: batch * steps / statistics.median(v) for k, v in times.items()}
    ratio = ips["ours"] / ips["torchvision"]
    print(
        f"ResNet-18 training, batch {batch} x 3x{size}x{size}"
        f"{', channels_last + bf16' if device.type == 'cuda' else ''}"
        f"{', compiled' if args.compile else ''}:"
    )
    print(
        f"  ours {ips['ours']:.1f} img/s, torchvision {ips['torchvision']:.1f} img/s, "
        f"ratio {ratio:.3f} (goal >= 0.95)"
    )
    return ratio


def bench_conv(args, device: torch.device) -> float:
    n, c, hw = (4, 16, 16) if args.quick else (64, 64, 32)
    steps = 3 if args.quick else 20
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, hw, hw, generator=g).to(device).requires_grad_()
    w = torch.randn(c, c, 3, 3, generator=g).to(device).requires_grad_()
    b = torch.randn(c, generator=g).to(device).requires_grad_()
    with torch.no_grad():
        ref = F.conv2d(x, w, b, padding=1)
        err = ((conv2d(x, w, b, padding=1) - ref).abs().max() / ref.abs().max()).item()
    # relative: on CUDA cuDNN may use TF32 (about 1e-3 relative precision), our matmul float32
    if err > 5e-3:
        raise SystemExit(f"our conv2d and F.conv2d disagree by {err:.2e} (relative)")

    def run(fn) -> Callable:
        def step(_x, _y):
            fn(x, w, b, padding=1).sum().backward()

        return step

    contenders = {"ours": run(conv2d), "F.conv2d": run(F.conv2d)}
    for step in contenders.values():
        time_steps(step, None, None, 2, device)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, step in contenders.items():
            times[name].append(time_steps(step, None, None, steps, device))
    med = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
    ratio = med["F.conv2d"] / med["ours"]  # throughput ratio: ours over F.conv2d
    print(f"conv2d 3x3, {n}x{c}x{hw}x{hw} -> {c} channels, forward + backward:")
    print(
        f"  ours {med['ours']:.2f} ms, F.conv2d {med['F.conv2d']:.2f} ms, "
        f"throughput ratio {ratio:.3f}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile both ResNets")
    p.add_argument("--batch", type=int, default=128, help="ResNet-18 batch size (not --quick)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat (not --quick)")
    p.add_argument("--repeats", type=int, default=5, help="alternating repeats; medians reported")
    args = p.parse_args(argv)
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    bench_resnet(args, device)
    bench_conv(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
