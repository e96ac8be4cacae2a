"""The Trainer, second pass: exact resume by extending a finished run and after an interruption
with plain DataLoaders and a schedule, what a resume must refuse, checkpoint contents and write
failures, custom steps with their own schedule, clipping measured at the optimiser, evaluation
against a direct computation, and the facts the Trainer and ``fit_epochs`` leave in a run.

Complements test_core_trainer.py (loss falls on moons, seeds, resume after a mid-epoch
interruption with onecycle, corrupt/mismatched checkpoints, early stopping, argument errors).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import data, track
from scratchlib import utils as track_io
from scratchlib.train import CheckpointError, Trainer, fit_epochs, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MOONS = data.load("moons", n=320)
BATCHES = math.ceil(len(MOONS.x_train) / 32)  # training batches per epoch at batch_size=32


def mlp(hidden: int = 16, dropout: float = 0.3, layers: int = 1) -> nn.Module:
    torch.manual_seed(7)
    body: list[nn.Module] = [nn.Linear(2, hidden), nn.ReLU(), nn.Dropout(dropout)]
    for _ in range(layers - 1):
        body += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*body, nn.Linear(hidden, 2))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def comparable(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_time"}


class Interrupt(Exception):
    """Stands for a killed kernel."""


def die_after(batches: int):
    """An augment hook that raises once ``batches`` training batches have run."""
    seen = {"n": 0}

    def augment(x: torch.Tensor) -> torch.Tensor:
        seen["n"] += 1
        if seen["n"] > batches:
            raise Interrupt
        return x

    return augment


# --- learning and determinism --------------------------------------------------------------------


def test_loss_falls_on_blobs_with_sgd() -> None:
    blobs = data.load("blobs")
    h = Trainer(epochs=4, lr=0.1, optimizer="sgd", batch_size=32, progress=False).fit(
        mlp(dropout=0.0), blobs
    )
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_accuracy"][-1] >= 0.95
    assert sorted(h) == sorted(
        ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"]
    )


def test_determinism_with_plain_dataloaders_and_dropout() -> None:
    def train(trainer_seed: int, loader_seed: int):
        model = mlp()
        h = Trainer(epochs=2, lr=0.02, seed=trainer_seed, progress=False).fit(
            model, MOONS.loaders(batch_size=32, seed=loader_seed)
        )
        return model, comparable(h)

    (a, ha), (b, hb) = train(0, 0), train(0, 0)
    assert same_weights(a, b) and ha == hb
    assert not same_weights(a, train(1, 0)[0])  # other dropout masks
    assert not same_weights(a, train(0, 1)[0])  # other batch order


# --- exact resume ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bundle", "dataloaders"])
def test_two_epochs_then_resume_to_four_equals_four_straight(kind: str, tmp_path: Path) -> None:
    def source():
        return MOONS if kind == "bundle" else MOONS.loaders(batch_size=32, seed=3)

    kw = dict(lr=0.02, batch_size=32, progress=False, grad_clip=1.0)
    straight = mlp()
    t_straight = Trainer(epochs=4, checkpoint_dir=tmp_path / "a", **kw)
    h_straight = t_straight.fit(straight, source())

    first = track.start("perceptron", experiment="first-half")
    Trainer(epochs=2, **kw).fit(mlp(), source())
    last = first.checkpoints_dir / "last.pt"
    assert load_checkpoint(last)["epoch"] == 2

    second = track.start("perceptron", experiment="second-half")
    resumed = mlp(hidden=16)
    resumed.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    t_resumed = Trainer(epochs=4, resume=last, **kw)
    h_resumed = t_resumed.fit(resumed, source())

    assert same_weights(straight, resumed)
    assert comparable(h_resumed) == comparable(h_straight)
    opt_a, opt_b = t_straight.optimizer.state_dict(), t_resumed.optimizer.state_dict()
    for pa, pb in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["step"], pb["step"])
    events = track.load_events(second.dir)
    assert [e["from_epoch"] for e in events if e["event"] == "on_resume"] == [2]
    assert track.load_scalars(second.dir).epoch.tolist() == [3, 4]


def test_interrupted_at_an_epoch_boundary_with_a_schedule_resumes_exactly(tmp_path: Path) -> None:
    kw = dict(
        epochs=4,
        lr=0.05,
        optimizer="sgd",
        momentum=0.9,
        scheduler="cosine",
        batch_size=32,
        progress=False,
    )
    straight = mlp()
    h_straight = Trainer(checkpoint_dir=tmp_path / "a", **kw).fit(
        straight, MOONS.loaders(batch_size=32, seed=9)
    )
    with pytest.raises(Interrupt):  # killed on the first batch of epoch 3
        Trainer(checkpoint_dir=tmp_path / "b", augment=die_after(2 * BATCHES), **kw).fit(
            mlp(), MOONS.loaders(batch_size=32, seed=9)
        )
    resumed = mlp()
    h_resumed = Trainer(checkpoint_dir=tmp_path / "b", resume=True, **kw).fit(
        resumed, MOONS.loaders(batch_size=32, seed=9)
    )
    assert same_weights(straight, resumed)
    assert comparable(h_resumed) == comparable(h_straight)
    assert h_resumed["lr"][0] == 0.05 and h_resumed["lr"][-1] < h_resumed["lr"][1]


def test_resuming_with_another_schedule_length_is_refused(tmp_path: Path) -> None:
    """A 2-epoch cosine schedule resumed as a 4-epoch run would silently re-warm the learning
    rate (cosine) or crash inside torch (onecycle): the Trainer must say what to do instead."""
    Trainer(epochs=2, scheduler="cosine", checkpoint_dir=tmp_path, progress=False).fit(mlp(), MOONS)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"last\.pt.*epochs"):
        Trainer(
            epochs=4, scheduler="cosine", checkpoint_dir=tmp_path, resume=True, progress=False
        ).fit(mlp(), MOONS)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resuming_with_another_optimizer_is_refused(tmp_path: Path) -> None:
    Trainer(epochs=1, optimizer="adam", checkpoint_dir=tmp_path, progress=False).fit(mlp(), MOONS)
    with pytest.raises(CheckpointError, match=r"(?i)last\.pt.*optimi[sz]er"):
        Trainer(
            epochs=2, optimizer="sgd", checkpoint_dir=tmp_path, resume=True, progress=False
        ).fit(mlp(), MOONS)


def test_resume_true_without_a_place_to_look_says_how(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="resume='path/to/last.pt'"):
        Trainer(epochs=1, resume=True, progress=False).fit(mlp(), MOONS)


# --- checkpoints -----------------------------------------------------------------------------------


def test_best_holds_the_best_epoch_and_last_the_final_weights() -> None:
    run = track.start("perceptron", experiment="ckpt")
    model = mlp()
    h = Trainer(epochs=4, lr=0.03, batch_size=32, monitor="val_accuracy", progress=False).fit(
        model, MOONS
    )
    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    best = load_checkpoint(run.checkpoints_dir / "best.pt")
    assert last["epoch"] == 4 and all(
        torch.equal(last["model"][k], v) for k, v in model.state_dict().items()
    )
    best_epoch = h["epoch"][max(range(4), key=lambda i: (h["val_accuracy"][i], -i))]
    assert best["epoch"] == best_epoch and best["best"] == max(h["val_accuracy"])
    assert (
        best["monitor"] == "val_accuracy" and last["history"]["val_accuracy"] == h["val_accuracy"]
    )
    events = [e for e in track.load_events(run.dir) if e["event"] == "on_checkpoint"]
    assert events[-1]["kind"] == "last" and events[-1]["path"] == "checkpoints/last.pt"
    assert {e["epoch"] for e in events if e["kind"] == "best"} >= {best_epoch}
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.pt", "last.pt"]


def test_a_failed_checkpoint_write_keeps_the_previous_file_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = track_io.os.replace
    writes = {"last": 0}

    def replace(src, dst):
        if str(dst).endswith("last.pt"):
            writes["last"] += 1
            if writes["last"] == 2:
                raise OSError("No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(track_io.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        Trainer(epochs=3, checkpoint_dir=tmp_path, progress=False).fit(mlp(), MOONS)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] in (1, 3)  # never half a file
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]


def test_a_truncated_checkpoint_on_resume_names_the_file_and_the_fix(tmp_path: Path) -> None:
    Trainer(epochs=1, checkpoint_dir=tmp_path, progress=False).fit(mlp(), MOONS)
    last = tmp_path / "last.pt"
    cut = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(cut)
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(last))}.*corrupt.*Delete it.*best\.pt"
    ):
        Trainer(epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False).fit(mlp(), MOONS)
    assert last.read_bytes() == cut  # a refused resume changes nothing


def test_a_bare_state_dict_is_not_taken_for_a_checkpoint(tmp_path: Path) -> None:
    torch.save(mlp().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="not a scratchlib checkpoint.*bare state_dict"):
        Trainer(epochs=2, resume=tmp_path / "weights.pt", progress=False).fit(mlp(), MOONS)


def test_a_checkpoint_of_another_model_names_the_file(tmp_path: Path) -> None:
    Trainer(epochs=1, checkpoint_dir=tmp_path, progress=False).fit(mlp(layers=1), MOONS)
    with pytest.raises(CheckpointError) as err:
        Trainer(epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False).fit(
            mlp(layers=2), MOONS
        )
    msg = str(err.value)
    assert "does not fit Sequential" in msg and "same model configuration" in msg
    assert str(tmp_path / "last.pt") in msg  # resume=True: the message must still name the file


# --- models with their own loop ----------------------------------------------------------------------


class OwnLoop(nn.Module):
    """Logistic regression with its own steps, optimiser and per-batch schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.b = nn.Parameter(torch.zeros(()))
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b

    def training_step(self, batch) -> torch.Tensor:  # a bare loss tensor is enough
        self.steps += 1
        x, y = batch
        return F.binary_cross_entropy_with_logits(self(x), y.float())

    def validation_step(self, batch) -> dict:
        x, y = batch
        z = self(x)
        return {
            "loss": F.binary_cross_entropy_with_logits(z, y.float()),
            "correct": ((z > 0).long() == y).sum(),
            "count": y.numel(),
        }

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.4)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=BATCHES, gamma=0.5)


