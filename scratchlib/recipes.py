"""Training recipes: one place for the settings several notebooks share.

:class:`CifarRecipe` is how every CIFAR-10 network of Module 2 (AlexNet, VGG, GoogLeNet, ResNet)
is trained and tested, on the Trainer and the data protocol (docs/seams.md)::

    recipe = recipes.CifarRecipe(epochs=EPOCHS, lr=0.05, batch_size=BATCH, seed=SEED)
    fit = recipe.fit(lambda: VGG("A", num_classes=10, image_size=32, batch_norm=True), ds,
                     experiment="vgg11", test=True)
    fit.history["val_accuracy"], fit.test["accuracy"], fit.seconds

The recipe, after He et al. (2015, §4.2) and the fast CIFAR-10 recipes that followed it:

- **normalisation is the model's first layer** (:class:`~scratchlib.nn.Normalized`), so
  evaluation, prediction and checkpoints see exactly what training saw;
- **SGD with Nesterov momentum** 0.9, weight decay 5e-4, a **one-cycle** learning rate that peaks
  at ``lr`` a quarter of the way through;
- **pad-4 random crops and horizontal flips**, done on the device for whole batches
  (:class:`~scratchlib.data.augment.RandomCropFlip`);
- on CUDA, **bf16 autocast and channels-last** memory; optional **label smoothing**;
- the validation split during training; the **test split once, at the end**, by ``trainer.test``
  — a single centred view, the papers' protocol. Flip test-time augmentation (the average of the
  logits of the image and its mirror, :class:`FlipTTA`) is an option reported *separately*, as
  ``accuracy_flip_tta``; it never replaces the single-view number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from scratchlib import track, utils
from scratchlib.data import cifar
from scratchlib.data.augment import RandomCropFlip
from scratchlib.nn import Normalized
from scratchlib.train import Callback, Trainer

__all__ = ["CifarRecipe", "Fitted", "FlipTTA"]


class FlipTTA(nn.Module):
    """Flip test-time augmentation: the mean of the logits of ``x`` and of its mirror image.

    Not the papers' single-view protocol: report it beside the single-view accuracy, never
    instead of it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"FlipTTA wants images (N, C, H, W), got shape {tuple(x.shape)}")
        return (self.model(x).float() + self.model(x.flip(3)).float()) / 2


def _one_cycle(lr: float) -> Callable[[torch.optim.Optimizer, int], Any]:
    """One-cycle (Smith & Topin 2017): the learning rate rises to ``lr`` over the first quarter
    of the steps, then anneals towards zero; runs too short for a cycle keep ``lr`` constant."""

    def build(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        if total_steps < 4:
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps)
        )

    return build


@dataclass
class Fitted:
    """What :meth:`CifarRecipe.fit` returns: the trained model (normalisation included), its
    history, the Trainer (for ``evaluate`` / ``predict``), the run, the training seconds and —
    when asked for — the test metrics."""

    model: nn.Module
    history: dict[str, list[Any]]
    trainer: Trainer
    run: track.Run | None
    seconds: float
    test: dict[str, float] | None = None

    def evaluate(self, data: Any, split: str = "val") -> dict[str, float]:
        """Loss and accuracy of the trained model on ``data``'s ``split`` (no event logged)."""
        return self.trainer.evaluate(self.model, data, split=split)

    def predict(self, data: Any, split: str = "test", tta: bool = False) -> torch.Tensor:
        """The model's logits over ``split`` (on the CPU); ``tta=True``: with flip TTA."""
        model = FlipTTA(self.model) if tta else self.model
        return self.trainer.predict(model, data, split=split)


