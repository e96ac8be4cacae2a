"""The Trainer (docs/seams.md, section 3): learning and determinism, Lightning's optimizer forms,
manual optimisation, callbacks (EMA, sample grids, early stopping, checkpoints), logging from a
step, iteration-based training and accumulation, compile, exact resume (between and inside epochs)
and what a resume must refuse, safe checkpoint loading, non-finite losses, argument checks, and
evaluation, testing and prediction."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import data, track, utils
from scratchlib.train import (
    EMA,
    Callback,
    CheckpointError,
    Module,
    NonFiniteLossError,
    SampleGrid,
    TensorLoader,
    Trainer,
    fit_epochs,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from scratchlib.train.parts import Sums

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOONS = data.load("moons", n=320)
BATCHES = math.ceil(len(MOONS.x_train) / 32)  # training batches per epoch at batch_size=32


def mlp(hidden: int = 16, dropout: float = 0.3, layers: int = 1) -> nn.Module:
    torch.manual_seed(7)
    body: list[nn.Module] = [nn.Linear(2, hidden), nn.ReLU(), nn.Dropout(dropout)]
    for _ in range(layers - 1):
        body += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*body, nn.Linear(hidden, 2))


def same_weights(a: nn.Module | dict, b: nn.Module | dict, atol: float = 0.0) -> bool:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.allclose(sa[k], sb[k], atol=atol, rtol=0) for k in sa
    )


def comparable(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "time"}


def loaders(seed: int = 3, batch: int = 32) -> tuple[torch.utils.data.DataLoader, ...]:
    """Plain torch DataLoaders (not the library's own loaders)."""
    g = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(MOONS.train, batch_size=batch, shuffle=True, generator=g)
    return train, torch.utils.data.DataLoader(MOONS.val, batch_size=64)


def quiet(**kw) -> Trainer:
    return Trainer(progress=False, **kw)


class Interrupt(Exception):
    """Stands for a killed kernel."""


def die_after(batches: int):
    """An augment hook (it sees every training batch) that raises after ``batches`` batches."""
    seen = {"n": 0}

    def augment(batch):
        seen["n"] += 1
        if seen["n"] > batches:
            raise Interrupt
        return batch

    return augment


# --- learning and determinism ----------------------------------------------------------------------


def test_loss_falls_and_the_history_has_one_row_per_epoch() -> None:
    blobs = data.load("blobs")
    h = quiet(epochs=4, lr=0.1, optimizer="sgd", batch_size=32).fit(mlp(dropout=0.0), blobs)
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_accuracy"][-1] >= 0.95
    per_epoch = math.ceil(len(blobs.x_train) / 32)
    assert h["epoch"] == [1, 2, 3, 4] and h["step"] == [per_epoch * e for e in (1, 2, 3, 4)]
    assert set(h) == {
        "epoch",
        "step",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "time",
    }


def test_same_seed_same_run_other_seed_other_run() -> None:
    def train(trainer_seed: int, loader_seed: int):
        model = mlp()
        h = quiet(epochs=2, lr=0.02, seed=trainer_seed).fit(model, loaders(loader_seed))
        return model, comparable(h)

    (a, ha), (b, hb) = train(0, 0), train(0, 0)
    assert same_weights(a, b) and ha == hb
    assert not same_weights(a, train(1, 0)[0])  # other dropout masks
    assert not same_weights(a, train(0, 1)[0])  # other batch order


def test_the_validation_split_is_used_during_fit_and_the_test_split_only_by_test() -> None:
    class Spy(data.DataModule):
        def __init__(self) -> None:
            self.asked: list[str] = []

        def train_loader(self, batch_size=None, **kw):
            self.asked.append("train")
            return MOONS.train_loader(batch_size, **kw)

        def val_loader(self, batch_size=None, **kw):
            self.asked.append("val")
            return MOONS.val_loader(batch_size, **kw)

        def test_loader(self, batch_size=None, **kw):
            self.asked.append("test")
            return MOONS.test_loader(batch_size, **kw)

        def facts(self):
            return MOONS.facts()

    spy, model = Spy(), mlp()
    t = quiet(epochs=2, lr=0.02, batch_size=32)
    t.fit(model, spy)
    assert spy.asked == ["train", "val"]
    run = track.start("mlp", experiment="test-once")
    result = t.test(model, spy)
    assert spy.asked == ["train", "val", "test"]
    logged = [e for e in track.load_events(run.dir) if e["event"] == "on_eval"]
    assert logged[0]["split"] == "test" and logged[0]["accuracy"] == result["accuracy"]


# --- configure_optimizers: Lightning's forms -----------------------------------------------------------


class Logistic(nn.Module):
    """Logistic regression with its own steps; ``configure`` picks the optimizer form under test."""

    def __init__(self, configure) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.b = nn.Parameter(torch.zeros(()))
        self.configure, self.steps = configure, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:  # a bare loss is enough
        self.steps += 1
        x, y = batch
        return F.binary_cross_entropy_with_logits(self(x), y.float())

    def validation_step(self, batch, batch_idx: int) -> dict:
        x, y = batch
        z = self(x)
        loss = F.binary_cross_entropy_with_logits(z, y.float())
        return {"loss": loss, "correct": ((z > 0).long() == y).sum(), "count": y.numel()}

    def configure_optimizers(self):
        return self.configure(self)


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.4)


