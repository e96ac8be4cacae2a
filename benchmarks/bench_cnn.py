"""CNN speed: our ResNet-18 against torchvision's, and our im2col conv2d against F.conv2d.

1. Training throughput (images/s, forward + backward + SGD step) of ``scratchlib.models.ResNet(18)``
   over ``torchvision.models.resnet18`` on the same input with the same initial weights, after
   checking that the two compute the same function. On CUDA both run channels-last with bf16
   autocast (``--compile`` adds ``torch.compile``). Goal: >= 0.95.
2. Our from-scratch ``scratchlib.nn.conv2d`` (unfold + one matmul) over ``F.conv2d`` (cuDNN /
   oneDNN), forward + backward on a typical 3x3 layer. Not a goal, a lesson: the notebooks prove
   our conv equal and then train with the fast one.

Sizes (``--size``): ``full`` is ImageNet-sized (batch 128 at 224 px) and is what ``auto`` picks
on CUDA; without a GPU ``auto`` picks ``cpu`` (batch 32 at 64 px, a few steps), because the full
size takes more than 13 minutes on a 2-core CPU. Both run the same code; only the sizes differ.
``quick`` is a seconds-long smoke run. Measurements alternate between the two contenders and
report medians, so a noisy machine affects both alike.

    python benchmarks/bench_cnn.py [--device auto|cpu|cuda] [--size auto|full|cpu|quick] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from scratchlib.models.resnet import ResNet
from scratchlib.nn import conv2d
from scratchlib.utils import choose_device, describe_device, seed_everything


@dataclass(frozen=True)
class Size:
    batch: int  # ResNet-18 batch
    image: int  # ResNet-18 image side, pixels
    steps: int  # timed training steps per repeat
    warmup: int  # untimed steps first (cuDNN autotuning, compilation)
    repeats: int  # alternating repeats; medians reported
    conv: tuple[int, int, int]  # conv2d input: batch, channels, side
    conv_steps: int


SIZES = {
    "full": Size(128, 224, 20, 5, 5, (64, 64, 32), 20),
    "cpu": Size(32, 64, 4, 2, 5, (16, 64, 32), 5),
    "quick": Size(8, 32, 3, 1, 3, (4, 16, 16), 3),
}


def choose_size(name: str, device: torch.device) -> tuple[str, str]:
    """The size to run and why, in words."""
    if name != "auto":
        return name, "asked for on the command line"
    if device.type == "cuda":
        return "full", "a CUDA GPU is present"
    return "cpu", (
        f"no CUDA GPU ({device.type}): the full size (batch 128 at 224 px) takes more than "
        "13 minutes on a 2-core CPU; --size full runs it anyway"
    )


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


def alternate(contenders: dict[str, Callable], x, y, size: Size, steps: int, device) -> dict:
    """Median seconds per repeat of ``steps`` steps, the contenders taking turns."""
    for step in contenders.values():
        time_steps(step, x, y, size.warmup, device)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(size.repeats):
        for name, step in contenders.items():
            times[name].append(time_steps(step, x, y, steps, device))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_resnet(size: Size, device: torch.device, compile_: bool) -> float:
    seed_everything(0)
    ours, ref = ResNet(18), torchvision.models.resnet18(weights=None)
    copy_weights(ref, ours)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    ours = ours.to(device, memory_format=fmt)
    ref = ref.to(device, memory_format=fmt)
    x = torch.randn(size.batch, 3, size.image, size.image, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (size.batch,), device=device)
    with torch.no_grad():  # same weights, same input: the same function
        want = ref.eval()(x)
        err = ((ours.eval()(x) - want).abs().max() / want.abs().max()).item()
    # relative: on CUDA cuDNN may use TF32 (about 1e-3 relative precision); on the CPU it is ~0
    if err > 1e-3:
        raise SystemExit(f"our ResNet-18 and torchvision's disagree by {err:.2e} (relative)")
    ours.train(), ref.train()
    contenders = {
        "ours": train_step_fn(ours, device, compile_),
        "torchvision": train_step_fn(ref, device, compile_),
    }
    sec = alternate(contenders, x, y, size, size.steps, device)
    ips = {k: size.batch * size.steps / s for k, s in sec.items()}
    ratio = ips["ours"] / ips["torchvision"]
    print(
        f"ResNet-18 training, batch {size.batch} x 3x{size.image}x{size.image}"
        f"{', channels_last + bf16' if device.type == 'cuda' else ', float32'}"
        f"{', compiled' if compile_ else ''}; outputs equal to torchvision's (relative {err:.1e}):"
    )
    print(
        f"  ours {ips['ours']:.1f} img/s, torchvision {ips['torchvision']:.1f} img/s, "
        f"ratio {ratio:.3f} (goal >= 0.95)"
    )
    return ratio


def bench_conv(size: Size, device: torch.device) -> float:
    n, c, hw = size.conv
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, hw, hw, generator=g).to(device).requires_grad_()
    w = torch.randn(c, c, 3, 3, generator=g).to(device).requires_grad_()
    b = torch.randn(c, generator=g).to(device).requires_grad_()
    with torch.no_grad():
        ref = F.conv2d(x, w, b, padding=1)
        err = ((conv2d(x, w, b, padding=1) - ref).abs().max() / ref.abs().max()).item()
    # relative: on CUDA both may use TF32 (about 1e-3 relative precision)
    if err > 5e-3:
        raise SystemExit(f"our conv2d and F.conv2d disagree by {err:.2e} (relative)")

    def run(fn) -> Callable:
        def step(_x, _y):
            fn(x, w, b, padding=1).sum().backward()

        return step

    sec = alternate(
        {"ours": run(conv2d), "F.conv2d": run(F.conv2d)}, None, None, size, size.conv_steps, device
    )
    ms = {k: s / size.conv_steps * 1e3 for k, s in sec.items()}
    ratio = ms["F.conv2d"] / ms["ours"]  # throughput ratio: ours over F.conv2d
    print(f"conv2d 3x3, {n}x{c}x{hw}x{hw} -> {c} channels, forward + backward:")
    print(
        f"  ours {ms['ours']:.2f} ms, F.conv2d {ms['F.conv2d']:.2f} ms, "
        f"throughput ratio {ratio:.3f} (ours / F.conv2d)"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--size",
        default="auto",
        choices=["auto", *SIZES],
        help="auto: full on CUDA, cpu otherwise",
    )
    p.add_argument("--quick", action="store_true", help="same as --size quick (seconds on a CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile both ResNets")
    p.add_argument("--batch", type=int, help="ResNet-18 batch size (overrides the size's)")
    p.add_argument("--steps", type=int, help="timed steps per repeat (overrides the size's)")
    p.add_argument("--repeats", type=int, help="alternating repeats (overrides the size's)")
    args = p.parse_args(argv)
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True  # our conv2d's matmul, like cuDNN's convs
    name, why = choose_size("quick" if args.quick else args.size, device)
    size = SIZES[name]
    overrides = {"batch": args.batch, "steps": args.steps, "repeats": args.repeats}
    size = replace(size, **{k: v for k, v in overrides.items() if v is not None})
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    print(f"size: {name} ({why})")
    bench_resnet(size, device, args.compile)
    bench_conv(size, device)
    print(f"bench_cnn: {time.perf_counter() - t0:.0f} s after imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
