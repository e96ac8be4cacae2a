"""The Trainer's own cost: its time over a bare PyTorch loop on the same model, data and seed.

Both loops do the same work — same batches, same optimiser, and the same per-epoch training loss
and accuracy that a careful hand-written loop computes (summed on the device, read once an epoch) —
and the benchmark checks they produce the same losses. The Trainer adds what a learner gets for
free: tracking to a run folder (events, scalars.csv), best/last checkpoints every epoch, the NaN
guard, schedulers. Goal (DESIGN.md section 8): ratio <= 1.05.

    python benchmarks/bench_trainer.py [--device auto|cpu|cuda] [--epochs N] [--samples N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import track
from scratchlib.train import TensorLoader, Trainer
from scratchlib.utils import choose_device, describe_device, seed_everything


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def make_data(n: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 784, generator=g)
    y = (x[:, :10].argmax(1) + (x[:, 10] > 1).long()) % 10  # learnable labels
    return x.to(device), y.to(device)


def bare_loop(x, y, epochs: int, batch: int, device: torch.device) -> tuple[float, list[float]]:
    seed_everything(0)
    model = make_model().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = TensorLoader(x, y, batch, shuffle=True, seed=0)
    _sync(device)
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for xb, yb in loader:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            correct += (logits.argmax(1) == yb).sum()
        losses.append(total.item() / len(loader))  # one sync per epoch
        _ = correct.item() / len(x)
    _sync(device)
    return time.perf_counter() - t0, losses


def trainer_loop(
    x, y, epochs: int, batch: int, device: torch.device, progress: bool
) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as root:
        seed_everything(0)  # the same initial weights as the bare loop
        model = make_model()
        run = track.start(model, experiment="bench", config={"epochs": epochs}, root=root)
        trainer = Trainer(
            epochs=epochs,
            lr=1e-3,
            device=device,
            seed=0,
            progress=progress,
            run=run,
            amp=False,
            monitor="train_loss",
        )
        loader = TensorLoader(x, y, batch, shuffle=True, seed=0)
        _sync(device)
        t0 = time.perf_counter()
        history = trainer.fit(model, (loader, None))
        _sync(device)
        elapsed = time.perf_counter() - t0
        run.finish()
    return elapsed, history["train_loss"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=None, help="default: 3 on CUDA, 2 on a CPU")
    ap.add_argument(
        "--samples",
        type=int,
        default=None,
        help="default: an MNIST-sized epoch (60,000); on two CPU cores the whole of `make bench` "
        "still fits in a minute",
    )
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--progress", action="store_true", help="show the Trainer's progress bars too")
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    cpu = device.type == "cpu"
    args.epochs = args.epochs or (2 if cpu else 3)
    args.samples = args.samples or 60000
    x, y = make_data(args.samples, device)
    bare_loop(x, y, 1, args.batch_size, device)  # warm-up (allocator, kernels)
    trainer_loop(x, y, 1, args.batch_size, device, False)
    bare, ours = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        tb, loss_b = bare_loop(x, y, args.epochs, args.batch_size, device)
        tt, loss_t = trainer_loop(x, y, args.epochs, args.batch_size, device, args.progress)
        bare.append(tb)
        ours.append(tt)
    same = all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for a, b in zip(loss_b, loss_t, strict=True))
    if not same:
        print(f"WARNING: the loops did different work: losses {loss_b} vs {loss_t}")
    b, t = statistics.median(bare), statistics.median(ours)
    steps = args.epochs * -(-args.samples // args.batch_size)
    print(
        f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    print(
        f"workload: MLP 784-512-512-10, {args.samples} samples, batch {args.batch_size}, "
        f"{args.epochs} epochs ({steps} steps), median of {args.repeats}"
    )
    print(f"bare PyTorch loop : {b:.3f} s  ({1e3 * b / steps:.3f} ms/step)")
    print(
        f"scratchlib Trainer: {t:.3f} s  ({1e3 * t / steps:.3f} ms/step; tracking + checkpoints on)"
    )
    ratio = t / b
    print(f"Trainer / bare = {ratio:.3f}  (goal <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