def _step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


@pytest.mark.parametrize(
    ("form", "lrs"),
    [
        (lambda m: _sgd(m), [0.4, 0.4, 0.4]),
        (lambda m: [_sgd(m)], [0.4, 0.4, 0.4]),
        (lambda m: ([o := _sgd(m)], [_step_lr(o)]), [0.4, 0.2, 0.1]),  # interval: epoch
        (lambda m: {"optimizer": (o := _sgd(m)), "lr_scheduler": _step_lr(o)}, [0.4, 0.2, 0.1]),
        (
            lambda m: {
                "optimizer": (o := _sgd(m)),
                "lr_scheduler": {
                    "scheduler": torch.optim.lr_scheduler.StepLR(o, BATCHES, 0.5),
                    "interval": "step",
                },
            },
            [0.4, 0.2, 0.1],
        ),
        (lambda m: [{"optimizer": _sgd(m)}], [0.4, 0.4, 0.4]),
    ],
    ids=["optimizer", "list", "lists", "dict", "dict-step-interval", "list-of-dicts"],
)
def test_every_lightning_return_form_trains(form, lrs) -> None:
    model = Logistic(form)
    h = quiet(epochs=3, batch_size=32, lr=123.0).fit(model, MOONS)  # lr: the model's own wins
    assert model.steps == 3 * BATCHES
    assert h["lr"] == pytest.approx(lrs)
    assert h["train_loss"][-1] < h["train_loss"][0] and h["val_accuracy"][-1] > 0.75
    assert "train_accuracy" not in h  # a custom step reports only what it returns


def test_a_manual_step_may_return_nothing() -> None:
    class Quiet(TwoPlayers):
        def training_step(self, batch, batch_idx: int):
            super().training_step(batch, batch_idx)  # steps both optimizers, returns nothing

    h = quiet(epochs=1, batch_size=32).fit(Quiet(), MOONS)
    assert "train_loss" not in h and h["train_loss_b"][0] > 0 and h["val_loss"][0] > 0


def test_two_optimizers_without_manual_optimisation_are_refused() -> None:
    """Today's bug: the second optimizer was taken for a scheduler and stepped every batch."""
    model = Logistic(lambda m: [_sgd(m), torch.optim.Adam(m.parameters())])
    with pytest.raises(TypeError, match="automatic_optimization = False"):
        quiet(epochs=1).fit(model, MOONS)


@pytest.mark.parametrize(
    "bad",
    [
        lambda m: (o := _sgd(m), _step_lr(o)),  # (optimizer, scheduler): not a Lightning form
        lambda m: "sgd",
        lambda m: {"lr_scheduler": None},
        lambda m: ([_sgd(m)], ["not a scheduler"]),
    ],
)
def test_other_return_values_get_an_error_listing_the_forms(bad) -> None:
    with pytest.raises(TypeError, match="configure_optimizers\\(\\) may return"):
        quiet(epochs=1).fit(Logistic(bad), MOONS)


class TwoPlayers(Module):
    """A tiny GAN-like model: two optimizers stepped in turn by the model itself."""

    automatic_optimization = False

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
        self.calls = {"a": 0, "b": 0}

    def training_step(self, batch, batch_idx: int):
        opt_a, opt_b = self.optimizers()
        x, y = batch
        loss_a = F.cross_entropy(self.a(x), y)
        opt_a.zero_grad()
        self.manual_backward(loss_a)
        opt_a.step()
        self.calls["a"] += 1
        loss_b = F.cross_entropy(self.b(x), y)
        opt_b.zero_grad()
        self.manual_backward(loss_b)
        opt_b.step()
        self.calls["b"] += 1
        self.log("loss_b", loss_b)
        return {"loss": loss_a}

    def validation_step(self, batch, batch_idx: int):
        x, y = batch
        return {"loss": F.cross_entropy(self.a(x), y)}

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.a.parameters(), lr=0.3),
            torch.optim.Adam(self.b.parameters(), lr=0.05),
        ]


