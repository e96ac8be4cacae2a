"""Train a small model with the Trainer; under torchrun every rank runs this, rank 0 writes the
weights and history. Used by tests/test_distributed.py (one process vs two gloo processes)."""

from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

from scratchlib import data, track, utils
from scratchlib.train import Trainer


def main(out: str) -> None:
    torch.set_num_threads(1)
    moons = data.load("moons", n=600, noise=0.25)  # deterministic by seed: the same on every rank
    utils.seed_everything(0)
    model = nn.Sequential(
        nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2)
    )
    rank = int(os.environ.get("RANK", "0"))
    run = (
        track.start(model, experiment="ddp", root=os.path.join(out, "runs")) if rank == 0 else None
    )
    trainer = Trainer(max_steps=12, val_every_n_steps=6, batch_size=32, accumulate=2, lr=0.2,
                      optimizer="sgd", momentum=0.9, scheduler="cosine", progress=False, run=run)  # fmt: skip
    history = trainer.fit(model, moons)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out, "weights.pt"))
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump({"world_size": trainer.world.size, "history": history}, f)
        run.finish()
    else:
        assert trainer.run is None  # rank 0 alone writes facts and checkpoints


if __name__ == "__main__":
    main(sys.argv[1])
