"""The Trainer: learning, determinism, exact resume, checkpoints, custom steps, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from scratchlib import data, track
from scratchlib.train import CheckpointError, Trainer, fit_epochs, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mlp(hidden: int = 16, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))


MOONS = data.load("moons", n=400)


def test_loss_falls_and_accuracy_rises() -> None:
    h = Trainer(epochs=8, lr=0.02, batch_size=32, progress=False).fit(mlp(), MOONS)
    assert h["train_loss"][-1] < 0.6 * h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.85
    assert h["epoch"] == list(range(1, 9)) and len(h["lr"]) == 8


def test_same_seed_same_result_other_seed_other_result() -> None:
    def train(seed: int):
        model = mlp(dropout=0.2)
        h = Trainer(epochs=3, lr=0.01, batch_size=32, seed=seed, progress=False).fit(model, MOONS)
        return model.state_dict(), h

    (a, ha), (b, hb), (c, _) = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in ha.items() if k != "epoch_time"} == {
        k: v for k, v in hb.items() if k != "epoch_time"
    }
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Interrupt(Exception):
    pass


def killer(after_batches: int):
    """An augment hook that 'kills the process' on a given training batch."""
    count = {"n": 0}

    def augment(x):
        count["n"] += 1
        if count["n"] > after_batches:
            raise Interrupt
        return x

    return augment


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path: Path) -> None:
    kw = dict(epochs=4, lr=0.02, batch_size=32, scheduler="onecycle", progress=False, grad_clip=1.0)
    straight = mlp(dropout=0.3)
    h_straight = Trainer(checkpoint_dir=tmp_path / "a", **kw).fit(straight, MOONS)

    batches_per_epoch = -(-len(MOONS.x_train) // 32)
    with pytest.raises(Interrupt):  # dies in the middle of epoch 3
        Trainer(checkpoint_dir=tmp_path / "b", augment=killer(2 * batches_per_epoch + 3), **kw).fit(
            mlp(dropout=0.3), MOONS
        )
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    resumed = mlp(dropout=0.3)
    h_resumed = Trainer(checkpoint_dir=tmp_path / "b", resume=True, **kw).fit(resumed, MOONS)

    s, r = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(s[k], r[k]) for k in s), (
        "resumed weights differ from an uninterrupted run"
    )
    assert h_resumed["train_loss"] == h_straight["train_loss"]
    assert h_resumed["val_accuracy"] == h_straight["val_accuracy"]
    assert h_resumed["epoch"] == [1, 2, 3, 4]


def test_best_and_last_checkpoints_are_written_and_loadable() -> None:
    run = track.start("perceptron", experiment="ckpt")
    model = mlp()
    Trainer(epochs=3, lr=0.02, batch_size=64, progress=False).fit(model, MOONS)
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(run.checkpoints_dir / name)
        assert set(state["model"]) == set(model.state_dict())
    assert load_checkpoint(run.checkpoints_dir / "last.pt")["epoch"] == 3
    kinds = [e["kind"] for e in track.load_events(run.dir) if e["event"] == "on_checkpoint"]
    assert "best" in kinds and kinds[-1] == "last"
    assert not [
        p for p in run.checkpoints_dir.iterdir() if p.suffix == ".tmp" or p.name.startswith(".")
    ]


def test_corrupt_checkpoint_names_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"last\.pt.*corrupt.*Delete it"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Trainer(epochs=1, resume=tmp_path / "missing.pt", progress=False).fit(mlp(), MOONS)


def test_checkpoint_of_another_model_is_refused_clearly(tmp_path: Path) -> None:
    Trainer(epochs=1, checkpoint_dir=tmp_path, progress=False).fit(mlp(hidden=16), MOONS)
    with pytest.raises(CheckpointError, match="does not fit Sequential"):
        Trainer(epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False).fit(
            mlp(hidden=8), MOONS
        )
    assert (tmp_path / "last.pt").exists(), "a refused resume must not destroy the checkpoint"


def test_save_checkpoint_round_trip(tmp_path: Path) -> None:
    model = mlp()
    save_checkpoint(tmp_path / "x.pt", {"model": model.state_dict(), "epoch": 7})
    state = load_checkpoint(tmp_path / "x.pt")
    assert state["epoch"] == 7 and state["checkpoint_version"] == 1


class Custom(nn.Module):
    """A model with its own loop: a regression step and its own optimiser."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.calls = 0

    def forward(self, x):
        return x @ self.w

    def training_step(self, batch):
        self.calls += 1
        x, y = batch
        loss = ((self(x) - y.float()) ** 2).mean()
        return {"loss": loss, "norm": self.w.detach().norm()}

    def validation_step(self, batch):
        x, y = batch
        return {"loss": ((self(x) - y.float()) ** 2).mean()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_model_plugs_in_its_own_step_and_optimiser() -> None:
    model = Custom()
    h = Trainer(epochs=5, batch_size=64, progress=False, optimizer="no-such-thing").fit(
        model, MOONS
    )
    assert model.calls > 0 and h["train_loss"][-1] < h["train_loss"][0]
    assert "train_norm" in h and "val_loss" in h and "val_accuracy" not in h


def test_early_stopping_stops() -> None:
    run = track.start("perceptron", experiment="early")
    h = Trainer(epochs=50, lr=0.0, batch_size=64, patience=2, progress=False).fit(mlp(), MOONS)
    assert len(h["epoch"]) == 3  # best at epoch 1, then two epochs without improvement
    assert any(e["event"] == "on_early_stop" for e in track.load_events(run.dir))


def test_gradient_clipping_bounds_the_update() -> None:
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    Trainer(
        epochs=1,
        lr=1.0,
        optimizer="sgd",
        momentum=0.0,
        grad_clip=1e-3,
        batch_size=400,
        progress=False,
    ).fit(model, MOONS.subset(280, 10))
    step = torch.sqrt(
        sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
    )
    assert step <= 1e-3 + 1e-6  # one SGD step of a gradient clipped to norm 1e-3, lr 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"monitor": "val_f1"}, "monitor must be"),
        ({"device": "cuda:7" if not torch.cuda.is_available() else "tpu"}, "CUDA|unknown device"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match) -> None:
    with pytest.raises((ValueError, RuntimeError), match=match):
        Trainer(progress=False, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "adagrad-ish"}, "unknown optimizer"),
        ({"scheduler": "warp"}, "unknown scheduler"),
    ],
)
def test_unknown_optimizer_or_scheduler(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Trainer(epochs=1, progress=False, **kwargs).fit(mlp(), MOONS)


def test_nan_loss_is_reported_with_a_fix() -> None:
    bad = data.load("moons")
    bad.x_train[:] = float("nan")
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        Trainer(epochs=1, progress=False).fit(mlp(), bad)


def test_evaluate_logs_on_eval_to_the_active_run() -> None:
    run = track.start("perceptron", experiment="eval")
    model = mlp()
    Trainer(epochs=2, lr=0.02, progress=False).fit(model, MOONS)
    result = Trainer.evaluate(model, MOONS)
    assert set(result) == {"loss", "accuracy"} and 0 <= result["accuracy"] <= 1
    evals = [e for e in track.load_events(run.dir) if e["event"] == "on_eval"]
    assert evals and evals[-1]["accuracy"] == pytest.approx(result["accuracy"])


def test_trainer_accepts_plain_dataloaders() -> None:
    train, test = MOONS.loaders(batch_size=32)
    h = Trainer(epochs=2, lr=0.02, progress=False).fit(mlp(), (train, test))
    assert len(h["val_loss"]) == 2


def test_fit_epochs_logs_numpy_models_to_the_run() -> None:
    run = track.start("perceptron", experiment="numpy")
    h = fit_epochs(
        lambda e: {"mistakes": 5 - e}, epochs=10, progress=False, stop=lambda r: r["mistakes"] == 0
    )
    assert h["mistakes"] == [4, 3, 2, 1, 0]
    assert track.load_scalars(run.dir).mistakes.tolist() == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="epochs must be"):
        fit_epochs(lambda e: {}, epochs=0)