def test_manual_optimisation_steps_two_optimizers_and_checkpoints_both(tmp_path: Path) -> None:
    model = TwoPlayers()
    h = quiet(epochs=2, batch_size=32, checkpoint_dir=tmp_path).fit(model, MOONS)
    assert model.calls == {"a": 2 * BATCHES, "b": 2 * BATCHES}
    assert h["train_loss_b"][-1] < h["train_loss_b"][0] and h["train_loss"][-1] < h["train_loss"][0]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert [len(o["state"]) for o in ckpt["optimizers"]] == [0, 2]  # SGD without momentum; Adam
    assert ckpt["progress"]["step"] == 2 * BATCHES
    resumed = TwoPlayers()
    quiet(epochs=3, batch_size=32, checkpoint_dir=tmp_path, resume=True).fit(resumed, MOONS)
    straight = TwoPlayers()
    quiet(epochs=3, batch_size=32).fit(straight, MOONS)
    assert same_weights(resumed, straight)


# --- callbacks --------------------------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_fit_start(self, trainer, model):
        self.calls.append("fit_start")

    def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx):
        assert set(outputs) >= {"loss"} and batch_idx >= 0
        self.calls.append("batch")

    def on_validation_end(self, trainer, model, metrics):
        self.calls.append("val")

    def on_epoch_end(self, trainer, model, row):
        self.calls.append(f"epoch{row['epoch']}")

    def on_fit_end(self, trainer, model):
        self.calls.append("fit_end")

    def teardown(self, trainer):
        self.calls.append("teardown")


def test_callbacks_are_called_at_their_points_and_torn_down_after_an_error() -> None:
    rec = Recorder()
    quiet(epochs=2, batch_size=32, callbacks=[rec], eval_every=2).fit(mlp(), MOONS)
    batches = ["batch"] * BATCHES
    assert rec.calls == [
        "fit_start",
        *batches,
        "epoch1",
        *batches,
        "val",
        "epoch2",
        "teardown",
        "fit_end",
    ]
    failing = Recorder()
    with pytest.raises(Interrupt):
        quiet(epochs=2, batch_size=32, callbacks=[failing], augment=die_after(3)).fit(mlp(), MOONS)
    assert failing.calls[-1] == "teardown" and "fit_end" not in failing.calls


def test_ema_averages_every_step_evaluates_with_the_average_and_is_checkpointed(
    tmp_path: Path,
) -> None:
    decay, seen = 0.8, []

    class Watch(Callback):  # records the live weights after every optimizer step
        def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx):
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    ema, model = EMA(decay), mlp(dropout=0.0)
    trainer = quiet(
        epochs=2, batch_size=32, lr=0.05, callbacks=[Watch(), ema], checkpoint_dir=tmp_path
    )
    h = trainer.fit(model, MOONS)
    expected = dict(seen[0])  # the first update copies the weights, then θ̄ ← d·θ̄ + (1 − d)·θ
    for state in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * state[k] for k in expected}
    assert same_weights(ema.module, expected, atol=1e-6)
    assert not same_weights(ema.module, model, atol=1e-4)
    assert trainer.evaluate(model, MOONS)["loss"] == pytest.approx(h["val_loss"][-1])
    plain = quiet(batch_size=32).evaluate(model, MOONS)["loss"]
    assert plain != pytest.approx(
        h["val_loss"][-1]
    )  # validation used the average, not the live weights
    averaged = load_weights(mlp(dropout=0.0), tmp_path / "last.pt")
    live = load_weights(mlp(dropout=0.0), tmp_path / "last.pt", ema=False)
    assert same_weights(averaged, ema.module) and same_weights(live, model)


def test_ema_resumes_exactly(tmp_path: Path) -> None:
    straight_ema, straight = EMA(0.9), mlp()
    quiet(epochs=3, batch_size=32, callbacks=[straight_ema]).fit(straight, MOONS)
    quiet(epochs=2, batch_size=32, callbacks=[EMA(0.9)], checkpoint_dir=tmp_path).fit(mlp(), MOONS)
    resumed_ema, resumed = EMA(0.9), mlp()
    quiet(
        epochs=3, batch_size=32, callbacks=[resumed_ema], checkpoint_dir=tmp_path, resume=True
    ).fit(resumed, MOONS)
    assert same_weights(resumed, straight) and same_weights(resumed_ema.module, straight_ema.module)


class Sampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Linear(2, 2)

    def forward(self, x):
        return self.net(x)

    def sample(self, n: int) -> torch.Tensor:
        return torch.sigmoid(torch.randn(n, 1, 4, 4))  # noise from the (forked, seeded) RNG


def test_sample_grids_are_saved_from_fixed_noise_without_touching_training() -> None:
    run = track.start("mlp", experiment="grids")
    grid, with_grid = SampleGrid(n=4, every_n_epochs=1, seed=5), Sampler()
    quiet(epochs=2, batch_size=32, callbacks=[grid]).fit(with_grid, MOONS)
    figures = sorted(p.name for p in run.figures_dir.iterdir())
    assert figures == [f"samples-{BATCHES:07d}.png", f"samples-{2 * BATCHES:07d}.png"]
    (_, first), (_, second) = grid.grids
    assert torch.equal(first, second)  # the same seed: grids compare across training
    without = Sampler()
    quiet(epochs=2, batch_size=32).fit(without, MOONS)
    assert same_weights(with_grid, without)  # drawing samples did not move training's RNG
    with pytest.raises(TypeError, match="sample"):
        quiet(epochs=1, callbacks=[SampleGrid()]).fit(mlp(), MOONS)


def test_early_stopping_stops_after_patience_and_says_so() -> None:
    run = track.start("mlp", experiment="patience")
    h = quiet(epochs=30, lr=1e-9, batch_size=64, patience=3, monitor="val_accuracy").fit(
        mlp(dropout=0), MOONS
    )
    assert h["epoch"] == [1, 2, 3, 4]  # nothing improves after epoch 1
    stop = [e for e in track.load_events(run.dir) if e["event"] == "on_early_stop"]
    assert stop and stop[0]["epoch"] == 4 and stop[0]["monitor"] == "val_accuracy"
    assert load_checkpoint(run.checkpoints_dir / "last.pt")["progress"]["epoch"] == 4


# --- logging from a step, facts, hyper-parameters -----------------------------------------------------------


class Logging(Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        self.log("margin", (logits.max(1).values - logits.min(1).values).mean())
        return F.cross_entropy(logits, y)


def test_a_step_logs_scalars_per_epoch_and_per_step() -> None:
    run = track.start("mlp", experiment="logging", data=MOONS)
    h = quiet(epochs=2, batch_size=32, log_every_n_steps=2).fit(Logging(), MOONS)
    scalars = track.load_scalars(run.dir)
    assert scalars.epoch.tolist() == [1, 2]
    assert scalars.train_margin.tolist() == pytest.approx(h["train_margin"])
    steps = track.load_steps(run.dir)
    assert steps.step.tolist() == list(range(2, 2 * BATCHES + 1, 2))
    assert {"loss", "margin", "epoch"} <= set(steps.columns)
    config = json.loads((run.dir / "config.json").read_text())
    assert config["trainer"]["batch_size"] == 32 and config["trainer"]["log_every_n_steps"] == 2


# --- iteration-based training, accumulation, compile -----------------------------------------------------


def test_max_steps_validates_every_n_steps_and_plans_the_schedule_over_them() -> None:
    t = quiet(max_steps=25, val_every_n_steps=10, lr=0.05, scheduler="onecycle", batch_size=32)
    h = t.fit(mlp(), MOONS)
    assert h["step"] == [10, 20, 25] and len(h["val_loss"]) == 3
    assert h["epoch"][-1] == math.ceil(25 / BATCHES)
    assert t.optimizers[0].param_groups[0]["lr"] < 1e-5  # one-cycle's end, exactly at step 25


def test_gradient_accumulation_equals_the_large_batch() -> None:
    x, y = torch.as_tensor(MOONS.x_train[:192]), torch.as_tensor(MOONS.y_train[:192])
    big, small = mlp(dropout=0.0), mlp(dropout=0.0)
    sgd = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731
    quiet(epochs=2, optimizer=sgd).fit(big, TensorLoader(x, y, 32, seed=1))
    t = quiet(epochs=2, optimizer=sgd, accumulate=2)
    t.fit(small, TensorLoader(x, y, 16, seed=1))  # the same permutation, in halves
    assert t.global_step == 2 * 6 and same_weights(big, small, atol=1e-6)


def test_compile_compiles_the_forward_a_custom_step_calls() -> None:
    from torch._dynamo.utils import counters

    run = track.start("mlp", experiment="compile")
    counters.clear()
    model = Logging()
    quiet(epochs=1, batch_size=64, compile={"backend": "eager"}).fit(model, MOONS)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo traced the model's forward
    events = [e for e in track.load_events(run.dir) if e["event"] == "on_compile"]
    assert events and events[0]["compiled"] == "Logging.forward"


# --- exact resume -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["datamodule", "dataloaders"])
def test_two_epochs_then_resume_to_four_equals_four_straight(kind: str, tmp_path: Path) -> None:
    def source():
        return MOONS if kind == "datamodule" else loaders()

    kw = dict(lr=0.02, batch_size=32, grad_clip=1.0)
    straight = mlp()
    t_straight = quiet(epochs=4, checkpoint_dir=tmp_path / "a", **kw)
    h_straight = t_straight.fit(straight, source())
    first = track.start("mlp", experiment="first-half")
    quiet(epochs=2, **kw).fit(mlp(), source())
    last = first.checkpoints_dir / "last.pt"
    assert load_checkpoint(last)["progress"] == {"epoch": 2, "step": 2 * BATCHES, "in_epoch": False}
    second = track.start("mlp", experiment="second-half")
    resumed = mlp()
    resumed.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    t_resumed = quiet(epochs=4, resume=last, **kw)
    h_resumed = t_resumed.fit(resumed, source())
    assert same_weights(straight, resumed) and comparable(h_resumed) == comparable(h_straight)
    a, b = t_straight.optimizers[0].state_dict(), t_resumed.optimizers[0].state_dict()
    for pa, pb in zip(a["state"].values(), b["state"].values(), strict=True):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["step"], pb["step"])
    events = [e for e in track.load_events(second.dir) if e["event"] == "on_resume"]
    assert events[0]["epoch"] == 2 and events[0]["changed"] == {}
    assert track.load_scalars(second.dir).epoch.tolist() == [3, 4]


