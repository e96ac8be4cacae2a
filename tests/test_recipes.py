"""The shared CIFAR recipe (scratchlib/recipes.py): what it trains with, that normalisation is the
model's first layer, that the test split is touched once and only when asked, and that flip TTA is
reported beside — never instead of — the single-view accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from scratchlib import recipes, track
from scratchlib.data import DataBundle, cifar
from scratchlib.data.augment import RandomCropFlip
from scratchlib.nn import Normalized


def red_or_blue(n: int = 240, seed: int = 0) -> DataBundle:
    """3x8x8 noise images, class 1 with a redder, class 0 with a bluer square somewhere: crops
    and flips keep the label."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.5, size=(n, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(0, 5, 2)
        x[i, 0 if y[i] else 2, r : r + 4, c : c + 4] += 0.5
    return DataBundle(
        "toy", x[: n - 60], y[: n - 60], x[n - 60 :], y[n - 60 :], "synthetic", ["blue", "red"]
    ).split_val(n_val=40)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 2),
    )  # fmt: skip


def events(run: track.Run, name: str) -> list[dict]:
    lines = (run.facts_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_the_trainer_is_sgd_nesterov_with_a_one_cycle_schedule_and_crop_flip() -> None:
    r = recipes.CifarRecipe(epochs=3, lr=0.2, batch_size=32, weight_decay=1e-4, label_smoothing=0.1)
    t = r.trainer()
    assert (t.epochs, t.lr, t.batch_size, t.weight_decay) == (3, 0.2, 32, 1e-4)
    assert t.optimizer_spec == "sgd" and t.momentum == 0.9
    assert t.label_smoothing == 0.1
    assert isinstance(t.augment, RandomCropFlip) and t.augment.padding == 4 and t.augment.flip
    assert r.replace(augment=False).trainer().augment is None
    assert not t.channels_last and not t.amp  # CUDA-only settings are off on the CPU
    fitted = r.replace(epochs=1).fit(small_net, red_or_blue(), experiment="opt")
    opt = fitted.trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    sched = fitted.trainer.schedulers[0].scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    assert max(sched.get_last_lr() + [g["max_lr"] for g in opt.param_groups]) == pytest.approx(0.2)
    assert r.replace(scheduler=None).trainer().scheduler_spec is None  # a constant learning rate


def test_one_cycle_survives_runs_of_a_few_steps() -> None:
    ds = red_or_blue()  # 140 training images
    for batch in (32, 70, 140):  # 5, 2 and 1 steps
        fitted = recipes.CifarRecipe(epochs=1, batch_size=batch, progress=False).fit(
            small_net, ds, experiment="short"
        )
        assert len(fitted.history["train_loss"]) == 1


def test_normalisation_is_the_models_first_layer() -> None:
    ds = red_or_blue()
    r = recipes.CifarRecipe(epochs=1)
    net = small_net().eval()
    model = r.normalized(net, ds).eval()
    x = torch.rand(4, 3, 8, 8)
    own = torch.as_tensor(ds.x_train, dtype=torch.float64)  # no info: the training split's stats
    mean, std = own.mean((0, 2, 3)).float(), own.std((0, 2, 3)).float()
    want = net((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), want)
    cifar_like = red_or_blue()
    cifar_like.info = {"mean": cifar.MEAN, "std": cifar.STD}  # what the CIFAR-10 bundle carries
    norm = r.normalized(net, cifar_like).norm
    torch.testing.assert_close(norm.mean.flatten(), torch.tensor(cifar.MEAN))
    torch.testing.assert_close(norm.std.flatten(), torch.tensor(cifar.STD))
    fixed = r.replace(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).normalized(net, ds).norm
    torch.testing.assert_close(fixed.std.flatten(), torch.full((3,), 0.25))


def test_a_models_own_training_step_sees_normalised_images() -> None:
    seen = []

    class Own(nn.Module):  # like GoogLeNet: its own step (auxiliary losses)
        def __init__(self) -> None:
            super().__init__()
            self.net = small_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            seen.append((batch[0].sum().item(), batch[0].numel()))
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

    r = recipes.CifarRecipe(epochs=1, batch_size=64, augment=False, mean=(0.5,) * 3, std=(0.1,) * 3)
    ds = red_or_blue()
    fitted = r.fit(Own, ds, experiment="own-step")
    assert isinstance(fitted.model, Normalized) and len(seen) == 3  # 140 images, batches of 64
    mean_seen = sum(s for s, _ in seen) / sum(n for _, n in seen)
    assert mean_seen == pytest.approx((ds.x_train.mean() - 0.5) / 0.1, rel=1e-4)


def test_fit_trains_on_train_validates_on_val_and_tests_once_at_the_end() -> None:
    ds = red_or_blue()
    r = recipes.CifarRecipe(epochs=6, lr=0.05, batch_size=32, seed=3, progress=False)
    fitted = r.fit(small_net, ds, experiment="toy", test=True)
    h = fitted.history
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert len(h["val_accuracy"]) == 6 and h["val_accuracy"][-1] > 0.9  # an easy task is learnt
    assert set(fitted.test) == {"loss", "accuracy"} and fitted.test["accuracy"] > 0.9
    assert fitted.seconds > 0 and fitted.run.status == "finished"
    evals = events(fitted.run, "on_eval")
    assert [e["split"] for e in evals] == ["test"]  # the test split, once
    assert evals[0]["accuracy"] == pytest.approx(fitted.test["accuracy"])
    config = json.loads((fitted.run.dir / "config.json").read_text())
    assert config["config"]["recipe"]["lr"] == 0.05
    ablation = r.fit(small_net, ds, experiment="toy-val-only")
    assert ablation.test is None and events(ablation.run, "on_eval") == []
    again = r.fit(small_net, ds, experiment="toy-again", test=True)  # seeded: the same run
    assert again.history["train_loss"] == h["train_loss"] and again.test == fitted.test


def test_flip_tta_averages_the_mirrored_view_and_is_reported_separately() -> None:
    class LeftColumn(nn.Module):  # a "model" that looks only at the leftmost pixel column
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            left = x[..., 0].mean((1, 2))
            return torch.stack([-left, left], 1)

    x = torch.rand(5, 3, 4, 4)
    tta = recipes.FlipTTA(LeftColumn())(x)
    want = (LeftColumn()(x) + LeftColumn()(x.flip(3))) / 2
    torch.testing.assert_close(tta, want)
    assert not torch.allclose(tta, LeftColumn()(x))
    with pytest.raises(ValueError, match=r"FlipTTA wants images \(N, C, H, W\)"):
        recipes.FlipTTA(LeftColumn())(torch.rand(5, 16))

    ds = red_or_blue()
    r = recipes.CifarRecipe(epochs=2, batch_size=32, progress=False)
    plain = r.fit(small_net, ds, experiment="single", test=True)
    both = r.fit(small_net, ds, experiment="tta", test=True, tta=True)
    assert both.test["accuracy"] == plain.test["accuracy"]  # the single view is unchanged
    model, x = both.model.eval(), torch.as_tensor(ds.x_test)
    with torch.no_grad():
        by_hand = ((model(x) + model(x.flip(3))) / 2).argmax(1).numpy()
    assert (by_hand == ds.y_test).mean() == pytest.approx(both.test["accuracy_flip_tta"])
    assert (both.predict(ds, tta=True).argmax(1).numpy() == by_hand).all()
    single = (both.predict(ds).argmax(1).numpy() == ds.y_test).mean()
    assert single == pytest.approx(both.test["accuracy"])
    assert [e.get("accuracy_flip_tta") for e in events(both.run, "on_eval")][-1] == pytest.approx(
        both.test["accuracy_flip_tta"]
    )


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        recipes.CifarRecipe(epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        recipes.CifarRecipe(epochs=1, lr=0)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        recipes.CifarRecipe(epochs=1, label_smoothing=1.0)
    r = recipes.CifarRecipe(epochs=1)
    with pytest.raises(ValueError, match="pass test=True as well"):
        r.fit(small_net, red_or_blue(), experiment="x", tta=True)
    with pytest.raises(TypeError, match="build must return an nn.Module"):
        r.fit(lambda: "not a model", red_or_blue(), experiment="x")


def test_smoke_mode_cifar_is_cut_before_decoding_and_keeps_the_same_images(data_dir) -> None:
    """Smoke mode reads the cached CIFAR-10 but converts only the images it keeps (seconds, not
    700 MB of floats) — exactly the images the full load cut down would give."""
    import pickle

    rng = np.random.default_rng(0)
    folder = data_dir / cifar.BATCHES
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (300, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, 300).tolist()}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    from scratchlib import data

    small = data.load("cifar10", smoke=True, seed=4)
    assert small.source == "real" and (
        len(small.x_train) + len(small.x_val),
        len(small.x_test),
    ) == (
        data.SMOKE_SIZES[0],
        300,
    )
    whole = cifar._cached(data_dir).subset(*data.SMOKE_SIZES, seed=4).split_val(0.1, seed=4)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(small, f"x_{split}"), getattr(whole, f"x_{split}"))
        np.testing.assert_array_equal(getattr(small, f"y_{split}"), getattr(whole, f"y_{split}"))