def test_own_steps_optimizer_and_schedule_plug_in() -> None:
    model = OwnLoop()
    h = Trainer(epochs=3, batch_size=32, lr=123.0, progress=False).fit(model, MOONS)
    assert model.steps == 3 * BATCHES
    assert h["lr"] == pytest.approx([0.4, 0.2, 0.1])  # its own optimiser and schedule, per batch
    assert h["train_loss"][-1] < h["train_loss"][0] and h["val_accuracy"][-1] > 0.75
    assert "train_accuracy" not in h  # a custom step reports only what it returns


# --- clipping, early stopping, arguments ------------------------------------------------------------


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
    Trainer(
        epochs=2,
        batch_size=32,
        grad_clip=0.05,
        optimizer=_norm_recording_sgd(clipped),
        progress=False,
    ).fit(mlp(), MOONS)
    Trainer(epochs=2, batch_size=32, optimizer=_norm_recording_sgd(free), progress=False).fit(
        mlp(), MOONS
    )
    assert len(clipped) == len(free) == 2 * BATCHES
    assert max(free) > 0.05  # the bound would bind
    assert max(clipped) <= 0.05 * (1 + 1e-5)


def test_early_stopping_on_accuracy_stops_after_patience() -> None:
    run = track.start("perceptron", experiment="patience")
    h = Trainer(
        epochs=30, lr=0.0, batch_size=64, patience=3, monitor="val_accuracy", progress=False
    ).fit(mlp(), MOONS)
    assert h["epoch"] == [1, 2, 3, 4]  # nothing improves after epoch 1
    events = track.load_events(run.dir)
    stop = [e for e in events if e["event"] == "on_early_stop"]
    assert stop and stop[0]["epoch"] == 4 and stop[0]["monitor"] == "val_accuracy"
    end = [e for e in events if e["event"] == "on_train_end"]
    assert end[0]["epochs"] == 4 and end[0]["best"] == h["val_accuracy"][0]
    assert load_checkpoint(run.checkpoints_dir / "last.pt")["epoch"] == 4