def test_interrupted_inside_an_epoch_resumes_at_the_same_batch(tmp_path: Path) -> None:
    """Iteration-trained runs checkpoint between validations, in the middle of an epoch."""
    kw = dict(
        max_steps=30,
        val_every_n_steps=4,
        lr=0.05,
        optimizer="sgd",
        scheduler="cosine",
        batch_size=32,
    )
    straight = mlp()
    h_straight = quiet(**kw).fit(straight, MOONS)
    with pytest.raises(Interrupt):  # killed after 10 batches; the last checkpoint is at step 8
        quiet(checkpoint_dir=tmp_path, augment=die_after(10), **kw).fit(mlp(), MOONS)
    state = load_checkpoint(tmp_path / "last.pt")
    assert (
        state["progress"] == {"epoch": 2, "step": 8, "in_epoch": True}
        and state["loader"]["position"] == 1
    )
    resumed = mlp()
    h_resumed = quiet(checkpoint_dir=tmp_path, resume=True, **kw).fit(resumed, MOONS)
    assert same_weights(straight, resumed)
    assert comparable(h_resumed) == comparable(h_straight)


def test_interrupted_at_an_epoch_boundary_with_a_schedule_resumes_exactly(tmp_path: Path) -> None:
    kw = dict(epochs=4, lr=0.05, optimizer="sgd", scheduler="cosine", batch_size=32)
    straight = mlp()
    h_straight = quiet(**kw).fit(straight, loaders(9))
    with pytest.raises(Interrupt):  # killed on the first batch of epoch 3
        quiet(checkpoint_dir=tmp_path, augment=die_after(2 * BATCHES), **kw).fit(mlp(), loaders(9))
    resumed = mlp()
    h_resumed = quiet(checkpoint_dir=tmp_path, resume=True, **kw).fit(resumed, loaders(9))
    assert same_weights(straight, resumed) and comparable(h_resumed) == comparable(h_straight)


class Twin(nn.Sequential):
    """The same layers as mlp(): a state dict that fits, from another class."""


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        (dict(model=lambda: Twin(*mlp())), "model.class"),
        (dict(data=data.load("moons", n=400)), "data.n_train"),
        (dict(data=data.load("circles", n=320)), "data.dataset"),
        (dict(batch_size=16), "batch_size"),
        (dict(optimizer="sgd"), "optimizers"),
        (dict(epochs=4), "schedule.length"),
        (dict(accumulate=2), "accumulate"),
    ],
    ids=[
        "model-class",
        "data-size",
        "dataset",
        "batch-size",
        "optimizer",
        "schedule",
        "accumulate",
    ],
)
def test_a_resume_that_would_change_the_run_is_refused_naming_what_differs(
    tmp_path: Path, change: dict, differs: str
) -> None:
    base = dict(epochs=2, batch_size=32, optimizer="adam", scheduler="cosine")
    quiet(checkpoint_dir=tmp_path, **base).fit(mlp(), MOONS)
    before = (tmp_path / "last.pt").read_bytes()
    model = change.pop("model", mlp)()
    source = change.pop("data", MOONS)
    with pytest.raises(
        CheckpointError,
        match=rf"last\.pt cannot continue this run; what differs: .*{re.escape(differs)}",
    ):
        quiet(checkpoint_dir=tmp_path, resume=True, **{**base, "epochs": 3, **change}).fit(
            model, source
        )
    assert (tmp_path / "last.pt").read_bytes() == before  # a refused resume writes nothing