@dataclass
class CifarRecipe:
    """The shared CIFAR-10 recipe of Module 2 (see the module docstring).

    Args:
        epochs: passes over the training split.
        lr: the peak learning rate of the one-cycle schedule.
        batch_size: images per optimizer step.
        weight_decay, momentum: SGD's (Nesterov momentum).
        label_smoothing: for the default cross-entropy step (0: off).
        augment: pad-4 random crops and horizontal flips on training batches.
        scheduler: ``"onecycle"`` (default), ``"cosine"`` or None (a constant ``lr``).
        seed: seeds the weights (``build`` is called after seeding), the data order and the
            augmentation, so a recipe and a builder give the same run.
        device, progress, eval_every: passed to the Trainer; ``amp`` and ``channels_last``
            take effect on CUDA only (bf16 autocast where supported, channels-last memory).
        mean, std: the normalisation layer's statistics (default: CIFAR-10's; a bundle whose
            ``info`` carries ``mean``/``std`` — or a fallback without them — is handled by
            :meth:`normalized`).
        callbacks: extra Trainer callbacks (e.g. an EMA).
    """

    epochs: int
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    augment: bool = True
    scheduler: str | None = "onecycle"
    seed: int = 0
    device: str | torch.device = "auto"
    progress: bool = True
    eval_every: int = 1
    amp: bool = True
    channels_last: bool = True
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    callbacks: Sequence[Callback] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")

    def replace(self, **changes: Any) -> CifarRecipe:
        """A copy with some settings changed, e.g. ``recipe.replace(weight_decay=0.0)``."""
        return dataclasses.replace(self, **changes)

    def normalized(self, net: nn.Module, data: Any = None) -> Normalized:
        """``net`` behind a normalisation layer (its own ``training_step`` keeps working).

        Statistics: the recipe's ``mean``/``std`` if set; else ``data.info``'s (CIFAR-10 carries
        them); else, for other data such as the offline stand-in, the training split's own
        per-channel mean and standard deviation; else CIFAR-10's."""
        mean, std = self.mean, self.std
        info = getattr(data, "info", None) or {}
        if mean is None and "mean" in info and "std" in info:
            mean, std = info["mean"], info["std"]
        x = getattr(data, "x_train", None)
        if mean is None and x is not None and getattr(x, "ndim", 0) == 4:
            t = torch.as_tensor(x[:10_000], dtype=torch.float64)
            mean = t.mean((0, 2, 3)).tolist()
            std = t.std((0, 2, 3)).clamp_min(1e-3).tolist()
        if mean is None:
            mean, std = cifar.MEAN, cifar.STD
        return Normalized(net, mean, std)

    def trainer(self, **overrides: Any) -> Trainer:
        """The Trainer this recipe trains with (``overrides`` go to the Trainer as they are)."""
        schedule = _one_cycle(self.lr) if self.scheduler == "onecycle" else self.scheduler
        kw: dict[str, Any] = dict(
            epochs=self.epochs,
            lr=self.lr,
            optimizer="sgd",  # Nesterov momentum (the Trainer's "sgd" with momentum > 0)
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            scheduler=schedule,
            batch_size=self.batch_size,
            label_smoothing=self.label_smoothing,
            device=self.device,
            seed=self.seed,
            amp=self.amp,
            channels_last=self.channels_last,
            augment=RandomCropFlip(4, True, self.seed) if self.augment else None,
            progress=self.progress,
            eval_every=self.eval_every,
            callbacks=list(self.callbacks),
        )
        kw.update(overrides)
        return Trainer(**kw)

    def fit(
        self,
        build: Callable[[], nn.Module] | nn.Module,
        data: Any,
        *,
        experiment: str,
        test: bool = False,
        tta: bool = False,
        config: dict[str, Any] | None = None,
        wandb: bool | str | None = False,
    ) -> Fitted:
        """Train ``build()`` on ``data`` (a DataModule with a validation split) in its own run.

        build: a function returning the network (called after seeding, so the initial weights
            are the seed's) — or a network already built.
        test: evaluate on the test split at the end (``trainer.test``: single view, recorded as
            the run's ``on_eval``); leave False for ablations compared on the validation split.
        tta: also report flip test-time augmentation as ``accuracy_flip_tta`` (needs ``test``).
        config: extra settings recorded in the run's config.
        """
        if tta and not test:
            raise ValueError("tta=True reports a test-split number: pass test=True as well")
        utils.seed_everything(self.seed)
        net = build if isinstance(build, nn.Module) else build()
        if not isinstance(net, nn.Module):
            raise TypeError(f"build must return an nn.Module, got {type(net).__name__}")
        model = self.normalized(net, data)
        recipe = {k: v for k, v in dataclasses.asdict(self).items() if k != "callbacks"}
        run = track.start(
            net,
            experiment=experiment,
            config={"recipe": recipe, **(config or {})},
            data=data,
            wandb=wandb,
        )
        trainer = self.trainer(run=run)
        with utils.Timer() as timer:
            history = trainer.fit(model, data)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        fitted = Fitted(model, history, trainer, run, timer.elapsed)
        if test:
            fitted.test = dict(trainer.test(model, data))  # single view: the papers' protocol
            if tta:
                flip = trainer.evaluate(FlipTTA(model), data, split="test")
                fitted.test["accuracy_flip_tta"] = flip["accuracy"]
                run.log_eval(split="test", accuracy_flip_tta=flip["accuracy"])
        run.finish(train_seconds=timer.elapsed)
        return fitted