def test_cuda_asked_for_without_a_gpu_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU.*DEVICE='auto'"):
        Trainer(device="cuda", progress=False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Trainer(device="tpu", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -3}, "epochs must be >= 1"),
        ({"monitor": "accuracy"}, "'val_loss', 'val_accuracy' or 'train_loss'"),
        ({"optimizer": 42}, "unknown optimizer 42"),
        ({"scheduler": "step"}, "unknown scheduler 'step'"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_them(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Trainer(progress=False, **{"epochs": 1, **kwargs}).fit(mlp(), MOONS)


# --- evaluation and the facts in a run -----------------------------------------------------------------


def test_evaluate_equals_a_direct_computation_and_logs_to_the_given_run() -> None:
    active = track.start("perceptron", experiment="active")
    other = track.start("perceptron", experiment="other")
    active_again = track.start("perceptron", experiment="active-again")
    model = mlp()
    model.train()
    result = Trainer.evaluate(model, MOONS.test, run=other, split="val")
    assert model.training  # evaluation leaves the model as it found it
    with torch.no_grad():
        model.eval()
        logits = model(torch.as_tensor(MOONS.x_test))
    y = torch.as_tensor(MOONS.y_test)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    logged = [e for e in track.load_events(other.dir) if e["event"] == "on_eval"]
    assert logged[0]["split"] == "val" and logged[0]["accuracy"] == result["accuracy"]
    assert not [e for e in track.load_events(active_again.dir) if e["event"] == "on_eval"]
    assert active.status == "superseded"
    loader_result = Trainer.evaluate(model, MOONS.loaders(batch_size=40)[1])
    assert loader_result["accuracy"] == pytest.approx(result["accuracy"])
    assert [e["event"] for e in track.load_events(active_again.dir)][-1] == "on_eval"


def test_the_trainer_writes_one_row_per_epoch_into_the_active_run() -> None:
    run = track.start("perceptron", experiment="rows", data=MOONS)
    h = Trainer(epochs=3, lr=0.02, batch_size=32, progress=False).fit(mlp(), MOONS)
    scalars = track.load_scalars(run.dir)
    assert scalars.epoch.tolist() == [1, 2, 3]
    assert scalars.train_loss.tolist() == pytest.approx(h["train_loss"])
    assert scalars.val_accuracy.tolist() == pytest.approx(h["val_accuracy"])
    assert {"lr", "epoch_time", "train_accuracy", "val_loss"} <= set(scalars.columns)
    end = [e for e in track.load_events(run.dir) if e["event"] == "on_train_end"]
    assert len(end) == 1 and end[0]["epochs"] == 3 and end[0]["monitor"] == "val_loss"


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