def test_a_registered_model_with_other_hyper_parameters_is_refused(tmp_path: Path) -> None:
    from scratchlib.models.resnet import CifarResNet

    tiny = data.load("cifar10", smoke=True).subset(64, 32, n_val=16)
    quiet(epochs=1, batch_size=32, checkpoint_dir=tmp_path).fit(CifarResNet(8, plain=False), tiny)
    with pytest.raises(CheckpointError, match=r"model\.hparams.*plain"):  # same weights' shapes
        quiet(epochs=2, batch_size=32, checkpoint_dir=tmp_path, resume=True).fit(
            CifarResNet(8, plain=True), tiny
        )


def test_more_epochs_and_a_new_learning_rate_take_effect_on_resume(tmp_path: Path) -> None:
    run = track.start("mlp", experiment="longer")
    quiet(epochs=2, batch_size=32, lr=0.01, optimizer="sgd").fit(mlp(), MOONS)
    t = quiet(epochs=4, batch_size=32, lr=0.03, optimizer="sgd", resume=True)
    h = t.fit(mlp(), MOONS)
    assert h["epoch"] == [1, 2, 3, 4] and h["lr"] == pytest.approx([0.01, 0.01, 0.03, 0.03])
    resumed = [e for e in track.load_events(run.dir) if e["event"] == "on_resume"]
    assert resumed[0]["changed"] == {"lr": [0.01, 0.03]}
    with pytest.raises(CheckpointError, match="already trained 4 epochs; ask for more than 3"):
        quiet(epochs=3, batch_size=32, lr=0.03, optimizer="sgd", resume=True).fit(mlp(), MOONS)


def test_resume_true_without_a_place_to_look_says_how() -> None:
    with pytest.raises(CheckpointError, match="resume='path/to/last.pt'"):
        quiet(epochs=1, resume=True).fit(mlp(), MOONS)


# --- checkpoints: contents, safety, damage ---------------------------------------------------------------


def test_best_holds_the_best_row_and_last_the_final_weights() -> None:
    run = track.start("mlp", experiment="ckpt")
    model = mlp()
    h = quiet(epochs=4, lr=0.03, batch_size=32, monitor="val_accuracy").fit(model, MOONS)
    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    best = load_checkpoint(run.checkpoints_dir / "best.pt")
    assert last["progress"]["epoch"] == 4 and same_weights(last["model"], model)
    best_epoch = h["epoch"][max(range(4), key=lambda i: (h["val_accuracy"][i], -i))]
    assert best["progress"]["epoch"] == best_epoch
    assert best["callbacks"]["Checkpoint"]["best"] == max(h["val_accuracy"])
    events = [e for e in track.load_events(run.dir) if e["event"] == "on_checkpoint"]
    assert events[-1]["kind"] == "last" and events[-1]["path"] == "checkpoints/last.pt"
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.pt", "last.pt"]


class Exploit:
    """A pickle that runs code when loaded unsafely: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_never_runs_code(tmp_path: Path) -> None:
    marker, bad = tmp_path / "pwned", tmp_path / "last.pt"
    torch.save({"model": Exploit(marker), "signature": {}}, bad)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"model": Exploit(marker)}, f)
    attempts = [
        lambda: load_checkpoint(bad),
        lambda: load_weights(mlp(), bad),
        lambda: quiet(epochs=2, resume=bad).fit(mlp(), MOONS),
        lambda: quiet(epochs=2, checkpoint_dir=tmp_path, resume=True).fit(mlp(), MOONS),
        lambda: load_checkpoint(tmp_path / "plain.pkl"),
    ]
    for attempt in attempts:
        with pytest.raises(CheckpointError, match="refused to load|corrupt"):
            attempt()
    assert not marker.exists()


def test_save_checkpoint_of_a_model_loads_into_a_model_but_does_not_resume(tmp_path: Path) -> None:
    model = mlp()
    save_checkpoint(tmp_path / "weights.pt", model)
    assert same_weights(load_weights(mlp(hidden=16), tmp_path / "weights.pt"), model)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    assert same_weights(load_weights(mlp(), tmp_path / "bare.pt"), model)
    with pytest.raises(CheckpointError, match="weights only.*load_weights"):
        quiet(epochs=2, resume=tmp_path / "weights.pt").fit(mlp(), MOONS)


def test_a_failed_checkpoint_write_keeps_the_previous_file_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace, writes = utils.os.replace, {"last": 0}

    def replace(src, dst):
        if str(dst).endswith("last.pt"):
            writes["last"] += 1
            if writes["last"] == 2:
                raise OSError("No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(utils.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        quiet(epochs=3, checkpoint_dir=tmp_path).fit(mlp(), MOONS)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["epoch"] in (1, 3)  # never half a file
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]


def test_leftover_temporaries_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    quiet(epochs=1, checkpoint_dir=tmp_path).fit(mlp(), MOONS)
    assert not stale.exists() and (tmp_path / "last.pt").exists()


def test_a_truncated_checkpoint_on_resume_names_the_file_and_the_fix(tmp_path: Path) -> None:
    quiet(epochs=1, checkpoint_dir=tmp_path).fit(mlp(), MOONS)
    last = tmp_path / "last.pt"
    cut = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(cut)
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(last))}.*corrupt.*Delete it.*best\.pt"
    ):
        quiet(epochs=2, checkpoint_dir=tmp_path, resume=True).fit(mlp(), MOONS)
    assert last.read_bytes() == cut


def test_a_checkpoint_of_another_architecture_names_the_file(tmp_path: Path) -> None:
    quiet(epochs=1, checkpoint_dir=tmp_path).fit(mlp(layers=1), MOONS)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "last.pt"))):
        quiet(epochs=2, checkpoint_dir=tmp_path, resume=True).fit(mlp(layers=2), MOONS)


# --- non-finite losses -----------------------------------------------------------------------------------


class Explodes(nn.Module):
    """Returns a NaN loss at one chosen (epoch, batch)."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net, self.at, self.epoch = nn.Linear(2, 2), (epoch, batch), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int):
        self.epoch += batch_idx == 0
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        return loss * float("nan") if (self.epoch, batch_idx) == self.at else loss


@pytest.mark.parametrize("path", ["cpu-per-batch", "device-buffer"])
def test_a_nan_mid_epoch_stops_that_epoch_and_keeps_the_last_finite_checkpoint(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "device-buffer":  # the GPU path: no per-batch check, the period's buffer is read
        monkeypatch.setattr(Trainer, "_cpu_finite", lambda self, loss, i: None)
    run = track.start("mlp", experiment="nan")
    model = Explodes(epoch=2, batch=3)
    with pytest.raises(NonFiniteLossError, match=r"batch 3 of epoch 2.*lower the learning rate"):
        quiet(epochs=3, batch_size=32).fit(model, MOONS)
    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    assert last["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert run.status == "failed"
    assert track.load_runs(run.dir).status.tolist() == ["failed"]


def test_weights_that_diverge_after_a_finite_loss_stop_the_run(tmp_path: Path) -> None:
    """lr=1e30: every training loss is finite (computed before its update), the weights are not."""
    with pytest.raises(NonFiniteLossError, match=r"validation loss became NaN/inf during epoch 1"):
        quiet(
            epochs=1,
            lr=1e30,
            optimizer="sgd",
            momentum=0.0,
            batch_size=1000,
            checkpoint_dir=tmp_path,
        ).fit(mlp(), MOONS)
    assert not (tmp_path / "last.pt").exists()  # nothing non-finite was written


def test_sums_name_the_first_non_finite_batch() -> None:
    sums = Sums(torch.device("cpu"))
    for i, v in enumerate([1.0, 2.0, float("inf"), float("nan")]):
        sums.add({"loss": torch.tensor(v)}, (5, i, 100 + i))
    assert sums.first_nonfinite() == (5, 2, 102)


# --- clipping ----------------------------------------------------------------------------------------------


def _norm_recording_sgd(norms: list[float]):
    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
            return super().step(closure)

    return lambda params: Recording(params, lr=0.5)


def test_grad_clip_bounds_the_norm_the_optimizer_sees() -> None:
    clipped: list[float] = []
    free: list[float] = []
    quiet(epochs=2, batch_size=32, grad_clip=0.05, optimizer=_norm_recording_sgd(clipped)).fit(
        mlp(), MOONS
    )
    quiet(epochs=2, batch_size=32, optimizer=_norm_recording_sgd(free)).fit(mlp(), MOONS)
    assert len(clipped) == len(free) == 2 * BATCHES
    assert max(free) > 0.05  # the bound would bind
    assert max(clipped) <= 0.05 * (1 + 1e-5)


# --- arguments, devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -3}, "epochs must be an integer >= 1"),
        ({"epochs": 2.0}, "epochs must be an integer >= 1, got 2.0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"accumulate": 0}, "accumulate must be an integer >= 1"),
        ({"grad_clip": -1}, "grad_clip must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive finite number"),
        ({"monitor": "accuracy"}, "'val_loss', 'val_accuracy' or 'train_loss'"),
        ({"optimizer": 42}, "unknown optimizer 42"),
        ({"scheduler": "step"}, "unknown scheduler 'step'"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_them(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quiet(**{"epochs": 1, **kwargs}).fit(mlp(), MOONS)


def test_cuda_asked_for_without_a_gpu_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU.*DEVICE='auto'"):
        Trainer(device="cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Trainer(device="tpu")


# --- evaluation, test, predict -----------------------------------------------------------------------------


def test_evaluate_and_predict_equal_a_direct_computation() -> None:
    model = mlp()
    model.train()
    t = quiet(batch_size=40)
    result = t.evaluate(model, MOONS, split="test")
    assert model.training  # evaluation leaves the model as it found it
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(MOONS.x_test))
    y = torch.as_tensor(MOONS.y_test)
    batches = [
        F.cross_entropy(logits[i : i + 40], y[i : i + 40]).item() for i in range(0, len(y), 40)
    ]
    assert result["loss"] == pytest.approx(sum(batches) / len(batches), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert torch.allclose(t.predict(model, MOONS), logits, atol=1e-6)
    loader = torch.utils.data.DataLoader(MOONS.test, batch_size=40)
    assert t.evaluate(model, loader)["accuracy"] == pytest.approx(result["accuracy"])


def test_the_trainer_writes_one_row_per_epoch_into_the_active_run() -> None:
    run = track.start("mlp", experiment="rows", data=MOONS)
    h = quiet(epochs=3, lr=0.02, batch_size=32).fit(mlp(), MOONS)
    scalars = track.load_scalars(run.dir)
    assert scalars.epoch.tolist() == [1, 2, 3]
    assert scalars.train_loss.tolist() == pytest.approx(h["train_loss"])
    assert scalars.val_accuracy.tolist() == pytest.approx(h["val_accuracy"])
    end = [e for e in track.load_events(run.dir) if e["event"] == "on_train_end"]
    assert len(end) == 1 and end[0]["epochs"] == 3 and end[0]["steps"] == 3 * BATCHES


def test_each_fit_writes_into_the_run_active_when_it_starts() -> None:
    trainer = quiet(epochs=1, batch_size=64)
    first = track.start("mlp", experiment="first")
    trainer.fit(mlp(), MOONS)
    first.finish()
    second = track.start("mlp", experiment="second")
    trainer.fit(mlp(), MOONS)
    assert track.load_scalars(first.dir).epoch.tolist() == [1]
    assert track.load_scalars(second.dir).epoch.tolist() == [1]


# --- NumPy models share the tracking -------------------------------------------------------------------------


def test_fit_epochs_tracks_numpy_loops_where_asked() -> None:
    active = track.start("perceptron", experiment="active")
    h = fit_epochs(lambda e: {"mistakes": 3 - e}, epochs=3, run=False, progress=False)
    assert h == {"epoch": [1, 2, 3], "mistakes": [2, 1, 0]}
    assert track.load_scalars(active.dir).empty  # run=False: nothing recorded
    explicit = track.start("perceptron", experiment="explicit")
    fit_epochs(lambda e: {"mistakes": 3 - e}, epochs=5, progress=False)
    fit_epochs(
        lambda e: {"mistakes": 3 - e},
        epochs=5,
        run=explicit,
        progress=False,
        stop=lambda row: row["mistakes"] == 0,
    )
    ends = [e for e in track.load_events(explicit.dir) if e["event"] == "on_train_end"]
    assert [(e["epochs"], e["reason"]) for e in ends] == [(5, "epochs"), (3, "stop condition")]
    assert track.load_scalars(explicit.dir).mistakes.tolist() == [2, 1, 0, -1, -2, 2, 1, 0]
